"""Each processing job on SQLite and PostgreSQL, driven by an injected clock: it does its
work, a second run changes nothing, and the ledger still folds to every balance."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from central import _changes, _db, _jobs, _lot_state, _lots, _recompute
from central import _tables as t
from central._clock import to_ms
from protocol import (
    CardIdentifier,
    ChequeDocument,
    ChequeState,
    CustomerState,
    CustomerStatus,
    EntryKind,
    PushItem,
    Quote,
    canonical_json,
    evaluate,
    parse_rule_set,
    refund_quote,
    sha256_hex,
)

from .checks import assert_ledger_consistent
from .conftest import FakeClock
from .sales import (
    BASKET,
    STORE,
    foreign_refund,
    own_refund,
    publish_rules,
    quote_for,
    sale,
    sale_document,
)
from .tills import NOW, Hq


def run(engine: sa.Engine, name: str, now: datetime = NOW) -> _jobs.Outcome:
    outcome = _jobs.run(engine, _jobs.BY_NAME[name], now, "test-holder")
    assert (outcome.ran, outcome.error) == (True, None), outcome
    return outcome


def balance(engine: sa.Engine, key: str, asset: str = "points") -> int:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(t.accounts.c.balance).where(
                t.accounts.c.account_key == key, t.accounts.c.asset == asset
            )
        ).scalar_one_or_none()
    return int(found or 0)


def conflicts(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.conflicts.c.kind, t.conflicts.c.status)).all()
    return sorted((r.kind, r.status) for r in rows)


def recomputed(engine: sa.Engine) -> tuple[dict[str, str], list[tuple[str, int]]]:
    """Each cheque's verdict, and the corrections central wrote (cheque, points)."""
    with engine.connect() as conn:
        verdicts = dict(
            conn.execute(sa.select(t.cheques.c.cheque_id, t.cheques.c.recomputed)).all()
        )
        corrections = conn.execute(
            sa.select(t.ledger.c.cheque_id, t.ledger.c.amount).where(
                t.ledger.c.kind == "correction"
            )
        ).all()
    return verdicts, [(row.cheque_id, row.amount) for row in corrections]


def ok(response: object) -> None:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]


def sold_and_returned_elsewhere(
    hq: Hq, engine: sa.Engine, redeem: int, opening_expires_at: datetime | None = None
) -> Quote:
    """c1 holds 1,000 points, spends `redeem` of them in a sale at one till and returns all
    of it at another; central has reconciled the refund. The sale's quote."""
    publish_rules(hq)
    hq.customer("c1")
    seller, refunder = hq.enroll("s1"), hq.enroll("s2")
    ok(seller.push([seller.entry("c1", 1000, expires_at=opening_expires_at)]))
    quote = quote_for("c1", balance=1000, redeem=redeem)
    ok(seller.push(sale(seller, "c1", "ch-1", quote)))
    everything = {line.line_id: line.quantity_milli for line in BASKET.lines}
    ok(refunder.push([foreign_refund(refunder, "rf-1", "ch-1", everything)]))
    run(engine, "recompute")
    assert run(engine, "refunds").items == 1
    return quote


