"""Pulls at their edges, central and a till in this process: a pull that stops inside the
changes of a push counts the till's own entries once, and a snapshot carries erasures.

Central logs a group of pushes as one change-log row of thousands of changes, and a page holds
at most 1,000, so a page may end after a customer's new balance and before the push's last
change. The till counted its acknowledged entries until its cursor reached that last change:
between the two (and for good when the next page could not be fetched) central's balance,
which has them, and the entries themselves both counted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent import _sync
from agent._clock import ManualClock
from agent._config import AgentSettings
from agent._demo import CARD, LIMITS, setup_central
from agent._models import (
    ConfirmRequest,
    IdentifierInput,
    QuoteRequest,
    ReserveRequest,
    SignupRequest,
    VoidRequest,
)
from agent._runtime import PHONE_KEY_FILE, build_till, enrolled_settings
from agent._sales import Till
from agent._sync import SyncClient, SyncReport, enroll, load_credential
from central import _changes, create_app, make_engine, migrate
from central._clock import to_ms
from central._directory import issue_admin_token
from protocol import PhoneHasher

from .world import START, Admin, TestClient, WorldClock

CENTRAL_URL = "http://testserver"


@pytest.fixture
def central(tmp_path: Path) -> Iterator[tuple[TestClient, Admin, Any]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'central.db'}")
    migrate(engine)
    clock = WorldClock()
    with TestClient(create_app(engine=engine, clock=clock)) as client:
        with engine.begin() as conn:
            admin = Admin(client, issue_admin_token(conn, "tests", to_ms(clock())))
        setup_central(admin)  # type: ignore[arg-type]  # shaped like agent._fleet.Central
        admin.call("POST", "/customers", {"customer_id": "c-1", "consent_data": True})
        yield client, admin, engine
    engine.dispose()


def _till(tmp_path: Path, client: TestClient, admin: Admin) -> tuple[Till, SyncClient]:
    data_dir = tmp_path / "till"
    settings = AgentSettings(data_dir=data_dir, http_timeout_s=5.0)
    clock = ManualClock(now=START)
    code = admin.call("POST", "/stores/msk-1/enrollment-codes")["code"]
    enroll(build_till(settings, clock=clock), data_dir, CENTRAL_URL, code, client._transport)
    till = build_till(settings, clock=clock)
    till.settings = enrolled_settings(till.settings, settings)
    credential = load_credential(data_dir)
    assert credential is not None
    return till, SyncClient(till, credential, settings, client=client)


def _sell(till: Till, cheque_id: str, price: int, redeem: int = 0) -> None:
    line = {"line_id": "1", "sku": "tea", "category": "grocery", "quantity_milli": 1000}
    request = {
        "cheque_id": cheque_id,
        "customer": {"type": "customer", "value": "c-1"},
        "basket": {"lines": [{**line, "unit_price": price, "total": price}]},
        "redeem": {"points": redeem},
    }
    till.reserve(ReserveRequest.model_validate(request))
    till.confirm(ConfirmRequest(cheque_id=cheque_id, fiscal_document=f"FD-{cheque_id}"))


def _balance(till: Till) -> int:
    view = till.identify(IdentifierInput(type="customer", value="c-1")).balance
    assert view is not None
    return view.balance


def _central_balance(engine: Any) -> int:
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT balance FROM accounts WHERE account_key = 'customer:c-1' AND asset = 'points'"
        ).scalar_one()
    return int(found)


@pytest.mark.parametrize("redeem", [0, 300], ids=["earn", "earn-and-spend"])
def test_a_page_ending_inside_a_push_counts_the_tills_entries_once(
    tmp_path: Path,
    central: tuple[TestClient, Admin, Any],
    monkeypatch: pytest.MonkeyPatch,
    redeem: int,
) -> None:
    client, admin, engine = central
    till, sync = _till(tmp_path, client, admin)
    sync.sync_once()  # the till knows c-1
    _sell(till, "first", 100000)
    sync.sync_once()
    _sell(till, "second", 100000, redeem=redeem)
    sync.push_all(SyncReport())
    # pages of one change: the first ends right after c-1's points balance, the push's first
    # change; the second is lost on the way, and the sync fails there
    monkeypatch.setattr(_sync, "pull_page_changes_max", 1)
    pulls = 0
    get = client.get

    def link_lost_after_one_page(url: str, *args: Any, **kwargs: Any) -> httpx.Response:
        nonlocal pulls
        pulls += 1 if url == "/sync/pull" else 0
        if pulls >= 2:
            raise httpx.ConnectError("the link dropped")
        return get(url, *args, **kwargs)

    monkeypatch.setattr(client, "get", link_lost_after_one_page)
    assert sync.tick() is None  # the sync failed after the first page
    assert _balance(till) == _central_balance(engine)
    monkeypatch.setattr(client, "get", get)
    sync.sync_once()
    assert _balance(till) == _central_balance(engine)


def test_a_till_back_on_a_snapshot_drops_a_customer_erased_meanwhile(
    tmp_path: Path, central: tuple[TestClient, Admin, Any]
) -> None:
    """The tombstone in the change log is gone when a till needs a snapshot: the snapshot
    carries it instead (it served the customers left only, and the till kept the erased
    one, identifiable by card and phone)."""
    client, admin, engine = central
    till, sync = _till(tmp_path, client, admin)
    sync.sync_once()
    card = IdentifierInput(type="card", value=CARD)
    assert till.identify(card).customer_id == "c-anna"
    admin.call("POST", "/customers/c-anna/erase")
    with engine.begin() as conn:  # the log is pruned past the tombstone: cursors need more
        _changes.prune(conn, _changes.counter(conn, "change_seq"))
    sync.sync_once()
    after = till.identify(card)  # a card the till does not know: it accrues to the card
    assert (after.known, after.customer_id, after.first_name) == (False, None, "")
    cached = till.store.db.execute(
        "SELECT status, first_name FROM customers WHERE customer_id = 'c-anna'"
    ).fetchall()
    assert cached == [("erased", "")]
    phone = till.store.db.execute(
        "SELECT COUNT(*) FROM identifiers WHERE customer_id = 'c-anna'"
    ).fetchone()[0]
    assert phone == 0


NAME, BIRTHDAY, PHONE = "Зинаида", "1984-03-09", "+79035550123"


def _personal_data_in(path: Path, needles: dict[str, str]) -> set[tuple[str, str]]:
    """(table, what) for every table of the SQLite file at `path` holding a needle."""
    found = set()
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                text = " ".join(str(value) for value in row)
                found |= {(table, what) for what, needle in needles.items() if needle in text}
    return found


def test_an_erasure_leaves_no_personal_data_on_the_till(
    tmp_path: Path, central: tuple[TestClient, Admin, Any]
) -> None:
    """The cache, the reservations (the phone's hash), the cheque documents (the birthday), a
    sign-up's record and answer: after the tombstone, none of it is left. A sale still in the
    outbox when the tombstone came loses it once central acknowledges it. The phone itself
    is never there."""
    client, admin, _ = central
    person = {"first_name": NAME, "birthday": BIRTHDAY, "phones": [PHONE], "consent_data": True}
    admin.call("POST", "/customers", {"customer_id": "c-9", **person})
    till, sync = _till(tmp_path, client, admin)
    sync.sync_once()
    by_phone = {"type": "phone", "value": PHONE}
    line = {"line_id": "1", "sku": "tea", "category": "grocery", "quantity_milli": 1000}

    def sell(cheque_id: str) -> None:
        body = {
            "cheque_id": cheque_id,
            "customer": by_phone,
            "basket": {"lines": [{**line, "unit_price": 10000, "total": 10000}]},
        }
        till.reserve(ReserveRequest.model_validate(body))
        till.confirm(ConfirmRequest(cheque_id=cheque_id, fiscal_document="FD"))

    sell("synced")
    joined = till.signup(
        SignupRequest(signup_id="s-1", phone="+79165550199", consent_data=True, first_name="Ия")
    )
    assert joined.customer_id is not None
    sync.sync_once()
    made = {"first_name": "Ия", "phones": ["+79165550199"], "consent_data": True}
    admin.call("POST", "/customers", {"customer_id": joined.customer_id, **made})
    sell("still-local")
    key = (tmp_path / "till" / PHONE_KEY_FILE).read_text().strip()
    hashed = PhoneHasher(bytes.fromhex(key))
    needles = {
        "name": NAME,
        "birthday": BIRTHDAY,
        "phone": PHONE,
        "phone hash": hashed(PHONE),
        "signed-up name": '"Ия"',
        "signed-up phone hash": hashed("+79165550199"),
    }
    db = tmp_path / "till" / "till.db"
    assert {what for _, what in _personal_data_in(db, needles)} == set(needles) - {"phone"}
    admin.call("POST", "/customers/c-9/erase")
    admin.call("POST", f"/customers/{joined.customer_id}/erase")
    sync.pull_all(SyncReport())  # the tombstones, before "still-local" is pushed
    assert _personal_data_in(db, needles) == {("outbox", "birthday")}
    sync.sync_once()
    assert _personal_data_in(db, needles) == set()


def _meta(till: Till, key: str) -> str:
    row = till.store.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return "" if row is None else str(row[0])


def _local(till: Till) -> int:
    return int(
        till.store.db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'local'").fetchone()[0]
    )


@pytest.mark.parametrize("answer", ["acked beyond", "gap beyond", "not json", "disk full"])
def test_a_sync_that_cannot_trust_an_answer_fails_in_words_and_marks_nothing(
    tmp_path: Path,
    central: tuple[TestClient, Admin, Any],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
) -> None:
    """An answer to a push that claims more than the batch sent, a gap past it, one that is
    not JSON, or the till's own disk failing while it applies a page: the sync fails (it used
    to mark records central never had as acknowledged, or to raise out of the job with the
    status left online), says why, and every record it had not sent stays local."""
    client, admin, _ = central
    till, sync = _till(tmp_path, client, admin)
    sync.sync_once()
    for n in range(3):
        _sell(till, f"s-{n}", 10000)
    one_a_time = sync.settings.model_copy(update={"sync_batch_entries_max": 1})
    monkeypatch.setattr(sync, "settings", one_a_time)
    post = client.post

    def tampered(url: str, *args: Any, **kwargs: Any) -> httpx.Response:
        real = post(url, *args, **kwargs)
        if url != "/sync/push":
            return real
        if answer == "acked beyond" and real.status_code == 200:
            body = real.json() | {"acked_through": real.json()["acked_through"] + 10}
            return httpx.Response(200, json=body)
        if answer == "gap beyond":
            return httpx.Response(409, json={"code": "gap", "details": {"expected_seq": 1000}})
        if answer == "not json":
            return httpx.Response(409, text="<html>bad gateway</html>")
        return real

    monkeypatch.setattr(client, "post", tampered)
    if answer == "disk full":

        def full(*_: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(_sync, "put_balances", full)
    before = _local(till)
    assert sync.tick() is None  # failed, and did not raise
    assert _meta(till, "online") == "0"
    said = _meta(till, "last_sync_error")
    assert said, "the reason, in words"
    if answer == "disk full":
        assert "disk is full" in said
    else:
        assert _local(till) >= before - 1  # at most the record sent may be central's


def _online_till_of_anna(
    tmp_path: Path, central: tuple[TestClient, Admin, Any], points: int
) -> tuple[Till, SyncClient]:
    """A till that asks central for holds, synced, with Anna (the demo's card) at `points`."""
    client, admin, _ = central
    admin.call(
        "POST", "/customers/c-anna/adjustments", {"points": points, "reason": "for the test"}
    )
    till, sync = _till(tmp_path, client, admin)
    till.central_hold = sync.hold
    sync.sync_once()
    return till, sync


def _annas_tea(price: int, redeem: dict[str, Any]) -> dict[str, Any]:
    line = {"line_id": "1", "sku": "tea", "category": "grocery", "quantity_milli": 1000}
    return {
        "customer": {"type": "card", "value": CARD},
        "basket": {"lines": [{**line, "unit_price": price, "total": price}]},
        "redeem": redeem,
    }


@pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument with the TestClient")
def test_central_holds_what_the_sale_spends_not_what_was_asked(
    tmp_path: Path, central: tuple[TestClient, Admin, Any]
) -> None:
    """ "Spend all" on a small cheque: the rules let it spend half of the cheque, and central
    holds that much. It held the whole balance, and every other till was refused."""
    _, admin, _ = central
    till, _ = _online_till_of_anna(tmp_path, central, 10000)
    request = {"cheque_id": "small", **_annas_tea(10000, {"mode": "all"})}
    reserved = till.reserve(ReserveRequest.model_validate(request))
    assert reserved.hold_mode == "central"
    assert 0 < reserved.quote.burn_points < 10000
    holds = admin.call("GET", "/customers/c-anna")["holds"]
    assert [hold["points"] for hold in holds] == [reserved.quote.burn_points]


def _snapshot_cut_after(client: TestClient, monkeypatch: pytest.MonkeyPatch, *marks: str) -> None:
    """The next pull is a snapshot of one change a page, and the link drops right after the
    page whose text (spaces taken out) holds all of `marks`."""
    monkeypatch.setattr(_sync, "pull_page_changes_max", 1)
    get, came = client.get, False

    def link_lost_after_it(url: str, *args: Any, **kwargs: Any) -> httpx.Response:
        nonlocal came
        if url == "/sync/snapshot" and came:
            raise httpx.ConnectError("the link dropped")
        answer = get(url, *args, **kwargs)
        text = answer.text.replace(" ", "")
        came = url == "/sync/snapshot" and all(mark in text for mark in marks)
        return answer

    monkeypatch.setattr(client, "get", link_lost_after_it)


def _sold_acknowledged_log_gone(
    tmp_path: Path, central: tuple[TestClient, Admin, Any], price: int
) -> tuple[Till, SyncClient]:
    """A till that sold for `price` to c-1 and pushed it (acknowledged, not pulled yet), and a
    central whose change log is gone, so that the till's next pull is a snapshot."""
    client, admin, engine = central
    till, sync = _till(tmp_path, client, admin)
    sync.sync_once()
    _sell(till, "first", price)
    sync.push_all(SyncReport())
    with engine.begin() as conn:
        _changes.prune(conn, _changes.counter(conn, "change_seq"))
    return till, sync


def test_a_snapshot_cut_short_counts_the_tills_entries_once(
    tmp_path: Path, central: tuple[TestClient, Admin, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot's pages write central's balances as they come, and the cursor moves only
    with the last page: a balance from a page already has the till's acknowledged entries in
    it, and they counted again (twice central's balance, until a snapshot completed)."""
    client, _, engine = central
    till, sync = _sold_acknowledged_log_gone(tmp_path, central, 100000)
    _snapshot_cut_after(client, monkeypatch, '"customer_id":"c-1"', '"type":"balance"')
    assert sync.tick() is None  # cut short after the page with c-1's balance
    assert _balance(till) == _central_balance(engine)


@pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument with the TestClient")
def test_a_void_of_a_held_cheque_asks_for_a_push_that_frees_the_points_at_central(
    tmp_path: Path, central: tuple[TestClient, Admin, Any]
) -> None:
    """Central releases a hold when the voided cheque's document arrives: the void asks the
    sync for a push now (in the agent it wakes the sync process), so the next sale at any
    till finds the points free, not a sync interval later."""
    client, admin, _ = central
    admin.call("POST", "/customers/c-anna/adjustments", {"points": 10000, "reason": "for the test"})
    till, sync = _till(tmp_path, client, admin)
    till.central_hold = sync.hold
    asked: list[str] = []
    till.on_central_release = lambda: asked.append("push")
    sync.sync_once()
    line = {"line_id": "1", "sku": "tea", "category": "grocery", "quantity_milli": 1000}
    sale = {
        "customer": {"type": "card", "value": CARD},
        "basket": {"lines": [{**line, "unit_price": 100000, "total": 100000}]},
        "redeem": {"points": 300},
    }
    held = till.reserve(ReserveRequest.model_validate({"cheque_id": "pay-failed", **sale}))
    assert held.hold_mode == "central"
    assert admin.call("GET", "/customers/c-anna")["holds"]
    till.void(VoidRequest(cheque_id="pay-failed"))
    assert asked == ["push"]
    sync.push_all(SyncReport())  # what the woken sync does first
    assert admin.call("GET", "/customers/c-anna")["holds"] == []


def test_a_snapshot_cut_short_counts_the_tills_counters_once(
    tmp_path: Path, central: tuple[TestClient, Admin, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for points, so for counters: a snapshot page brought central's rolling spend, which
    has the till's acknowledged sale in it, and the till added that sale again until a
    snapshot completed. A 16,000 ₽ sale made the customer gold (30,000 ₽) at this till."""
    client, _, engine = central
    till, sync = _sold_acknowledged_log_gone(tmp_path, central, 1_600_000)
    with engine.connect() as conn:
        spend = conn.exec_driver_sql(
            "SELECT balance FROM accounts WHERE account_key = 'customer:c-1' "
            "AND asset = 'rolling_spend'"
        ).scalar_one()
    assert spend == 1_600_000
    _snapshot_cut_after(client, monkeypatch, '"asset":"rolling_spend"')
    assert sync.tick() is None  # cut short after the page with c-1's rolling spend
    line = {"line_id": "1", "sku": "tea", "category": "grocery", "quantity_milli": 1000}
    quote = till.quote(
        QuoteRequest.model_validate(
            {
                "customer": {"type": "customer", "value": "c-1"},
                "basket": {"lines": [{**line, "unit_price": 10000, "total": 10000}]},
            }
        )
    )
    assert quote.tier == "silver"


def test_a_pull_cut_short_leaves_the_data_as_old_as_it_was(
    tmp_path: Path, central: tuple[TestClient, Admin, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PRODUCT.md: data age runs from the last *successful* pull. Two days offline, central
    took the customer's points; the first page back comes, then the link drops: the till
    must not call the rest fresh and spend the points offline."""
    client, admin, engine = central
    admin.call("POST", "/customers/c-1/adjustments", {"points": 400, "reason": "opening"})
    till, sync = _till(tmp_path, client, admin)
    sync.sync_once()
    assert _balance(till) == 400
    till.clock.advance(2 * 86400)  # HQ's data_age_max_s is an hour
    admin.call("POST", "/customers/c-1/adjustments", {"points": -400, "reason": "spent elsewhere"})
    admin.call("POST", "/customers/c-1/adjustments", {"points": 1, "reason": "a second change"})
    monkeypatch.setattr(_sync, "pull_page_changes_max", 1)
    asked = 0
    get = client.get

    def link_lost_after_a_page(url: str, *args: Any, **kwargs: Any) -> httpx.Response:
        nonlocal asked
        asked += url == "/sync/pull"
        if asked > 1:
            raise httpx.ConnectError("the link dropped")
        return get(url, *args, **kwargs)

    monkeypatch.setattr(client, "get", link_lost_after_a_page)
    sync.tick()
    assert asked == 2, "one page applied, the second never came"
    age = till.data_age_s(till.store.db)
    assert age is not None
    assert age >= 2 * 86400
    _sell(till, "offline", 100000, redeem=300)
    assert _central_balance(engine) == 1
    assert (
        till.store.db.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'burn'").fetchone()[0] == 0
    ), "no points spent on data two days old"
    monkeypatch.setattr(client, "get", get)
    sync.sync_once()  # the link back: the whole pull
    assert till.data_age_s(till.store.db) == 0


@pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument with the TestClient")
def test_a_pull_while_central_is_asked_for_a_hold_does_not_hide_points(
    tmp_path: Path, central: tuple[TestClient, Admin, Any]
) -> None:
    """A sale's earned points are acknowledged, not yet pulled. The next sale spends all and
    asks central for a hold; the sync applies a pull page meanwhile. The till must spend
    what it would have spent without that pull, not 0 "limited by the balance"."""
    client, admin, _ = central
    till, sync = _till(tmp_path, client, admin)
    sync.sync_once()
    _sell(till, "earn", 100000)
    sync.push_all(SyncReport())  # acknowledged; the pull that brings it comes later

    def hold_with_a_pull_meanwhile(request: Any) -> Any:
        answer = sync.hold(request)
        sync.pull_all(SyncReport())
        return answer

    def spend_all(cheque_id: str) -> int:
        line = {"line_id": "1", "sku": "tea", "category": "grocery", "quantity_milli": 1000}
        request = {
            "cheque_id": cheque_id,
            "customer": {"type": "customer", "value": "c-1"},
            "basket": {"lines": [{**line, "unit_price": 100000, "total": 100000}]},
            "redeem": {"mode": "all"},
        }
        reserved = till.reserve(ReserveRequest.model_validate(request))
        till.void(VoidRequest(cheque_id=cheque_id))
        return reserved.quote.burn_points

    till.central_hold = hold_with_a_pull_meanwhile
    raced = spend_all("raced")
    till.central_hold = sync.hold
    assert raced == spend_all("calm") > 0


def test_an_erasure_reaches_a_member_who_signed_up_here_under_centrals_own_id(
    tmp_path: Path, central: tuple[TestClient, Admin, Any]
) -> None:
    """A customer joins at the till (a provisional id of the till's); HQ creates them under
    an id of its own with the same phone, which the till pulls; then HQ erases them. The
    tombstone names central's id, and the phone is that one's now: the sign-up here is still
    theirs, and nothing of it may stay."""
    client, admin, _ = central
    till, sync = _till(tmp_path, client, admin)
    sync.sync_once()
    phone = "+79165550199"
    till.signup(SignupRequest(signup_id="s-1", phone=phone, consent_data=True, first_name="Ия"))
    sync.sync_once()
    made = {"customer_id": "c-new", "first_name": "Ия", "phones": [phone], "consent_data": True}
    admin.call("POST", "/customers", made)
    sync.sync_once()
    db = tmp_path / "till" / "till.db"
    needles = {"name": "Ия"}
    assert {table for table, _ in _personal_data_in(db, needles)} >= {"customers", "signups"}
    admin.call("POST", "/customers/c-new/erase")
    sync.sync_once()
    assert _personal_data_in(db, needles) == set()


@pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument with the TestClient")
def test_the_quote_previews_what_reserve_spends_online_and_offline(
    tmp_path: Path, central: tuple[TestClient, Admin, Any]
) -> None:
    """Online, reserve spends what central holds, past the till's offline allowance: the
    quote the cashier reads out says the same. Offline, both keep to the allowance."""
    till, _ = _online_till_of_anna(tmp_path, central, 5000)
    sale = _annas_tea(500000, {"points": 3000})

    def quoted_then_reserved(cheque_id: str) -> tuple[int, int]:
        quote = till.quote(QuoteRequest.model_validate(sale))
        reserved = till.reserve(ReserveRequest.model_validate({"cheque_id": cheque_id, **sale}))
        till.void(VoidRequest(cheque_id=cheque_id))
        return quote.burn_points, reserved.quote.burn_points

    online = quoted_then_reserved("online")
    assert online[0] == online[1] > LIMITS["customer_points_per_till_max"]
    with till.store.write() as db:  # the last sync failed: the till is offline
        db.execute("UPDATE meta SET value = '0' WHERE key = 'online'")
    till.central_hold = lambda _: None  # and central does not answer
    offline = quoted_then_reserved("offline")
    assert offline[0] == offline[1] == LIMITS["customer_points_per_till_max"]


def test_a_till_whose_push_is_refused_still_pulls(
    tmp_path: Path, central: tuple[TestClient, Admin, Any]
) -> None:
    """A batch central refuses (here a record sent again with other bytes: a conflict for
    HQ) stops the push until HQ acts, not the pull: the till's data stays fresh, and its
    status says why its records do not go."""
    client, admin, _ = central
    till, sync = _till(tmp_path, client, admin)
    sync.sync_once()
    _sell(till, "sold", 10000)
    sync.sync_once()
    with till.store.write() as db:  # the till's record changed after central had it
        db.execute("UPDATE outbox SET state = 'local', payload = payload || ' ' WHERE seq = 1")
    admin.call("POST", "/customers/c-1/adjustments", {"points": 77, "reason": "goodwill"})
    till.clock.advance(2 * 86400)
    assert sync.tick() is None
    assert "push refused" in _meta(till, "last_sync_error")
    assert till.data_age_s(till.store.db) == 0
    cached = till.store.db.execute(
        "SELECT json_extract(state, '$.points_balance') FROM customers WHERE customer_id = 'c-1'"
    ).fetchone()[0]
    assert cached == _central_balance(central[2])  # the goodwill points came
