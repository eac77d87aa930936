"""Card ranges and numbers the device tests share."""

from __future__ import annotations

from drivers import IdentityRules
from protocol import CardRange

RULES = IdentityRules(
    card_ranges=(
        CardRange(name="ean13-cards", first="2770000000000", last="2770009999999", check="ean"),
        CardRange(
            name="mag-cards", first="6390020000000000", last="6390029999999999", check="luhn"
        ),
    )
)
EAN_CARD = "2770000000017"
MAG_CARD = "6390020000000003"
BANK_CARD = "4111111111111111"
QR_TOKEN_BODY = "ABCDEFGHIJKLMNOPQRSTUVWX"
