"""The cashier's balance never jumps: acknowledgement and pull leave it where the sales put it.

A stateful test drives sales, refunds, acknowledgements and pulls in random order; after every
step the till's view equals the opening balance plus every entry the till made, whether those
entries are still local, acknowledged, or already folded into central's balance by a pull.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent import _outbox
from agent._balances import offline_spent
from agent._cache import get_customer, put_customer
from agent._clock import ManualClock
from agent._models import ConfirmRequest, IdentifierInput, RefundLine, RefundRequest, ReserveRequest
from agent._runtime import build_till
from agent._sales import Till
from agent._store import set_meta
from protocol import Basket, BasketLine, CardIdentifier, RedeemRequest

from .conftest import CARD, make_settings, seed_customer

OPENING = 5000
CUSTOMER = IdentifierInput(type="card", value=CARD)


def _basket(price: int) -> Basket:
    line = BasketLine(line_id="1", sku="s", quantity_milli=2000, unit_price=price, total=2 * price)
    return Basket(lines=(line,))


class BalanceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.clock = ManualClock()
        self.till = build_till(make_settings(Path(self.folder.name) / "a"), clock=self.clock)
        seed_customer(self.till, self.clock, points=OPENING)
        self.sold: list[str] = []
        self.refunded: set[str] = set()
        self.change_seq = 1
        self.central_balance = OPENING

    def teardown(self) -> None:
        self.till.store.close()
        self.folder.cleanup()

    def _entries_total(self, where: str = "1") -> int:
        row = self.till.store.db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM outbox "
            f"WHERE record = 'entry' AND asset = 'points' AND {where}"
        ).fetchone()
        return int(row[0])

    @rule(price=st.integers(100, 50000), redeem=st.integers(0, 300))
    def sell(self, price: int, redeem: int) -> None:
        cheque = f"c{len(self.sold)}"
        self.till.reserve(
            ReserveRequest(
                cheque_id=cheque,
                customer=CUSTOMER,
                basket=_basket(price),
                redeem=RedeemRequest(points=redeem),
            )
        )
        self.till.confirm(ConfirmRequest(cheque_id=cheque, fiscal_document=cheque))
        self.sold.append(cheque)

    @precondition(lambda self: len(self.sold) > len(self.refunded))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        left = [c for c in self.sold if c not in self.refunded]
        cheque = data.draw(st.sampled_from(left))
        self.till.refund(
            RefundRequest(
                refund_id=f"r-{cheque}",
                cheque_id=cheque,
                lines=(RefundLine(line_id="1", quantity_milli=2000),),
            )
        )
        self.refunded.add(cheque)

    @rule()
    def acknowledge(self) -> None:
        """Central applied everything pushed so far; its balance changed at a new seq."""
        pushed = self._entries_total("state = 'local'")
        self.change_seq += 1
        self.central_balance += pushed
        with self.till.store.write() as db:
            _outbox.acknowledge(db, self.till.seat.epoch, 10**9, self.change_seq)

    @rule()
    def acknowledge_after_a_lost_reply(self) -> None:
        """Central answered a retried push with "gap": it had them, but said no change seq."""
        pushed = self._entries_total("state = 'local'")
        self.change_seq += 1
        self.central_balance += pushed
        with self.till.store.write() as db:
            _outbox.acknowledge(db, self.till.seat.epoch, 10**9, None)

    @rule()
    def pull(self) -> None:
        """The till reads central's balance as of the last acknowledged change."""
        with self.till.store.write() as db:
            cached = get_customer(db, "c-1")
            assert cached is not None
            state = cached.state.model_copy(update={"points_balance": self.central_balance})
            put_customer(db, state, (CardIdentifier(number=CARD),), "", self.change_seq)
            set_meta(db, "pull_cursor", str(self.change_seq))
            _outbox.settle_watermarks(db, self.change_seq)  # as SyncClient.pull_all does

    @invariant()
    def view_is_opening_plus_every_entry(self) -> None:
        view = self.till.identify(CUSTOMER).balance
        assert view is not None
        assert view.balance == OPENING + self._entries_total()
        assert view.held == 0
        assert view.available <= view.balance

    @invariant()
    def the_till_offline_spending_is_its_local_offline_burns(self) -> None:
        """The running total schema 7 keeps equals the sum it replaced."""
        burns = -self._entries_total("kind = 'burn' AND offline = 1 AND state = 'local'")
        assert offline_spent(self.till.store.db, "nobody").till == burns

    @invariant()
    def documents_name_their_entries(self) -> None:
        rows = self.till.store.db.execute(
            "SELECT payload FROM outbox WHERE record = 'cheque'"
        ).fetchall()
        named = sum(len(json.loads(row[0])["entry_ids"]) for row in rows)
        count = self.till.store.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE record = 'entry'"
        ).fetchone()[0]
        assert named == count


TestBalanceView = BalanceMachine.TestCase
TestBalanceView.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)


def _three_sales_spending_offline(folder: Path) -> Till:
    """A till that sold three cheques offline, each spending 50 points."""
    clock = ManualClock()
    till = build_till(make_settings(folder), clock=clock)
    seed_customer(till, clock, points=OPENING)
    for cheque in ("q1", "q2", "q3"):
        request = ReserveRequest(
            cheque_id=cheque,
            customer=CUSTOMER,
            basket=_basket(20000),
            redeem=RedeemRequest(points=50),
        )
        till.reserve(request)
        till.confirm(ConfirmRequest(cheque_id=cheque, fiscal_document=cheque))
    return till


def test_quarantined_and_acknowledged_burns_leave_the_till_offline_total(tmp_path: Path) -> None:
    till = _three_sales_spending_offline(tmp_path / "a")
    db = till.store.db
    burns = db.execute("SELECT epoch, seq FROM outbox WHERE kind = 'burn' ORDER BY seq").fetchall()
    assert len(burns) == 3
    assert offline_spent(db, "nobody").till == 150
    with till.store.write() as db:
        _outbox.quarantine(db, *burns[0])
    assert offline_spent(db, "nobody").till == 100
    with till.store.write() as db:
        _outbox.acknowledge(db, burns[1][0], burns[1][1], 7)
    assert offline_spent(db, "nobody").till == 50
    till.store.close()


def test_records_sent_again_after_central_lost_them_count_as_unsent(tmp_path: Path) -> None:
    """Central was restored from an older backup: the till's records from the seq it expects
    are pending again, in order, quarantined ones too, and their burns count against the
    till's offline budget again until central acknowledges them once more."""
    till = _three_sales_spending_offline(tmp_path / "a")
    db = till.store.db
    epoch = till.seat.epoch
    burns = db.execute("SELECT seq FROM outbox WHERE kind = 'burn' ORDER BY seq").fetchall()
    last = db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
    with till.store.write() as db:
        _outbox.quarantine(db, epoch, burns[2][0])
        _outbox.acknowledge(db, epoch, last, 7)
    assert _outbox.depth(db) == 0
    assert offline_spent(db, "nobody").till == 0
    lost_from = burns[1][0]  # the backup holds the first sale and part of the second
    with till.store.write() as db:
        again = _outbox.send_again(db, epoch, lost_from)
    assert again == last - lost_from + 1
    pending = _outbox.pending(db)
    assert [record.seq for record in pending] == list(range(lost_from, last + 1))
    assert offline_spent(db, "nobody").till == 100
    with till.store.write() as db:
        assert _outbox.send_again(db, epoch, lost_from) == 0, "nothing more to make pending"
    till.store.close()
