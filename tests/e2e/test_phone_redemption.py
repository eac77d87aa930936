"""Spending points for a customer known only by phone, with central online: the code central
texts to the phone is what lets the till spend (docs/pos-api.md, "Phone alone, online")."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import Chain, line

pytestmark = pytest.mark.slow

BY_PHONE = {"type": "phone", "value": "8 (916) 123-45-67"}


def test_phone_alone_spends_only_with_the_code_texted_to_the_phone(chain: Chain) -> None:
    till = chain.till("till-a")
    till.wait_synced()  # HQ's rules and customers are on the till
    basket = {"lines": [line("1", 30000)]}
    earned = till.call(
        "/v1/reserve",
        {
            "cheque_id": "earn-1",
            "customer": {"type": "card", "value": "2770000000017"},
            "basket": basket,
        },
    )
    till.call("/v1/confirm", {"cheque_id": "earn-1", "fiscal_document": "FD-1"})
    assert earned["quote"]["earn_points"] > 100
    till.wait_synced()
    known = till.call("/v1/identify", BY_PHONE)
    assert known["customer_id"] == "c-anna"
    assert known["phone_only"] is True

    sale = {"customer": BY_PHONE, "basket": basket, "redeem": {"points": 100}}
    asked = till.call("/v1/reserve", {"cheque_id": "phone-1", **sale})
    assert asked["quote"]["burn_points"] == 0
    assert asked["points_held"] == 0
    assert "code" in (asked["redeem_note"] or "")
    till.call("/v1/void", {"cheque_id": "phone-1"})
    [message] = [json.loads(text) for text in chain.central.messages.read_text().splitlines()]
    assert message["to"] == "+79161234567"
    code = re.search(r"\b(\d{6})\b", message["text"]).group(1)  # type: ignore[union-attr]

    wrong = "000000" if code != "000000" else "111111"
    refused = till.call("/v1/reserve", {"cheque_id": "phone-2", **sale, "confirmation_code": wrong})
    assert refused["quote"]["burn_points"] == 0, "a wrong code spends nothing"
    assert refused["hold_mode"] == "none"
    till.call("/v1/void", {"cheque_id": "phone-2"})

    held = till.call("/v1/reserve", {"cheque_id": "phone-3", **sale, "confirmation_code": code})
    assert held["hold_mode"] == "central", held["redeem_note"]
    assert held["quote"]["burn_points"] == 100
    paid = till.call("/v1/confirm", {"cheque_id": "phone-3", "fiscal_document": "FD-3"})
    assert paid["spent_points"] == 100
    till.wait_synced()
    at_hq = chain.central.call("GET", "/customers/c-anna")
    assert int(at_hq["balances"]["points"]) == paid["balance"]["balance"]
    assert till.call("/v1/identify", BY_PHONE)["balance"]["balance"] == paid["balance"]["balance"]
