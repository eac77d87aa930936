"""Three tills and central in one process, driven by hypothesis through sales, refunds,
partitions, crashes of either side, replayed pushes and skewed clocks; after every step the
invariants of PRODUCT.md are checked by the reference model in `model.py`.

Central is its real FastAPI app on an SQLite file with an injected clock, reached through
Starlette's TestClient; each till is the real `Till` on its own SQLite file with a
`ManualClock`, synced by the real `SyncClient`. Killing a till drops its objects and builds it
again from its data folder; killing central disposes its engine and starts a new app on the
same file. Time passes only when a rule moves it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
import warnings
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette asks for `httpx2`; httpx is what we use
    from fastapi.testclient import TestClient

from agent._clock import ManualClock
from agent._config import AgentSettings
from agent._demo import LIMITS, setup_central
from agent._errors import TillError
from agent._models import ConfirmRequest, IdentifierInput, RefundRequest, ReserveRequest
from agent._runtime import build_till, enrolled_settings
from agent._sales import Till
from agent._sync import SyncClient, enroll, load_credential
from central import create_app, make_engine, migrate
from central._clock import to_ms
from central._directory import issue_admin_token

from . import model
from .world import Admin, WorldClock

pytestmark = pytest.mark.filterwarnings(
    "ignore:You should not use the 'timeout' argument with the TestClient"
)

TILLS = ("till-a", "till-b", "till-c")
CUSTOMERS = ("c-1", "c-2", "c-3")
CENTRAL_URL = "http://testserver"


@dataclass
class Seat:
    name: str
    data_dir: Path
    clock: ManualClock
    till: Till
    sync: SyncClient
    online: bool = True
    sold: int = 0

    @property
    def db(self) -> Path:
        return self.data_dir / "till.db"


def _line(number: int, price: int, quantity: int, category: str) -> dict[str, Any]:
    return {
        "line_id": str(number),
        "sku": f"sku-{number}",
        "category": category,
        "quantity_milli": quantity * 1000,
        "unit_price": price,
        "total": price * quantity,
    }


baskets = st.lists(
    st.tuples(
        st.integers(100, 20000),
        st.integers(1, 3),
        st.sampled_from(["grocery", "dairy", "gift"]),
    ),
    min_size=1,
    max_size=3,
)


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.workdir = Path(tempfile.mkdtemp(prefix="kopilka-stateful-"))
        self.central_db = self.workdir / "central.db"
        self.world = WorldClock()
        self.engine = make_engine(f"sqlite:///{self.central_db}")
        migrate(self.engine)
        self.app = create_app(engine=self.engine, clock=self.world)
        self.client = _open(self.app)
        with self.engine.begin() as conn:
            token = issue_admin_token(conn, "stateful", to_ms(self.world()))
        self.admin_token = token
        admin = Admin(self.client, token)
        setup_central(admin)  # type: ignore[arg-type]
        for customer in CUSTOMERS:
            admin.call("POST", "/customers", {"customer_id": customer, "consent_data": True})
        self.offline = model.OfflineLedger(
            LIMITS["customer_points_per_till_max"], LIMITS["till_points_budget_max"]
        )
        self.cheques: list[tuple[str, str]] = []
        self.seats: dict[str, Seat] = {}
        for name in TILLS:
            code = admin.call("POST", "/stores/msk-1/enrollment-codes")["code"]
            self.seats[name] = self._enroll(name, code)
        for seat in self.seats.values():
            self._sync(seat)

    # --- building ---------------------------------------------------------------------------

    def _settings(self, data_dir: Path) -> AgentSettings:
        return AgentSettings(data_dir=data_dir, http_timeout_s=5.0, sync_backoff_s_max=1.0)

    def _enroll(self, name: str, code: str) -> Seat:
        data_dir = self.workdir / name
        clock = ManualClock(now=self.world.now, boot=f"boot-{name}")
        settings = self._settings(data_dir)
        till = build_till(settings, clock=clock)
        transport = self.client._transport  # the TestClient's ASGI transport
        enroll(till, data_dir, CENTRAL_URL, code, transport=transport)
        return self._seat(name, data_dir, clock)

    def _seat(self, name: str, data_dir: Path, clock: ManualClock) -> Seat:
        settings = self._settings(data_dir)
        till = build_till(settings, clock=clock)
        till.settings = enrolled_settings(till.settings, settings)
        credential = load_credential(data_dir)
        assert credential is not None
        sync = SyncClient(till, credential, settings, client=_open(self.app))
        seat = Seat(name, data_dir, clock, till, sync)
        self._wire(seat)
        return seat

    def _wire(self, seat: Seat) -> None:
        seat.till.central_hold = seat.sync.hold if seat.online else None

    def _sync(self, seat: Seat) -> None:
        seat.sync.sync_once()
        self.offline.pushed(seat.name, seat.db)

    # --- rules ------------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(TILLS),
        customer=st.sampled_from((*CUSTOMERS, None)),
        basket=baskets,
        redeem=st.sampled_from([0, 0, 50, 300, 1000]),
    )
    def sale(self, name: str, customer: str | None, basket: list[Any], redeem: int) -> None:
        seat = self.seats[name]
        seat.sold += 1
        cheque = f"{name}-{seat.sold}"
        lines = [_line(i, price, qty, cat) for i, (price, qty, cat) in enumerate(basket, 1)]
        body: dict[str, Any] = {
            "cheque_id": cheque,
            "basket": {"lines": lines},
            "redeem": {"points": redeem if customer else 0},
        }
        if customer is not None:
            body["customer"] = {"type": "customer", "value": customer}
        reserved = seat.till.reserve(ReserveRequest.model_validate(body))
        confirmed = seat.till.confirm(ConfirmRequest(cheque_id=cheque, fiscal_document="FD"))
        assert confirmed.spent_points == reserved.points_held <= redeem
        if reserved.hold_mode == "offline" and customer is not None:
            assert not seat.online, "an online till spent without central's hold"
            self.offline.spend(name, customer, confirmed.spent_points)
        self.cheques.append((name, cheque))

    @precondition(lambda self: bool(self.cheques))
    @rule(data=st.data(), line=st.integers(1, 3), attempt=st.integers(1, 3))
    def refund(self, data: st.DataObject, line: int, attempt: int) -> None:
        """One unit of a line back; a repeat, an unknown line or too many units is refused."""
        name, cheque = data.draw(st.sampled_from(self.cheques))
        seat = self.seats[name]
        returned = {"line_id": str(line), "quantity_milli": 1000}
        request = RefundRequest.model_validate(
            {"refund_id": f"r-{cheque}-{attempt}", "cheque_id": cheque, "lines": [returned]}
        )
        with contextlib.suppress(TillError):  # more than was sold, an unknown line: refused
            seat.till.refund(request)

    @rule(name=st.sampled_from(TILLS))
    def go_offline(self, name: str) -> None:
        seat = self.seats[name]
        seat.online = False
        self._wire(seat)

    @rule(name=st.sampled_from(TILLS))
    def go_online(self, name: str) -> None:
        seat = self.seats[name]
        seat.online = True
        self._wire(seat)
        self._sync(seat)

    @rule(name=st.sampled_from(TILLS))
    def sync(self, name: str) -> None:
        seat = self.seats[name]
        if seat.online:
            self._sync(seat)

    @rule(customer=st.sampled_from(CUSTOMERS), marketing=st.booleans())
    def hq_edits_customer(self, customer: str, marketing: bool) -> None:
        """HQ changes a profile: tills get a `customer` change, which carries no balance."""
        admin = Admin(self.client, self.admin_token)
        admin.call(
            "POST",
            "/customers",
            {"customer_id": customer, "consent_data": True, "consent_marketing": marketing},
        )

    @rule(seconds=st.sampled_from([1, 60, 1800, 7200]))
    def time_passes(self, seconds: int) -> None:
        self.world.now += timedelta(seconds=seconds)
        for seat in self.seats.values():
            seat.clock.advance(seconds)

    @rule(name=st.sampled_from(TILLS), skew_h=st.integers(-48, 48))
    def skew_clock(self, name: str, skew_h: int) -> None:
        """The till's wall clock jumps; its boot clock goes on as before."""
        seat = self.seats[name]
        seat.clock.set_wall(self.world.now + timedelta(hours=skew_h))

    @rule(name=st.sampled_from(TILLS))
    def kill_till(self, name: str) -> None:
        old = self.seats[name]
        _close(old.sync.client)
        fresh = self._seat(name, old.data_dir, old.clock)
        fresh.online, fresh.sold = old.online, old.sold
        self._wire(fresh)
        self.seats[name] = fresh

    @rule()
    def kill_central(self) -> None:
        self._close_all()
        self.engine = make_engine(f"sqlite:///{self.central_db}")
        self.app = create_app(engine=self.engine, clock=self.world)
        self.client = _open(self.app)
        for name, old in list(self.seats.items()):
            fresh = self._seat(name, old.data_dir, old.clock)
            fresh.online, fresh.sold = old.online, old.sold
            self._wire(fresh)
            self.seats[name] = fresh

    @rule(name=st.sampled_from(TILLS), data=st.data())
    def replay_push(self, name: str, data: st.DataObject) -> None:
        """An earlier push arrives again, whole or in part, in any order: nothing changes."""
        seat = self.seats[name]
        with closing(sqlite3.connect(seat.db)) as conn:
            rows = conn.execute(
                "SELECT epoch, seq, payload, payload_sha256 FROM outbox "
                "WHERE state != 'local' ORDER BY epoch, seq"
            ).fetchall()
        if not rows:
            return
        first = data.draw(st.integers(0, len(rows) - 1))
        chosen = rows[first : first + data.draw(st.integers(1, 8))]  # one earlier batch
        if data.draw(st.booleans()):
            chosen = data.draw(st.permutations(chosen))  # arriving out of order
        epoch = chosen[0][0]
        items = [
            {"seq": seq, "payload": payload, "payload_sha256": digest}
            for e, seq, payload, digest in chosen
            if e == epoch
        ]
        body = {
            "device_id": seat.till.seat.device_id,
            "device_epoch": epoch,
            "items": items,
            "device_time": seat.clock.wall().isoformat(),
        }
        before = model.central_snapshot(self.central_db)
        answer = self.client.post(
            "/sync/push",
            content=json.dumps(body),
            headers={
                "Authorization": f"Bearer {seat.sync.credential.secret}",
                "content-type": "application/json",
            },
        )
        assert answer.status_code in (200, 409, 422), answer.text
        assert model.central_snapshot(self.central_db) == before, "a replay changed central"

    @rule()
    def settle(self) -> None:
        """The network heals: every till online, synced twice; all agree with central."""
        for seat in self.seats.values():
            seat.online = True
            self._wire(seat)
        for _ in range(2):
            for seat in self.seats.values():
                self._sync(seat)
        balances = model.check_ledger(self.central_db)
        for seat in self.seats.values():
            with closing(sqlite3.connect(seat.db)) as conn:
                depth = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'local'")
                assert depth.fetchone()[0] == 0, f"{seat.name} kept records after settling"
            for customer in CUSTOMERS:
                found = seat.till.identify(IdentifierInput(type="customer", value=customer))
                assert found.balance is not None
                assert found.balance.balance == balances.get(customer, 0), (
                    f"{seat.name} shows {customer} at {found.balance.balance}, "
                    f"central at {balances.get(customer, 0)}"
                )

    # --- after every step -------------------------------------------------------------------

    @invariant()
    def ledger_holds(self) -> None:
        model.check_ledger(self.central_db)
        for seat in self.seats.values():
            model.check_acknowledged(self.central_db, seat.till.seat.device_id, seat.db)

    def _close_all(self) -> None:
        for seat in self.seats.values():
            _close(seat.sync.client)
        _close(self.client)
        self.engine.dispose()

    def teardown(self) -> None:
        self._close_all()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _open(app: Any) -> TestClient:
    """One client per till: the sync client sets its own credential on it."""
    client = TestClient(app)
    client.__enter__()
    return client


def _close(client: Any) -> None:
    client.__exit__(None, None, None)


TestSync = SyncMachine.TestCase
TestSync.settings = settings(
    max_examples=10,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
