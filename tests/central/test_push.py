"""Push: applied once, replays acknowledged, gaps and changed payloads refused."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient

from central import _lot_state, _push
from central import _tables as t
from protocol import (
    CENTRAL_DEVICE_ID,
    CardIdentifier,
    EntryKind,
    LedgerEntry,
    PushRequest,
    PushResponse,
    new_entry_id,
)

from .checks import assert_ledger_consistent
from .tills import NOW, Hq


def test_push_applies_and_replays_are_acknowledged(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    till = hq.enroll()
    items = [till.entry("c1", 100), till.entry("c1", 50), till.entry("c1", -30, EntryKind.burn)]
    first = till.push(items)
    assert first.status_code == 200, first.text
    assert first.json()["acked_through"] == 3
    assert [r["outcome"] for r in first.json()["results"]] == ["applied"] * 3
    again = till.push(items)
    assert again.status_code == 200
    assert [r["outcome"] for r in again.json()["results"]] == ["duplicate"] * 3
    overlap = till.push([items[2], till.entry("c1", 5)])
    assert [r["outcome"] for r in overlap.json()["results"]] == ["duplicate", "applied"]
    balances = assert_ledger_consistent(engine)
    assert balances[("customer:c1", "points")] == 125


def test_gap_is_refused_with_the_expected_seq(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    till = hq.enroll()
    items = [till.entry("c1", 10) for _ in range(4)]
    assert till.push(items[:1]).status_code == 200
    gap = till.push(items[2:])
    assert gap.status_code == 409
    assert gap.json()["code"] == "gap"
    assert gap.json()["details"] == {"expected_seq": 2}
    assert till.push(items[1:]).status_code == 200
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 40


def test_changed_payload_is_refused_and_recorded(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    till = hq.enroll()
    original = till.entry("c1", 10)
    assert till.push([original]).status_code == 200
    till.next_seq = 1
    changed = till.entry("c1", 99)
    for _ in range(2):
        refused = till.push([changed])
        assert refused.status_code == 409
        assert refused.json()["code"] == "conflict"
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.conflicts)).all()
    assert len(rows) == 1
    assert rows[0].kind == "seq_payload_mismatch"
    assert rows[0].times == 2
    assert rows[0].stored_sha256 == original.payload_sha256
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 10


def test_same_entry_id_at_another_seq_is_refused(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    till = hq.enroll()
    first = till.entry("c1", 10)
    assert till.push([first]).status_code == 200
    reused = till.entry("c1", 10, entry_id=json.loads(first.payload)["entry_id"])
    refused = till.push([reused])
    assert refused.status_code == 409
    assert refused.json()["details"]["kind"] == "id_reused"
    other = hq.enroll()
    stolen = other.entry("c1", 10, entry_id=json.loads(first.payload)["entry_id"])
    assert other.push([stolen]).status_code == 409
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.conflicts)).scalar() == 2


def test_an_id_is_not_reused_through_the_quarantine(hq: Hq, engine: sa.Engine) -> None:
    """A quarantined record is in no table with a UNIQUE id: its id is looked up both ways,
    and a reuse is a conflict like any other (it was acknowledged silently)."""
    hq.customer("c1")
    applied, quarantined = hq.enroll(), hq.enroll()
    first = applied.entry("c1", 100)
    assert applied.push([first]).status_code == 200
    taken = json.loads(first.payload)["entry_id"]
    # an applied entry's id, reused by a record central quarantines (an unknown customer)
    answer = applied.push([applied.entry("ghost", 999, entry_id=taken)])
    assert answer.status_code == 409, answer.text
    assert answer.json()["details"]["kind"] == "id_reused"
    # a quarantined record's id, reused by an entry central would apply, on another device
    held = quarantined.entry("ghost", 5)
    assert quarantined.push([held]).json()["results"][0]["outcome"] == "quarantined"
    thief = hq.enroll()
    reused = thief.entry("c1", 5, entry_id=json.loads(held.payload)["entry_id"])
    assert thief.push([reused]).status_code == 409
    # ... and by a second quarantined record, and twice in one batch
    again = hq.enroll()
    held_id = json.loads(held.payload)["entry_id"]
    assert again.push([again.entry("nobody", 1, entry_id=held_id)]).status_code == 409
    twice = hq.enroll()
    same = new_entry_id()
    pair = [twice.entry("c1", 1, entry_id=same), twice.entry("ghost", 1, entry_id=same)]
    assert twice.push(pair).status_code == 409
    with engine.connect() as conn:
        kinds = conn.execute(sa.select(t.conflicts.c.kind)).scalars().all()
        assert conn.execute(sa.select(sa.func.count()).select_from(t.quarantine)).scalar() == 1
    assert len(kinds) == 4
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 100


def test_quarantine_acknowledges_and_never_blocks(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    hq.customer("gone")
    hq.post("/admin/customers/gone/erase")
    till = hq.enroll()
    items = [
        till.entry("c1", 10),
        till.entry("ghost", 10),
        till.entry("gone", 10),
        till.store_record(f'{{"record":"entry","device_id":"{till.device_id}"}}'.encode()),
        till.entry("c1", 5),
    ]
    response = till.push(items)
    assert response.status_code == 200, response.text
    # Push writes its answer without a model per result: byte for byte what the model writes.
    assert PushResponse.model_validate_json(response.content).model_dump_json().encode() == (
        response.content
    )
    outcomes = [r["outcome"] for r in response.json()["results"]]
    assert outcomes == ["applied", "quarantined", "quarantined", "quarantined", "applied"]
    assert "unknown" in response.json()["results"][1]["reason"]
    assert "erased" in response.json()["results"][2]["reason"]
    assert till.push(items).json()["acked_through"] == 5
    assert till.push([till.entry("c1", 1)]).status_code == 200
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.quarantine)).scalar() == 3
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 16


def test_a_sign_up_scrubbed_at_the_till_is_quarantined_as_such(hq: Hq) -> None:
    """A till keeps a sign-up of a customer erased since without name or identifiers, and
    sends it so to a central restored from an older backup: not an unreadable payload."""
    till = hq.enroll()
    signup = {
        "record": "signup", "signup_id": "5f0c3e9a-0000-7000-8000-000000000001",
        "device_id": till.device_id, "device_epoch": 1, "device_seq": till.next_seq,
        "store_id": "s1", "provisional_customer_id": "p-1", "identifiers": [],
        "consent_marketing": False, "consent_data": True, "first_name": "",
        "device_time": "2026-11-25T09:00:00Z",
    }  # fmt: skip
    broken = {**signup, "device_seq": till.next_seq + 1, "identifiers": "none"}
    items = [till.store_record(json.dumps(body).encode()) for body in (signup, broken)]
    response = till.push(items)
    assert response.status_code == 200, response.text
    reasons = [result["reason"] for result in response.json()["results"]]
    assert reasons[0].startswith("sign-up at a till of a customer erased there since")
    assert reasons[1].startswith("unreadable payload: signup.identifiers")


def test_unknown_identifier_accrues_to_the_identifier(hq: Hq, engine: sa.Engine) -> None:
    till = hq.enroll()
    card = CardIdentifier(number="2770000000017")
    assert till.push([till.entry("", 40, account=card)]).status_code == 200
    assert assert_ledger_consistent(engine)[("card:2770000000017", "points")] == 40


def test_second_grant_is_reversed_by_central(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    one, two = hq.enroll(), hq.enroll()
    grant = {"kind": EntryKind.welcome, "grant_key": "welcome:c1"}
    assert one.push([one.entry("c1", 100, **dict(grant))]).status_code == 200
    response = two.push([two.entry("c1", 100, **dict(grant))])
    assert response.status_code == 200
    with engine.connect() as conn:
        central_rows = conn.execute(
            sa.select(t.ledger).where(t.ledger.c.device_id == CENTRAL_DEVICE_ID)
        ).all()
    assert [(r.kind, r.amount, r.device_seq) for r in central_rows] == [("grant_reversal", -100, 1)]
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 100


def test_a_grant_reaches_every_till_in_the_customers_state(hq: Hq) -> None:
    """Once a grant lands, pull says so in the customer's state: no till offers it again.
    Keys of other customers (even one whose id extends this one's) stay theirs."""
    hq.customer("c1")
    hq.customer("c1:x")
    birthday = "birthday:c1:x:2026"  # c1:x's birthday, not c1's of a year "x:2026"
    one, other = hq.enroll(), hq.enroll()
    cursor = other.pull(0).json()["next_cursor"]
    grants = [("welcome:c1", "c1"), ("birthday:c1:2026", "c1"), (birthday, "c1:x")]
    items = [one.entry(c, 100, EntryKind(k.split(":")[0]), grant_key=k) for k, c in grants]
    assert one.push(items).status_code == 200
    changes = other.pull(cursor).json()["changes"]
    states = {c["state"]["customer_id"]: c["state"] for c in changes if c["type"] == "customer"}
    assert states["c1"]["grants_received"] == ["birthday:c1:2026", "welcome:c1"]
    assert states["c1:x"]["grants_received"] == ["birthday:c1:x:2026"]
    snapshot = other.client.get("/sync/snapshot", headers=other.headers).json()
    [c1] = [c for c in snapshot["changes"] if c.get("state", {}).get("customer_id") == "c1"]
    assert c1["state"]["grants_received"] == ["birthday:c1:2026", "welcome:c1"]


def test_overspend_is_recorded_as_debt(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    till = hq.enroll()
    assert (
        till.push([till.entry("c1", 10), till.entry("c1", -25, EntryKind.burn)]).status_code == 200
    )
    with engine.connect() as conn:
        debts = conn.execute(sa.select(t.debts)).all()
    assert [(d.account_key, d.balance) for d in debts] == [("customer:c1", -15)]


def test_bad_requests_get_precise_json_errors(hq: Hq, client: TestClient) -> None:
    hq.customer("c1")
    till = hq.enroll()
    item = till.entry("c1", 10)
    body = till.body([item])
    body["items"][0]["seq"] = 1.0
    response = client.post("/sync/push", json=body, headers=till.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "items.0.seq" in response.json()["message"]
    body = till.body([item])
    body["items"][0]["payload_sha256"] = "0" * 64
    response = client.post("/sync/push", json=body, headers=till.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "payload_hash_mismatch"
    response = client.post(
        "/sync/push",
        content=b"{not json",
        headers={**till.headers, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert set(response.json()) >= {"code", "message"}


def test_oversized_body_is_refused_with_413(hq: Hq, client: TestClient) -> None:
    till = hq.enroll()
    response = client.post("/sync/push", content=b"x" * (17 * 1024 * 1024), headers=till.headers)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_payload_of_another_device_is_refused(hq: Hq, client: TestClient) -> None:
    hq.customer("c1")
    mine, other = hq.enroll(), hq.enroll()
    foreign = other.entry("c1", 10)
    mine.next_seq = 1
    body = mine.body([foreign])
    response = client.post("/sync/push", json=body, headers=mine.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "wrong_device"
    as_other = other.body([foreign])
    response = client.post("/sync/push", json=as_other, headers=mine.headers)
    assert response.status_code == 403


def test_lots_are_rebuilt_from_the_ledger(hq: Hq, engine: sa.Engine) -> None:
    from central._push import rebuild_lots

    hq.customer("c1")
    till = hq.enroll()
    later = NOW + timedelta(days=30)
    items = [
        till.entry("c1", 10, expires_at=later),
        till.entry("c1", -4, EntryKind.burn),
        till.entry("c1", 7, activates_at=later),
        till.entry("c1", 5),  # never pending, never expires: no row to index
    ]
    assert till.push(items).status_code == 200
    with engine.begin() as conn:
        pushed = conn.execute(sa.select(t.lots.c.points).order_by(t.lots.c.points)).scalars()
        assert list(pushed) == [7, 10]
        assert rebuild_lots(conn, "customer:c1") == 2
        assert rebuild_lots(conn, "customer:c1") == 2
        points = conn.execute(sa.select(t.lots.c.points).order_by(t.lots.c.points)).scalars()
        assert list(points) == [7, 10]


def test_unexpected_failure_answers_json_500(engine: sa.Engine) -> None:
    from central import create_app

    from .conftest import TestClient

    app = create_app(engine=engine)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json()["code"] == "internal"


def test_prepared_rows_name_their_columns(hq: Hq) -> None:
    """`_push` makes ledger rows as tuples in `LEDGER_COLUMNS` order: each value under its
    column's name, and the posting the same entry's."""
    hq.customer("c1")
    till = hq.enroll()
    pushed = till.entry("c1", -7, EntryKind.refund_reversal, reverses=str(uuid.uuid4()))
    payload = pushed.payload.encode()
    entry = LedgerEntry.model_validate_json(payload)
    row = _push._ledger_row(entry, payload, pushed.payload_sha256, 123)
    assert row == {
        "entry_id": str(entry.entry_id),
        "device_id": entry.device_id,
        "device_epoch": entry.device_epoch,
        "device_seq": entry.device_seq,
        "kind": "refund_reversal",
        "account_key": "customer:c1",
        "asset": "points",
        "amount": -7,
        "grant_key": None,
        "cheque_id": entry.cheque_id,
        "reverses": str(entry.reverses),
        "device_time_ms": int(entry.device_time.timestamp() * 1000),
        "payload": payload,
        "payload_sha256": pushed.payload_sha256,
        "received_ms": 123,
    }
    [item] = _push.read_items(till.device_id, PushRequest.model_validate(till.body([pushed])))
    assert item.posting == _lot_state.postings([entry])[0]


def test_a_batch_that_would_take_a_balance_past_its_bounds_is_refused(
    hq: Hq, engine: sa.Engine
) -> None:
    """Each entry within bounds, the sum not: that batch is refused (the till's sync stops
    with the reason) rather than every till's pull stopping at a balance it cannot read."""
    hq.customer("c1")
    till, other = hq.enroll(), hq.enroll("s2")
    assert till.push([till.entry("c1", 10**12)]).status_code == 200
    refused = till.push([till.entry("c1", 1)])
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "balance_out_of_range"
    assert other.push([other.entry("c1", -5, EntryKind.burn)]).status_code == 200
    assert other.pull(0).status_code == 200
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 10**12 - 5
