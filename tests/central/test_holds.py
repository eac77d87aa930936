"""Online holds: two online tills cannot spend the same points; holds are confirmed by the
burn, released by a void, stop counting at expiry; phone-only redemption needs a code."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from central import _jobs, create_app
from central import _tables as t
from central._gateway import FileGateway
from protocol import ChequeState

from .conftest import FakeClock
from .sales import publish_rules, quote_for, sale
from .tills import Hq, Till


def hold(till: Till, customer_id: str, cheque_id: str, points: int, **extra: object) -> object:
    body = {
        "device_id": till.device_id,
        "cheque_id": cheque_id,
        "customer_id": customer_id,
        "points": points,
        **extra,
    }
    return till.client.post("/sync/holds", json=body, headers=till.headers)


def states(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(t.holds.c.cheque_id, t.holds.c.state)).all())


def test_two_online_tills_cannot_spend_the_same_points(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    one, two = hq.enroll("s1"), hq.enroll("s2")
    assert one.push([one.entry("c1", 500)]).status_code == 200
    first = hold(one, "c1", "a-1", 400)
    assert first.status_code == 200, first.text
    assert first.json()["points"] == 400
    again = hold(one, "c1", "a-1", 400)  # the same cheque asks again: the same hold
    assert again.json()["hold_id"] == first.json()["hold_id"]
    partial = hold(two, "c1", "b-1", 10**12)  # "spend all": only what is left
    assert partial.json()["points"] == 100
    refused = hold(two, "c1", "b-2", 50)
    assert refused.status_code == 409
    assert refused.json()["code"] == "insufficient_points"
    assert refused.json()["details"] == {"available": 0}


def test_burn_confirms_a_hold_and_a_void_releases_one(
    hq: Hq, engine: sa.Engine, client: TestClient
) -> None:
    publish_rules(hq)
    hq.customer("c1")
    till = hq.enroll()
    assert till.push([till.entry("c1", 1000)]).status_code == 200
    quote = quote_for("c1", balance=1000, redeem=300)
    assert quote.burn_points == 300
    assert hold(till, "c1", "ch-1", 300).status_code == 200
    assert hold(till, "c1", "ch-2", 300).status_code == 200
    assert till.push(sale(till, "c1", "ch-1", quote)).status_code == 200
    voided = sale(till, "c1", "ch-2", quote, state=ChequeState.voided)
    assert till.push(voided).status_code == 200
    assert states(engine) == {"ch-1": "confirmed", "ch-2": "released"}
    # 1000 - 300 spent = 700 left, the released 300 among them
    assert hold(till, "c1", "ch-3", 10**12).json()["points"] == 700
    released = client.post(
        f"/sync/holds/{hold(till, 'c1', 'ch-3', 1).json()['hold_id']}/release",
        headers=till.headers,
    )
    assert released.json()["state"] == "released"


def test_holds_stop_counting_at_expiry_and_the_job_records_it(
    hq: Hq, engine: sa.Engine, clock: FakeClock
) -> None:
    hq.customer("c1")
    till = hq.enroll()
    assert till.push([till.entry("c1", 100)]).status_code == 200
    expires_at = hold(till, "c1", "ch-1", 100).json()["expires_at"]
    assert hold(till, "c1", "ch-2", 1).status_code == 409
    clock.advance(3600 + 600)
    assert states(engine) == {"ch-1": "held"}
    assert hold(till, "c1", "ch-2", 100).json()["points"] == 100
    assert _jobs.run(engine, _jobs.BY_NAME["holds"], clock(), "t").items == 1
    assert states(engine) == {"ch-1": "expired", "ch-2": "held"}
    assert expires_at.startswith("2026-11-25T10:10")


def test_phone_only_redemption_needs_the_code_sent_to_the_phone(
    engine: sa.Engine, clock: FakeClock, admin_token: str, tmp_path: Path
) -> None:
    gateway = FileGateway(tmp_path / "messages.jsonl")
    with TestClient(create_app(engine=engine, clock=clock, gateway=gateway)) as client:
        hq = Hq(client, admin_token)
        hq.customer("c1", phones=["8 (916) 123-45-67"])
        till = hq.enroll()
        assert till.push([till.entry("c1", 500)]).status_code == 200
        asked = hold(till, "c1", "ch-1", 200, phone_only=True)
        assert asked.status_code == 409
        assert asked.json()["code"] == "confirmation_required"
        [message] = gateway.messages()
        assert message["to"] == "+79161234567"
        code = re.search(r"\b(\d{6})\b", message["text"]).group(1)  # type: ignore[union-attr]
        wrong = "000000" if code != "000000" else "111111"
        refused = hold(till, "c1", "ch-1", 200, phone_only=True, confirmation_code=wrong)
        assert refused.json()["code"] == "bad_confirmation_code"
        # the till asks again under a new cheque id: the code is the customer's at this till
        held = hold(till, "c1", "ch-2", 200, phone_only=True, confirmation_code=code)
        assert held.status_code == 200, held.text
        assert held.json()["points"] == 200
        clock.advance(1)
        used = hold(till, "c1", "ch-3", 10, phone_only=True, confirmation_code=code)
        assert used.json()["code"] == "bad_confirmation_code"  # a code works once
        assert len(gateway.messages()) == 1


def test_a_phone_only_customer_with_no_points_gets_no_code(
    engine: sa.Engine, clock: FakeClock, admin_token: str, tmp_path: Path
) -> None:
    """Nothing to hold: the answer says so, and no code is texted (one would be wasted, and
    the customer asked to read out a code for nothing)."""
    gateway = FileGateway(tmp_path / "messages.jsonl")
    with TestClient(create_app(engine=engine, clock=clock, gateway=gateway)) as client:
        hq = Hq(client, admin_token)
        hq.customer("c1", phones=["8 (916) 123-45-67"])
        till = hq.enroll()
        asked = hold(till, "c1", "ch-1", 200, phone_only=True)
        assert asked.status_code == 409
        assert asked.json()["code"] == "insufficient_points"
        assert gateway.messages() == []


def test_blocked_or_unknown_customers_get_no_hold(hq: Hq) -> None:
    hq.customer("c1", status="blocked")
    till = hq.enroll()
    assert hold(till, "c1", "ch-1", 1).json()["code"] == "customer_not_active"
    assert hold(till, "nobody", "ch-1", 1).json()["code"] == "unknown_customer"


def test_a_device_places_holds_only_as_itself(hq: Hq) -> None:
    hq.customer("c1")
    one, two = hq.enroll("s1"), hq.enroll("s2")
    body = {"device_id": two.device_id, "cheque_id": "x", "customer_id": "c1", "points": 1}
    refused = one.client.post("/sync/holds", json=body, headers=one.headers)
    assert refused.status_code == 403
