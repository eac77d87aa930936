"""What the POS sends to the till agent and what it gets back.

These are the local API's messages (the POS never talks to central); they reuse the protocol's
strict building blocks, so money is integer kopecks here too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from protocol import (
    AccountRef,
    Basket,
    ChequeState,
    CustomerState,
    Quote,
    RedeemRequest,
    WireModel,
)
from protocol._base import Id, NonNegKopecks, NonNegPoints, Points, QuantityMilli, Text

raw_identifier_chars_max = 200


class IdentifierInput(WireModel):
    """How the customer was presented: as the POS or a device saw it.

    `card` is a typed or scanned card number, `barcode` any scanned payload (card, phone or QR),
    `phone` a typed phone number, `qr` a wallet token, `customer` an id the POS already knows.
    Magnetic-stripe data goes through the card reader driver, never through this field.
    """

    type: Literal["card", "barcode", "phone", "qr", "customer"]
    value: Annotated[str, Field(min_length=1, max_length=raw_identifier_chars_max)]


Lines = tuple[Annotated[str, Field(max_length=48)], ...]


class ReceiptLines(WireModel):
    """The loyalty block ready to print, for 58 mm (32 columns) and 80 mm (42, 48) paper."""

    columns_32: Lines
    columns_42: Lines
    columns_48: Lines


class HoldMode(StrEnum):
    none = "none"
    central = "central"
    offline = "offline"


class BalanceView(WireModel):
    """What the cashier sees: central's last word plus this till's own unacknowledged entries."""

    balance: Points
    available: Points
    pending: NonNegPoints
    held: NonNegPoints
    local_unsynced: Points


class Identification(WireModel):
    known: bool
    """False for an identifier the till does not know: the sale still accrues to it."""
    customer_id: Id | None = None
    first_name: str = ""
    tier: Id | None = None
    phone_only: bool = False
    balance: BalanceView | None = None


class SignupRequest(WireModel):
    """Join the programme at the till: a phone and consent, optionally a pre-printed card.

    Works offline: the customer is provisional until central confirms, and earns at once.
    """

    signup_id: Id
    phone: Annotated[str, Field(min_length=1, max_length=32)]
    consent_data: bool
    """Consent to process personal data; joining needs it."""
    consent_marketing: bool = False
    card: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    first_name: Annotated[str, Field(max_length=64)] = ""
    language: Annotated[str, Field(pattern=r"^[a-z]{2}$")] = "ru"


class QuoteRequest(WireModel):
    customer: IdentifierInput | None = None
    basket: Basket
    redeem: RedeemRequest = RedeemRequest()


class ReserveRequest(WireModel):
    cheque_id: Id
    customer: IdentifierInput | None = None
    basket: Basket
    redeem: RedeemRequest = RedeemRequest()
    confirmation_code: Annotated[str, Field(pattern=r"^[0-9]{4,8}$")] | None = None


class ReserveResponse(WireModel):
    cheque_id: Id
    state: ChequeState
    quote: Quote
    hold_mode: HoldMode
    points_held: NonNegPoints
    redeem_note: Text | None = None
    """Why fewer points were spent than asked, in words for the cashier."""
    receipt: ReceiptLines | None = None
    """For the fiscal receipt, printed before confirm: the balance as it will be after it."""


class Reservation(WireModel):
    """What the till keeps of a reserved cheque (the `reservations` table): read back
    with one parse when the cheque is confirmed, voided, expired or refunded."""

    request: ReserveRequest
    response: ReserveResponse
    account: AccountRef | None
    customer: CustomerState | None
    quoted_at: AwareDatetime | None = None
    """When the quote was evaluated (None: reserved by an agent from before it was kept)."""


class ConfirmRequest(WireModel):
    cheque_id: Id
    fiscal_document: Annotated[str, Field(min_length=1, max_length=64)]


class ConfirmResponse(WireModel):
    cheque_id: Id
    state: ChequeState
    earned_points: NonNegPoints
    """Points the purchase earned by HQ's earn rules."""
    spent_points: NonNegPoints
    granted_points: NonNegPoints = 0
    """One-time bonuses the sale gave besides (welcome, birthday, referral): the balance rose
    by `earned_points + granted_points`, as the slip's "earned" line shows."""
    balance: BalanceView | None = None
    late: bool = False
    """True when the reservation had already expired: confirmed all the same."""
    receipt: ReceiptLines | None = None


class VoidRequest(WireModel):
    cheque_id: Id


class VoidResponse(WireModel):
    cheque_id: Id
    state: ChequeState


class RefundLine(WireModel):
    line_id: Id
    quantity_milli: QuantityMilli


class RefundRequest(WireModel):
    """Return some or all lines of a cheque. For a cheque sold at another till, the POS sends
    the original lines in `original_basket`; central reconciles it with the original."""

    refund_id: Id
    cheque_id: Id
    lines: tuple[RefundLine, ...] = Field(min_length=1, max_length=500)
    original_basket: Basket | None = None
    customer: IdentifierInput | None = None


class RefundResponse(WireModel):
    refund_id: Id
    cheque_id: Id
    cheque_state: ChequeState | None
    earn_reversed_points: NonNegPoints
    burn_returned_points: NonNegPoints
    money_refund: NonNegKopecks
    reconciled_at_central: bool = False
