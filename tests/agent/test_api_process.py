"""The POS API of a real agent process, over real HTTP on loopback: the sale as a POS runs it."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .agent_process import ALLOWANCE_CARD, CARD, PHONE_ONLY, AgentProcess

UNKNOWN_CARD = "2770000000031"


def basket(*prices: int, category: str = "grocery") -> dict[str, Any]:
    return {
        "lines": [
            {
                "line_id": str(n),
                "sku": f"sku-{n}",
                "category": category,
                "quantity_milli": 1000,
                "unit_price": price,
                "total": price,
            }
            for n, price in enumerate(prices, start=1)
        ]
    }


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def refused(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    data: dict[str, Any] = answer.json()
    assert data["code"] == code, data
    assert data["message"]
    return data


def assert_receipt(receipt: dict[str, Any] | None) -> None:
    assert receipt is not None
    for width in (32, 42, 48):
        lines = receipt[f"columns_{width}"]
        assert lines
        assert all(len(line) <= width for line in lines)


def sell(
    client: httpx.Client, customer: dict[str, str] | None, redeem: int = 0
) -> tuple[dict[str, Any], dict[str, Any]]:
    cheque_id = new_id("pos")
    reserved = ok(
        client.post(
            "/v1/reserve",
            json={
                "cheque_id": cheque_id,
                "customer": customer,
                "basket": basket(100000, 50000),
                "redeem": {"points": redeem},
            },
        )
    )
    confirmed = ok(
        client.post("/v1/confirm", json={"cheque_id": cheque_id, "fiscal_document": "FD-1"})
    )
    return reserved, confirmed


@pytest.fixture
def client(agent: AgentProcess) -> Iterator[httpx.Client]:
    with agent.client() as made:
        yield made


def test_whole_sale_identify_quote_reserve_confirm(client: httpx.Client) -> None:
    card = {"type": "card", "value": CARD}
    found = ok(client.post("/v1/identify", json=card))
    assert found["known"]
    assert found["customer_id"] == "c-1"
    before = found["balance"]["balance"]
    sale = {"customer": card, "basket": basket(100000, 50000), "redeem": {"points": 100}}
    quote = ok(client.post("/v1/quote", json=sale))
    assert quote["burn_points"] == 100
    assert quote["earn_points"] > 0
    cheque_id = new_id("pos")
    reserved = ok(client.post("/v1/reserve", json={"cheque_id": cheque_id, **sale}))
    assert reserved["state"] == "reserved"
    assert reserved["hold_mode"] == "offline"
    assert reserved["points_held"] == 100
    assert reserved["quote"]["payable"] == quote["payable"]
    assert sum(line["discount"] for line in reserved["quote"]["lines"]) == 10000
    assert_receipt(reserved["receipt"])
    held = ok(client.post("/v1/identify", json=card))["balance"]["held"]
    assert held >= 100
    confirmed = ok(
        client.post("/v1/confirm", json={"cheque_id": cheque_id, "fiscal_document": "FD-77"})
    )
    assert confirmed["state"] == "confirmed"
    assert confirmed["spent_points"] == 100
    assert confirmed["earned_points"] == quote["earn_points"]
    assert_receipt(confirmed["receipt"])
    assert any("100" in line for line in confirmed["receipt"]["columns_42"])
    granted = sum(grant["points"] for grant in quote["grants"])
    assert confirmed["granted_points"] == granted
    after = confirmed["balance"]["balance"]
    assert after == before - 100 + quote["earn_points"] + granted


def test_retries_get_the_same_answer_and_a_changed_payload_is_refused(
    client: httpx.Client,
) -> None:
    cheque_id = new_id("pos")
    body = {"cheque_id": cheque_id, "customer": {"type": "card", "value": CARD}}
    body["basket"] = basket(5000)  # type: ignore[assignment]
    first = ok(client.post("/v1/reserve", json=body))
    assert ok(client.post("/v1/reserve", json=body)) == first
    changed = {**body, "basket": basket(5001)}
    refused(client.post("/v1/reserve", json=changed), 409, "cheque_id_reused")
    confirm = {"cheque_id": cheque_id, "fiscal_document": "FD-2"}
    done = ok(client.post("/v1/confirm", json=confirm))
    assert ok(client.post("/v1/confirm", json=confirm)) == done
    other = {"cheque_id": cheque_id, "fiscal_document": "FD-other"}
    refused(client.post("/v1/confirm", json=other), 409, "cheque_confirmed")
    refused(client.post("/v1/void", json={"cheque_id": cheque_id}), 409, "cheque_confirmed")
    refused(
        client.post("/v1/confirm", json={**confirm, "cheque_id": "never"}), 404, "cheque_unknown"
    )


def test_void_after_failed_payment_releases_the_hold(client: httpx.Client) -> None:
    card = {"type": "card", "value": CARD}
    cheque_id = new_id("pos")
    body = {"cheque_id": cheque_id, "customer": card, "basket": basket(20000)}
    held_before = ok(client.post("/v1/identify", json=card))["balance"]["held"]
    ok(client.post("/v1/reserve", json={**body, "redeem": {"points": 50}}))
    assert ok(client.post("/v1/identify", json=card))["balance"]["held"] == held_before + 50
    assert ok(client.post("/v1/void", json={"cheque_id": cheque_id}))["state"] == "voided"
    assert ok(client.post("/v1/void", json={"cheque_id": cheque_id}))["state"] == "voided"
    assert ok(client.post("/v1/identify", json=card))["balance"]["held"] == held_before
    late = {"cheque_id": cheque_id, "fiscal_document": "FD-3"}
    refused(client.post("/v1/confirm", json=late), 409, "cheque_voided")


def test_offline_redemption_inside_and_outside_the_allowance(client: httpx.Client) -> None:
    """HQ allows 500 points per customer on this till offline; the customer has 5000."""
    card = {"type": "card", "value": ALLOWANCE_CARD}
    inside, _ = sell(client, card, redeem=300)
    assert inside["hold_mode"] == "offline"
    assert inside["quote"]["burn_points"] == 300
    assert inside["redeem_note"] is None
    outside, confirmed = sell(client, card, redeem=400)
    assert outside["quote"]["burn_points"] == 200
    assert "offline" in outside["redeem_note"]
    assert "allowance" in outside["redeem_note"]
    assert confirmed["spent_points"] == 200
    nothing_left, _ = sell(client, card, redeem=10)
    assert nothing_left["quote"]["burn_points"] == 0
    assert nothing_left["quote"]["earn_points"] > 0  # accrual never stops


def test_offline_redemption_by_phone_alone_has_the_smaller_cap(client: httpx.Client) -> None:
    """HQ allows 100 points offline to a customer identified only by phone."""
    by_phone = {"type": "phone", "value": PHONE_ONLY}
    found = ok(client.post("/v1/identify", json=by_phone))
    assert found["phone_only"]
    reserved, _ = sell(client, by_phone, redeem=300)
    assert reserved["quote"]["burn_points"] == 100
    assert "phone-only" in reserved["redeem_note"]


def test_an_unknown_card_accrues(agent: AgentProcess, client: httpx.Client) -> None:
    card = {"type": "card", "value": UNKNOWN_CARD}
    found = ok(client.post("/v1/identify", json=card))
    assert not found["known"]
    reserved, confirmed = sell(client, card)
    assert confirmed["earned_points"] == reserved["quote"]["earn_points"] > 0
    assert_receipt(confirmed["receipt"])
    path = agent.data_dir / "till.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        entries = db.execute(
            "SELECT kind, amount FROM outbox WHERE account_key = ? AND record = 'entry'",
            [f"card:{UNKNOWN_CARD}"],
        ).fetchall()
    assert ("earn", confirmed["earned_points"]) in entries


def test_a_bank_card_and_a_bad_phone_are_refused_with_a_reason(client: httpx.Client) -> None:
    bank = client.post("/v1/identify", json={"type": "card", "value": "4111111111111111"})
    assert bank.status_code == 422
    assert bank.json()["message"]
    phone = client.post("/v1/identify", json={"type": "phone", "value": "12"})
    assert phone.status_code == 422


def test_anonymous_cheque_is_recorded_without_receipt_lines(client: httpx.Client) -> None:
    reserved, confirmed = sell(client, None)
    assert reserved["receipt"] is None
    assert confirmed["state"] == "confirmed"
    assert confirmed["earned_points"] == 0


def test_signup_offline_then_the_new_member_earns(client: httpx.Client) -> None:
    phone = f"+7916{uuid.uuid4().int % 10_000_000:07d}"
    signup = {"signup_id": new_id("su"), "phone": phone, "consent_data": True, "first_name": "Ия"}
    member = ok(client.post("/v1/signup", json=signup))
    assert member["known"]
    assert member["customer_id"].startswith("p-")
    assert ok(client.post("/v1/signup", json=signup)) == member
    refused(
        client.post("/v1/signup", json={**signup, "first_name": "Яна"}), 409, "signup_id_reused"
    )
    again = {**signup, "signup_id": new_id("su")}
    refused(client.post("/v1/signup", json=again), 409, "phone_taken")
    no_consent = {**again, "phone": "+79160000001", "consent_data": False}
    refused(client.post("/v1/signup", json=no_consent), 422, "consent_required")
    by_phone = {"type": "phone", "value": phone}
    assert ok(client.post("/v1/identify", json=by_phone))["customer_id"] == member["customer_id"]
    _, confirmed = sell(client, by_phone)
    assert confirmed["earned_points"] > 0
    assert confirmed["balance"]["balance"] >= confirmed["earned_points"]


def test_refunds_of_own_and_another_tills_cheques(client: httpx.Client) -> None:
    cheque_id = new_id("pos")
    sale = {"customer": {"type": "card", "value": CARD}, "basket": basket(30000, 20000)}
    ok(client.post("/v1/reserve", json={"cheque_id": cheque_id, **sale}))
    done = ok(client.post("/v1/confirm", json={"cheque_id": cheque_id, "fiscal_document": "F"}))
    first = {
        "refund_id": new_id("rf"),
        "cheque_id": cheque_id,
        "lines": [{"line_id": "1", "quantity_milli": 1000}],
    }
    partial = ok(client.post("/v1/refund", json=first))
    assert partial["cheque_state"] == "partially_refunded"
    assert partial["money_refund"] == 30000
    assert ok(client.post("/v1/refund", json=first)) == partial
    rest = {**first, "refund_id": new_id("rf"), "lines": [{"line_id": "2", "quantity_milli": 1000}]}
    full = ok(client.post("/v1/refund", json=rest))
    assert full["cheque_state"] == "refunded"
    returned = partial["earn_reversed_points"] + full["earn_reversed_points"]
    assert returned == done["earned_points"]
    too_many = {**rest, "refund_id": new_id("rf")}
    refused(client.post("/v1/refund", json=too_many), 422, "refund_invalid")
    foreign = {
        "refund_id": new_id("rf"),
        "cheque_id": new_id("other-till"),
        "lines": [{"line_id": "1", "quantity_milli": 1000}],
        "original_basket": basket(12000),
        "customer": {"type": "card", "value": CARD},
    }
    reconciled = ok(client.post("/v1/refund", json=foreign))
    assert reconciled["reconciled_at_central"]
    assert reconciled["money_refund"] == 12000
    no_lines = {**foreign, "refund_id": new_id("rf"), "cheque_id": new_id("other-till")}
    del no_lines["original_basket"]
    refused(client.post("/v1/refund", json=no_lines), 404, "cheque_unknown")


def test_status_and_health(agent: AgentProcess, client: httpx.Client) -> None:
    status = ok(client.get("/v1/status"))
    assert status["online"] is False
    assert status["customers_cached"] >= 2
    assert status["rule_set"]["id"] == "base-2026"
    assert status["data_age_s"] is not None
    assert ok(httpx.get(f"{agent.url}/health")) == {"status": "ok"}
    assert httpx.get(f"{agent.url}/docs").status_code == 200
    spec = ok(httpx.get(f"{agent.url}/openapi.json"))
    reserve = spec["paths"]["/v1/reserve"]["post"]
    body_schema = reserve["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/ReserveRequest"}
    assert {"authorization", "x-kopilka-token"} <= {p["name"] for p in reserve["parameters"]}