def test_overspend_becomes_a_recorded_debt_and_a_conflict(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    one, two = hq.enroll("s1"), hq.enroll("s2")
    ok(one.push([one.entry("c1", 100)]))
    ok(one.push([one.entry("c1", -80, EntryKind.burn)]))
    ok(two.push([two.entry("c1", -80, EntryKind.burn)]))  # spent offline at the same time
    assert balance(engine, "customer:c1") == -60
    assert run(engine, "debts").items == 1
    assert run(engine, "debts").items == 0
    assert conflicts(engine) == [("overspend", "open")]
    with engine.connect() as conn:
        detail = json.loads(conn.execute(sa.select(t.conflicts.c.detail)).scalar_one())
    assert detail["balance"] == -60
    assert detail["account_key"] == "customer:c1"
    ok(one.push([one.entry("c1", 100)]))  # later accruals pay the debt first
    assert balance(engine, "customer:c1") == 40
    assert_ledger_consistent(engine)


def test_recomputation_catches_points_tampered_on_the_way(hq: Hq, engine: sa.Engine) -> None:
    publish_rules(hq)
    hq.customer("c1")
    till = hq.enroll()
    honest = quote_for("c1")
    assert honest.earn_points > 0
    ok(till.push(sale(till, "c1", "ch-1", honest)))
    forged = honest.model_copy(update={"earn_points": honest.earn_points + 5000})
    ok(till.push(sale(till, "c1", "ch-2", forged)))
    ok(till.push(sale(till, "c1", "ch-3", honest, earn_entry=honest.earn_points * 10)))
    outcome = run(engine, "recompute", NOW + timedelta(minutes=5))
    assert outcome.items == 3
    assert outcome.lag_ms == 0
    assert run(engine, "recompute").items == 0
    verdicts, corrections = recomputed(engine)
    assert verdicts == {"ch-1": "ok", "ch-2": "mismatch", "ch-3": "mismatch"}
    assert sorted(corrections) == [("ch-2", -5000), ("ch-3", -9 * honest.earn_points)]
    assert conflicts(engine) == [("recompute_mismatch", "open")] * 2
    assert balance(engine, "customer:c1") == 3 * honest.earn_points
    assert_ledger_consistent(engine)


def test_a_correction_that_cannot_be_written_sets_its_cheque_aside(
    hq: Hq, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One cheque's failure never stops the job nor blocks the others, and is never retried
    forever: it is `failed`, with a conflict for HQ."""
    publish_rules(hq)
    hq.customer("c1")
    till = hq.enroll()
    honest = quote_for("c1")
    ok(till.push(sale(till, "c1", "ch-1", honest)))
    forged = honest.model_copy(update={"earn_points": honest.earn_points + 5000})
    ok(till.push(sale(till, "c1", "ch-2", forged)))

    def refuse(*_: object) -> None:
        raise ValueError("the correction cannot be written")

    monkeypatch.setattr(_recompute._entries, "write", refuse)
    assert run(engine, "recompute").items == 2
    assert run(engine, "recompute").items == 0
    assert recomputed(engine) == ({"ch-1": "ok", "ch-2": "failed"}, [])
    assert conflicts(engine) == [("recompute_failed", "open")]


def test_recomputation_waits_for_entries_and_reports_its_lag(hq: Hq, engine: sa.Engine) -> None:
    publish_rules(hq)
    hq.customer("c1")
    till = hq.enroll()
    document, earn = sale(till, "c1", "ch-1", quote_for("c1"), document_first=True)
    ok(till.push([document]))
    later = NOW + timedelta(minutes=3)
    waiting = run(engine, "recompute", later)
    assert (waiting.items, waiting.lag_ms) == (0, 180_000)
    ok(till.push([earn]))
    done = run(engine, "recompute", later)
    assert (done.items, done.lag_ms) == (1, 0)
    assert conflicts(engine) == []


def test_recomputation_writes_its_verdicts_in_the_writers_queue(hq: Hq, engine: sa.Engine) -> None:
    """On SQLite the job evaluates without the writer lock and queues on it to write, as
    pushes do: while someone else holds the lock, nothing is decided; then all of it is."""
    publish_rules(hq)
    hq.customer("c1")
    till = hq.enroll()
    for n in range(3):
        ok(till.push(list(sale(till, "c1", f"ch-{n}", quote_for("c1")))))
    lock = _db.writer(engine)
    if lock is None:
        pytest.skip("PostgreSQL orders writers with row locks, not a writer lock")
    outcome: list[_jobs.Outcome] = []
    with lock.held():
        job = threading.Thread(target=lambda: outcome.append(run(engine, "recompute")))
        job.start()
        job.join(1.0)
        assert outcome == []
        assert set(recomputed(engine)[0].values()) == {"pending"}
    job.join(30)
    assert outcome[0].items == 3
    assert set(recomputed(engine)[0].values()) == {"ok"}


def test_recomputation_checks_a_till_s_own_refunds(hq: Hq, engine: sa.Engine) -> None:
    publish_rules(hq)
    hq.customer("c1")
    till = hq.enroll()
    quote = quote_for("c1")
    line = next(line for line in quote.lines if line.earn_points > 1)
    ok(till.push(sale(till, "c1", "ch-1", quote)))
    other = next(o for o in quote.lines if o.line_id != line.line_id and o.earn_points > 1)
    first = refund_quote(quote, BASKET, {line.line_id: 1000})
    second = refund_quote(quote, BASKET, {other.line_id: 500}, [first])
    ok(till.push(own_refund(till, "c1", "rf-1", "ch-1", quote, {line.line_id: 1000})))
    over = second.earn_points + 3  # the till took back 3 points too many
    ok(
        till.push(
            own_refund(till, "c1", "rf-2", "ch-1", quote, {other.line_id: 500}, over, [first])
        )
    )
    assert run(engine, "recompute").items == 3
    verdicts, corrections = recomputed(engine)
    assert verdicts == {"ch-1": "ok", "rf-1": "ok", "rf-2": "mismatch"}
    assert corrections == [("rf-2", 3)]
    assert (
        balance(engine, "customer:c1") == quote.earn_points - first.earn_points - second.earn_points
    )
    assert_ledger_consistent(engine)


def test_a_released_reservation_is_not_credited(hq: Hq, engine: sa.Engine) -> None:
    """A voided or expired reservation's document keeps the quote it held and has no
    entries: nothing was sold, so nothing is owed (recomputation used to credit its points
    as a correction)."""
    publish_rules(hq)
    hq.customer("c1")
    till = hq.enroll()
    quote = quote_for("c1")
    assert quote.earn_points > 0
    for state in (ChequeState.voided, ChequeState.expired):
        ok(till.push(sale(till, "c1", f"ch-{state}", quote, state=state)))
    run(engine, "recompute")
    verdicts, corrections = recomputed(engine)
    assert set(verdicts.values()) == {"skipped"}
    assert corrections == []
    assert conflicts(engine) == []
    assert balance(engine, "customer:c1") == 0


def test_refunds_of_two_tills_cheques_with_one_pos_number_are_kept_apart(
    hq: Hq, engine: sa.Engine
) -> None:
    """POS cheque numbers repeat across tills: a refund of B's ch-1 is not counted against
    A's ch-1, refunded in full before it."""
    publish_rules(hq)
    hq.customer("c1")
    hq.customer("c2")
    a, b, c = hq.enroll("s1"), hq.enroll("s2"), hq.enroll("s3")
    first, second = quote_for("c1"), quote_for("c2")
    everything = {line.line_id: line.quantity_milli for line in BASKET.lines}
    ok(a.push(sale(a, "c1", "ch-1", first)))
    ok(b.push(sale(b, "c2", "ch-1", second)))
    ok(a.push(own_refund(a, "c1", "rf-a", "ch-1", first, everything)))
    ok(c.push([foreign_refund(c, "rf-c", "ch-1", everything, original_device_id=b.device_id)]))
    run(engine, "recompute")
    run(engine, "refunds")
    verdicts, _ = recomputed(engine)
    assert (verdicts["rf-a"], verdicts["rf-c"]) == ("ok", "reconciled")
    assert balance(engine, "customer:c1") == balance(engine, "customer:c2") == 0
    assert conflicts(engine) == []


HAPPY_HOURS = """
rule_set_id = "happy-hours"
effective_from = 2026-01-01T00:00:00+03:00
pending_days = 14

[[earn]]
id = "happy"
kind = "per_money"
points = 1
per = 100
hours = "12:00-14:00"
"""


def test_a_cheque_is_recomputed_as_of_its_quote_not_its_confirm(hq: Hq, engine: sa.Engine) -> None:
    """Reserved at 11:59:50 in Moscow, before the rule's hours (nothing earned), confirmed
    20 s later inside them: recomputed as of the quote, it is right (as of the document's
    device time it was a mismatch, and central credited the points)."""
    published = hq.client.post(
        "/admin/rule-sets/publish",
        content=HAPPY_HOURS.encode(),
        headers={**hq.headers, "content-type": "text/plain"},
    )
    assert published.status_code == 200, published.text
    hq.customer("c1")
    till = hq.enroll()
    quoted_at = NOW - timedelta(seconds=10)  # 11:59:50 in Moscow
    customer = CustomerState(customer_id="c1")
    quote = evaluate(parse_rule_set(HAPPY_HOURS), customer, BASKET, STORE, quoted_at)
    assert quote.earn_points == 0
    document = sale_document(
        till,
        "c1",
        cheque_id="ch-1",
        quote=quote,
        device_time=NOW + timedelta(seconds=10),  # confirmed 20 s after the quote
        quoted_at=quoted_at,
    )
    ok(till.push([till.store_record(canonical_json(document))]))
    run(engine, "recompute", NOW + timedelta(minutes=1))
    assert recomputed(engine) == ({"ch-1": "ok"}, [])
    assert balance(engine, "customer:c1") == 0


def test_a_document_without_its_customer_s_data_is_not_recomputed(
    hq: Hq, engine: sa.Engine
) -> None:
    """A till scrubs an erased customer's acknowledged cheques; after central was restored
    from an older backup it sends them so. Evaluating one again would find a mismatch and
    correct the account by it: it is skipped, and HQ is told when central has not erased
    that customer (its erasure was lost with the restore)."""
    publish_rules(hq)
    for customer_id in ("c1", "c2"):
        hq.customer(customer_id)
    hq.post("/admin/customers/c2/erase")
    till = hq.enroll()
    for customer_id in ("c1", "c2"):
        earned = sale(till, customer_id, f"ch-{customer_id}", quote_for(customer_id))
        scrubbed = CustomerState(customer_id=customer_id, status=CustomerStatus.erased)
        document = ChequeDocument.model_validate_json(earned[-1].payload)
        stored = document.model_copy(update={"customer": scrubbed})
        payload = canonical_json(stored)
        earned[-1] = PushItem(
            seq=earned[-1].seq, payload=payload.decode(), payload_sha256=sha256_hex(payload)
        )
        ok(till.push(earned))
    run(engine, "recompute", NOW + timedelta(minutes=1))
    assert recomputed(engine) == ({"ch-c1": "scrubbed", "ch-c2": "skipped"}, [])
    with engine.connect() as conn:
        alerts = conn.execute(sa.select(t.conflicts.c.kind, t.conflicts.c.detail)).all()
    assert [kind for kind, _ in alerts] == ["cheque_scrubbed"]
    assert json.loads(alerts[0].detail)["customer_id"] == "c1"


def test_a_refund_takes_the_earned_points_back_from_the_sale_s_own_lot(
    hq: Hq, engine: sa.Engine
) -> None:
    """The earn reversal names the sale's earn entry: it empties that (pending) lot, not the
    customer's older points that expire first, which stay spendable as before the sale."""
    quote = sold_and_returned_elsewhere(hq, engine, 500, NOW + timedelta(days=10))
    assert quote.burn_points == 500
    assert quote.earn_points > 0
    with engine.connect() as conn:
        folded = _lots.fold_account(conn, "customer:c1")
        reversal = conn.execute(
            sa.select(t.ledger.c.reverses).where(
                t.ledger.c.kind == "refund_reversal", t.ledger.c.amount < 0
            )
        ).scalar_one()
        earned = conn.execute(
            sa.select(t.ledger.c.entry_id).where(
                t.ledger.c.kind == "earn", t.ledger.c.cheque_id == "ch-1"
            )
        ).scalar_one()
    assert reversal == earned
    assert folded.lots[earned][1] == 0  # the sale's own lot is what was taken back
    assert folded.spendable(to_ms(NOW + timedelta(minutes=1))) == 1000
    assert balance(engine, "customer:c1") == 1000
    assert_ledger_consistent(engine)


def test_recomputation_flags_a_cheque_with_unknown_rules(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    till = hq.enroll()
    ok(till.push(sale(till, "c1", "ch-1", quote_for("c1"))))  # rules never published
    assert run(engine, "recompute").items == 1
    assert conflicts(engine) == [("unknown_rules", "open")]


def test_grant_made_by_two_offline_tills_is_granted_once(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    one, two = hq.enroll("s1"), hq.enroll("s2")
    offline_one = [one.entry("c1", 200, EntryKind.welcome, grant_key="welcome:c1")]
    offline_two = [two.entry("c1", 200, EntryKind.welcome, grant_key="welcome:c1")]
    ok(two.push(offline_two))
    ok(one.push(offline_one))
    ok(one.push(offline_one))  # a replay changes nothing
    assert balance(engine, "customer:c1") == 200
    with engine.connect() as conn:
        kinds = sorted(conn.execute(sa.select(t.ledger.c.kind)).scalars())
    assert kinds == ["grant_reversal", "welcome", "welcome"]
    assert_ledger_consistent(engine)


def test_entries_on_an_unknown_card_move_to_its_customer(
    hq: Hq, engine: sa.Engine, clock: FakeClock
) -> None:
    hq.customer("c1")
    till = hq.enroll()
    card = CardIdentifier(number="2770000000017")
    expires = NOW + timedelta(days=365)
    ok(till.push([till.entry("", 120, account=card, expires_at=expires)]))
    ok(till.push([till.entry("", 30, account=card)]))
    assert run(engine, "resolve").items == 0  # nobody's card yet
    hq.post("/admin/customers/c1/cards", {"number": "2770000000017"})
    assert run(engine, "resolve").items == 1
    assert run(engine, "resolve").items == 0
    assert balance(engine, "card:2770000000017") == 0
    assert balance(engine, "customer:c1") == 150
    with engine.connect() as conn:
        lots = _lots.fold_account(conn, "customer:c1").lots.values()
    assert sorted((left, expires is not None) for _, left, _, expires in lots) == [
        (30, False),
        (120, True),
    ]
    assert_ledger_consistent(engine)


def test_pending_points_activate_after_the_return_window(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    till = hq.enroll()
    ok(till.push([till.entry("c1", 70, activates_at=NOW + timedelta(days=14))]))
    assert run(engine, "activate", NOW + timedelta(days=13)).items == 0
    assert run(engine, "activate", NOW + timedelta(days=14)).items == 1
    assert run(engine, "activate", NOW + timedelta(days=15)).items == 0
    with engine.connect() as conn:
        marks = conn.execute(
            sa.select(t.ledger.c.kind, t.ledger.c.amount).where(t.ledger.c.device_id == "central")
        ).all()
        spendable = _lots.fold_account(conn, "customer:c1").spendable
        early = spendable(int((NOW + timedelta(days=13)).timestamp() * 1000))
        late = spendable(int((NOW + timedelta(days=14)).timestamp() * 1000))
    assert [tuple(m) for m in marks] == [("activate", 0)]
    assert (early, late) == (0, 70)
    assert_ledger_consistent(engine)


def test_lots_expire_only_after_expiry_plus_the_offline_window(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    hq.client.put(
        "/admin/offline-limits", json={"offline_window_days": 30}, headers=hq.headers
    ).raise_for_status()
    till = hq.enroll()
    soon, later = NOW + timedelta(days=10), NOW + timedelta(days=100)
    ok(till.push([till.entry("c1", 100, expires_at=soon), till.entry("c1", 50, expires_at=later)]))
    ok(till.push([till.entry("c1", -60, EntryKind.burn)]))  # takes the lot expiring first
    assert run(engine, "expire", soon + timedelta(days=29)).items == 0
    outcome = run(engine, "expire", soon + timedelta(days=30))
    assert outcome.items == 1
    assert balance(engine, "customer:c1") == 50  # the 40 left of the first lot expired
    assert run(engine, "expire", soon + timedelta(days=31)).items == 0
    ok(till.push([till.entry("c1", -10, EntryKind.burn)]))
    assert run(engine, "expire", later + timedelta(days=30)).items == 1
    assert balance(engine, "customer:c1") == 0
    with engine.connect() as conn:
        expired = conn.execute(
            sa.select(t.ledger.c.amount).where(t.ledger.c.kind == "expire").order_by(t.ledger.c.id)
        ).scalars()
        assert list(expired) == [-40, -40]
    assert_ledger_consistent(engine)


@pytest.mark.parametrize(
    ("sold_after_expiry_h", "left"),
    [
        # Expired but not yet written off (the job waits the offline window): not there to
        # spend. The sale takes the valid points and the job writes the expired lot off
        # whole; taken from the expired lot, as it expires first, the sale left the valid
        # points standing and the customer kept 100 points too many.
        (3, 0),
        # A till offline for days pushes a sale made while the lot was valid: it takes that
        # lot, and the job finds nothing left to write off.
        (-3, 100),
    ],
)
def test_spending_takes_a_lot_only_if_it_was_valid_when_the_sale_was_made(
    hq: Hq, engine: sa.Engine, sold_after_expiry_h: int, left: int
) -> None:
    hq.customer("c1")
    till = hq.enroll()
    expiry = NOW - timedelta(days=1)
    earned = NOW - timedelta(days=200)
    ok(
        till.push(
            [
                till.entry("c1", 100, expires_at=expiry, device_time=earned),
                till.entry("c1", 100, expires_at=NOW + timedelta(days=300), device_time=earned),
            ]
        )
    )
    sold = expiry + timedelta(hours=sold_after_expiry_h)
    ok(till.push([till.entry("c1", -100, EntryKind.burn, device_time=sold)]))
    assert balance(engine, "customer:c1") == 100
    assert run(engine, "expire", expiry + timedelta(days=30)).items == 1
    assert balance(engine, "customer:c1") == left
    assert_ledger_consistent(engine)


def test_spending_takes_active_points_before_points_in_their_return_window(
    hq: Hq, engine: sa.Engine
) -> None:
    """Points still in their return window are spent only when the active ones do not
    cover the sale, even if they expire first: the till offered only the active ones."""
    hq.customer("c1")
    till = hq.enroll()
    waiting = till.entry(
        "c1", 100, activates_at=NOW + timedelta(days=14), expires_at=NOW + timedelta(days=30)
    )
    active = till.entry("c1", 100, expires_at=NOW + timedelta(days=300))
    ok(till.push([waiting, active]))
    ok(till.push([till.entry("c1", -60, EntryKind.burn)]))
    with engine.connect() as conn:
        lots = {
            lot[0]: lot[1]
            for lot in _lot_state.load(conn, ["customer:c1"])["customer:c1"].lots.values()
        }
    assert lots == {
        json.loads(waiting.payload)["entry_id"]: 100,
        json.loads(active.payload)["entry_id"]: 40,
    }
    ok(till.push([till.entry("c1", -70, EntryKind.burn)]))  # 40 active, then 30 waiting
    with engine.connect() as conn:
        folded = _lot_state.load(conn, ["customer:c1"])["customer:c1"]
    assert [lot[1] for lot in folded.open_lots()] == [70]
    assert folded.debt == 0
    assert_ledger_consistent(engine)


def test_points_a_refund_gives_back_expire_as_the_sales_would(hq: Hq, engine: sa.Engine) -> None:
    """Spent points given back by a refund expire `expiry_days` after the sale (base.toml:
    365), as its earned points do: given back without an expiry, points about to expire were
    kept for good by buying with them and returning the goods. The same at the till."""
    quote = sold_and_returned_elsewhere(hq, engine, 300)
    assert quote.burn_points > 0
    with engine.connect() as conn:
        given, points = conn.execute(
            sa.select(t.ledger.c.entry_id, t.ledger.c.amount).where(
                t.ledger.c.kind == "refund_reversal", t.ledger.c.amount > 0
            )
        ).one()
        expires_ms = conn.execute(
            sa.select(t.lots.c.expires_ms).where(t.lots.c.lot_id == given)
        ).scalar_one()
    assert points == quote.burn_points
    assert expires_ms == to_ms(NOW + timedelta(days=365))
    before = balance(engine, "customer:c1")
    window = timedelta(days=30)  # the offline window HQ's limits give by default
    run(engine, "expire", NOW + timedelta(days=365) + window)
    assert balance(engine, "customer:c1") <= before - points
    assert_ledger_consistent(engine)


def test_refund_of_a_cheque_sold_elsewhere_is_reconciled(hq: Hq, engine: sa.Engine) -> None:
    publish_rules(hq)
    hq.customer("c1")
    seller, refunder = hq.enroll("s1"), hq.enroll("s2")
    quote = quote_for("c1")
    line = quote.lines[0]
    assert line.earn_points > 0
    refund = foreign_refund(refunder, "rf-1", "ch-1", {line.line_id: 1000})
    ok(refunder.push([refund]))
    assert run(engine, "recompute").items == 1  # routed to the refunds job
    waiting = run(engine, "refunds", NOW + timedelta(minutes=2))
    assert waiting.items == 0
    assert waiting.lag_ms == 120_000
    sold = sale(seller, "c1", "ch-1", quote, with_spend=True)
    ok(seller.push(sold))
    run(engine, "recompute")
    assert run(engine, "refunds").items == 1
    assert run(engine, "refunds").items == 0
    with engine.connect() as conn:
        reversed_ = conn.execute(
            sa.select(t.ledger.c.amount).where(t.ledger.c.kind == "refund_reversal")
        ).scalars()
        assert sum(reversed_) < 0
        spend = conn.execute(
            sa.select(t.ledger.c.entry_id, t.ledger.c.amount, t.ledger.c.reverses)
            .where(t.ledger.c.asset == "rolling_spend")
            .order_by(t.ledger.c.id)
        ).all()
    (spent_id, spent, _), (_, taken_back, dated_by) = spend  # the sale's, then the refund's
    assert spent == quote.rolling_spend_delta > -taken_back > 0
    assert dated_by == spent_id  # leaves the rolling window with the sale
    earned_once = quote.earn_points
    assert 0 < balance(engine, "customer:c1") < earned_once
    assert_ledger_consistent(engine)


def test_a_refund_elsewhere_finds_its_cheque_by_its_lines_among_repeated_ids(
    hq: Hq, engine: sa.Engine
) -> None:
    """POS cheque numbers repeat across tills: two tills sold a cheque `ch-1`, the later one
    to another customer; a refund of the first, made at a third till, reverses the points of
    the first's customer."""
    publish_rules(hq)
    hq.customer("c1")
    hq.customer("c2")
    first, second, refunder = hq.enroll("s1"), hq.enroll("s1"), hq.enroll("s2")
    other = BASKET.model_copy(update={"lines": BASKET.lines[:3]})
    quote = quote_for("c1")
    ok(first.push(sale(first, "c1", "ch-1", quote)))
    ok(second.push(sale(second, "c2", "ch-1", quote_for("c2", basket=other), basket=other)))
    before = {key: balance(engine, key) for key in ("customer:c1", "customer:c2")}
    line = quote.lines[3]  # two coffees: on the first cheque only
    assert line.earn_points > 0
    ok(refunder.push([foreign_refund(refunder, "rf-1", "ch-1", {line.line_id: 2000})]))
    run(engine, "recompute")
    assert run(engine, "refunds").items == 1
    assert balance(engine, "customer:c2") == before["customer:c2"]
    assert balance(engine, "customer:c1") == before["customer:c1"] - line.earn_points
    assert_ledger_consistent(engine)


def test_jobs_report_their_state_to_hq(hq: Hq, engine: sa.Engine) -> None:
    run(engine, "debts")
    states = hq.client.get("/admin/jobs", headers=hq.headers).json()
    by_name = {state["name"]: state for state in states}
    assert set(by_name) == set(_jobs.BY_NAME)
    assert by_name["debts"]["runs"] == 1
    assert by_name["debts"]["last_error"] is None
    assert by_name["recompute"]["runs"] == 0
    ran = hq.post("/admin/jobs/recompute/run")
    assert ran["ran"] is True


def test_entries_of_a_merged_customer_reach_the_customer_kept(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("keep")
    hq.customer("dup")
    till = hq.enroll()
    ok(till.push([till.entry("keep", 100, EntryKind.welcome, grant_key="welcome:keep")]))
    hq.post("/admin/customers/merge", {"duplicate_id": "dup", "keep_id": "keep", "reason": "twin"})
    late = [
        till.entry("dup", 40),  # the till had not heard of the merge
        till.entry("dup", 100, EntryKind.welcome, grant_key="welcome:keep"),
    ]
    pushed = till.push(late).json()["results"]
    assert [r["outcome"] for r in pushed] == ["quarantined", "quarantined"]
    assert run(engine, "resolve").items == 1
    assert run(engine, "resolve").items == 0
    assert balance(engine, "customer:keep") == 140  # the welcome bonus is still granted once
    with engine.connect() as conn:
        states = sorted(conn.execute(sa.select(t.quarantine.c.status)).scalars())
    assert states == ["duplicate", "redirected"]
    assert_ledger_consistent(engine)


def test_prune_drops_the_changes_past_their_retention(
    hq: Hq, engine: sa.Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change log keeps `change_log_retention_days`: older rows go (in bounded
    transactions), a till with a cursor from then takes a snapshot, newer changes stay, and an
    erased customer's tombstone with its identifiers goes too once it is that old."""
    hq.customer("c1", identifiers=[{"type": "card", "number": "2770000000017"}])
    till = hq.enroll()
    ok(till.push([till.entry("c1", 10)]))
    hq.post("/admin/customers/c1/erase")
    with engine.connect() as conn:
        old_rows = conn.execute(sa.select(sa.func.count()).select_from(t.change_log)).scalar()
    assert old_rows > 2
    monkeypatch.setattr(_changes, "change_log_rows_per_prune_max", 2)  # several transactions
    kept = timedelta(days=_changes.change_log_retention_days)
    clock.advance((kept - timedelta(hours=1)).total_seconds())
    hq.customer("c2")  # a change made later, kept
    assert run(engine, "prune", clock()).items == 0
    cursor = till.pull(0).json()["next_cursor"]
    clock.advance(timedelta(hours=2).total_seconds())
    assert run(engine, "prune", clock()).items == old_rows
    assert till.pull(0).status_code == 410
    newer = till.pull(cursor - 1).json()["changes"]
    assert [(c["type"], c["state"]["customer_id"]) for c in newer] == [("customer", "c2")]
    assert run(engine, "prune", clock()).items == 0
    with engine.connect() as conn:
        logged = conn.execute(sa.select(t.change_log.c.body)).scalars().all()
    assert not any("2770000000017" in body for body in logged)


@pytest.mark.parametrize("refunds_first", [False, True], ids=["recompute-first", "refunds-first"])
def test_a_cheque_returned_at_another_till_and_at_its_own_is_reversed_once(
    hq: Hq, engine: sa.Engine, refunds_first: bool
) -> None:
    """Sold at A, returned in full at B (central reconciles it) and again at A (A reverses
    it itself): whichever central decides first, the sale's points are reversed once, and
    the other refund reverses nothing more."""
    publish_rules(hq)
    hq.customer("c1")
    a, b = hq.enroll("s1"), hq.enroll("s2")
    quote = quote_for("c1")
    everything = {line.line_id: line.quantity_milli for line in BASKET.lines}
    ok(a.push(sale(a, "c1", "ch-1", quote)))
    ok(b.push([foreign_refund(b, "rf-b", "ch-1", everything, original_device_id=a.device_id)]))
    ok(a.push(own_refund(a, "c1", "rf-a", "ch-1", quote, everything)))
    for name in ("refunds", "recompute", "refunds") if refunds_first else ("recompute", "refunds"):
        run(engine, name)
    assert balance(engine, "customer:c1") == 0
    assert_ledger_consistent(engine)


def test_two_refunds_elsewhere_of_one_cheque_reverse_it_once(hq: Hq, engine: sa.Engine) -> None:
    """One names the till that sold it, the other does not: they are the same original, and
    the second finds nothing left to return."""
    publish_rules(hq)
    hq.customer("c1")
    a, b, c = hq.enroll("s1"), hq.enroll("s2"), hq.enroll("s3")
    quote = quote_for("c1")
    everything = {line.line_id: line.quantity_milli for line in BASKET.lines}
    ok(a.push(sale(a, "c1", "ch-1", quote)))
    ok(b.push([foreign_refund(b, "rf-b", "ch-1", everything, original_device_id=a.device_id)]))
    ok(c.push([foreign_refund(c, "rf-c", "ch-1", everything)]))
    for name in ("recompute", "refunds", "refunds"):
        run(engine, name)
    assert balance(engine, "customer:c1") == 0
    verdicts, _ = recomputed(engine)
    assert sorted(verdicts.values()).count("reconciled") == 1


@pytest.mark.parametrize(("stamped", "verdict"), [("1.1", "ok"), ("0.9", "other_evaluator")])
def test_cheques_of_tills_not_yet_upgraded_are_recomputed(
    hq: Hq, engine: sa.Engine, stamped: str, verdict: str
) -> None:
    """Tills upgrade one by one: a cheque stamped 1.1 recomputes as 1.2 would (they differ
    in nothing a recomputation compares); one of an evaluator central cannot stand for is
    HQ's to look at."""
    publish_rules(hq)
    hq.customer("c1")
    till = hq.enroll()
    quote = quote_for("c1").model_copy(update={"evaluator_version": stamped})
    ok(till.push(sale(till, "c1", "ch-1", quote)))
    run(engine, "recompute")
    assert recomputed(engine)[0]["ch-1"] == verdict


def test_a_sale_whose_entries_were_quarantined_is_not_paid_again_by_a_correction(
    hq: Hq, engine: sa.Engine
) -> None:
    """An offline till sold to a customer HQ merged meanwhile: its entries are quarantined
    (the resolve job moves them to the customer kept). The recomputation checks what the till
    computed, which was right: no correction pays the points a second time."""
    publish_rules(hq)
    hq.customer("keep")
    hq.customer("dup")
    till = hq.enroll()
    hq.post("/admin/customers/merge", {"duplicate_id": "dup", "keep_id": "keep", "reason": "twin"})
    quote = quote_for("dup")
    ok(till.push(sale(till, "dup", "ch-1", quote)))
    for name in ("recompute", "resolve", "recompute"):
        run(engine, name)
    verdicts, corrections = recomputed(engine)
    assert (verdicts["ch-1"], corrections) == ("ok", [])
    paid = balance(engine, "customer:dup") + balance(engine, "customer:keep")
    assert paid <= quote.earn_points


def test_refunds_at_two_tills_that_count_each_other_are_priced_once_each(
    hq: Hq, engine: sa.Engine
) -> None:
    """Half a line returned at another till, then the other half at the till that sold it,
    before central reconciled the first: the reconciliation counts the second as earlier,
    so the second's recomputation does not count the first back (each priced as the later
    one: a point too many reversed, and a false mismatch)."""
    publish_rules(hq)
    hq.customer("c1")
    a, b = hq.enroll("s1"), hq.enroll("s2")
    quote = quote_for("c1")
    ok(a.push(sale(a, "c1", "ch-1", quote)))
    run(engine, "recompute")
    earned = balance(engine, "customer:c1")
    ok(b.push([foreign_refund(b, "rf-b", "ch-1", {"2": 500}, original_device_id=a.device_id)]))
    run(engine, "recompute")
    ok(a.push(own_refund(a, "c1", "rf-a", "ch-1", quote, {"2": 500})))
    for name in ("refunds", "recompute"):
        run(engine, name)
    verdicts, corrections = recomputed(engine)
    assert (verdicts["rf-a"], verdicts["rf-b"], corrections) == ("ok", "reconciled", [])
    both = refund_quote(quote, BASKET, {"2": 1000}, []).earn_points  # the two as one return
    assert earned - balance(engine, "customer:c1") == both
