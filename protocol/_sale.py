"""What a till sends to evaluate a sale and what it gets back: store, basket, customer, quote."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from protocol._base import (
    Count,
    Currency,
    Id,
    Kopecks,
    NonNegKopecks,
    NonNegPoints,
    Points,
    QuantityMilli,
    Sha256Hex,
    StrictBool,
    Text,
    WireModel,
    cheque_lines_max,
    labels_per_line_max,
)

promo_codes_max = 10
lots_max = 1000
counters_max = 100
explanation_items_max = 5000
receipt_messages_max = 20
counter_changes_max = 1000

Language = Annotated[str, Field(pattern=r"^[a-z]{2}$")]
Counter = Annotated[str, Field(pattern=r"^(purchases|stamps:[A-Za-z0-9_\-]{1,40})$")]


class Money(WireModel):
    amount: Kopecks
    currency: Currency = "RUB"


class Store(WireModel):
    """A shop. Rules about hours and days of week are read in its time zone."""

    store_id: Id
    name: Text
    timezone: str = "Europe/Moscow"
    currency: Currency = "RUB"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value


def line_total_of(quantity_milli: int, unit_price: int) -> int:
    """Full price of a line, rounded half up to a whole kopeck."""
    return (quantity_milli * unit_price + 500) // 1000


class BasketLine(WireModel):
    """One line of the cheque as the POS rings it up.

    `total` is the full price of the line (`quantity_milli * unit_price / 1000`, rounded half
    up); `pos_discount` is what the POS already took off it on its own; the money actually
    paid before loyalty is `total - pos_discount`. `min_unit_price` is a floor the POS knows
    of (a legal minimum retail price) below which no discount may take a unit.
    """

    line_id: Id
    sku: Id
    name: Text = ""
    category: Id | None = None
    labels: tuple[Id, ...] = Field(default=(), max_length=labels_per_line_max)
    quantity_milli: QuantityMilli
    unit_price: NonNegKopecks
    total: NonNegKopecks
    pos_discount: NonNegKopecks = 0
    min_unit_price: NonNegKopecks | None = None

    @model_validator(mode="after")
    def _consistent(self) -> BasketLine:
        expected = line_total_of(self.quantity_milli, self.unit_price)
        if self.total != expected:
            raise ValueError(
                f"total {self.total} is not quantity x unit price ({expected}, rounded half up)"
            )
        if self.pos_discount > self.total:
            raise ValueError("pos_discount is larger than the line total")
        return self

    @property
    def paid(self) -> int:
        return self.total - self.pos_discount


class Basket(WireModel):
    currency: Currency = "RUB"
    lines: tuple[BasketLine, ...] = Field(min_length=1, max_length=cheque_lines_max)
    promo_codes: tuple[Id, ...] = Field(default=(), max_length=promo_codes_max)

    @model_validator(mode="after")
    def _unique_lines(self) -> Basket:
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("line_id must be unique within a basket")
        return self

    @property
    def total(self) -> int:
        return sum(line.total for line in self.lines)

    @property
    def paid(self) -> int:
        return sum(line.paid for line in self.lines)


class CustomerStatus(StrEnum):
    active = "active"
    blocked = "blocked"
    merged = "merged"
    erased = "erased"
    provisional = "provisional"  # signed up at a till, not yet confirmed by central


class Lot(WireModel):
    """Points earned together: usable from `activates_at`, gone at `expires_at`."""

    lot_id: Id
    points: NonNegPoints
    earned_at: AwareDatetime
    activates_at: AwareDatetime
    expires_at: AwareDatetime | None = None


class CustomerState(WireModel):
    """What the till knows of a customer when it evaluates a sale.

    An anonymous cheque or an identifier the till does not know is evaluated with
    `customer_id = None` and the default state: it still earns, to the identifier.
    """

    customer_id: Id | None = None
    status: CustomerStatus = CustomerStatus.active
    tier: Id | None = None
    birthday: date | None = None
    consent_marketing: StrictBool = False
    consent_data: StrictBool = False
    language: Language = "ru"
    favourite_categories: tuple[Id, ...] = Field(default=(), max_length=10)
    segments: tuple[Id, ...] = Field(default=(), max_length=50)
    campaigns: tuple[Id, ...] = Field(default=(), max_length=50)
    points_balance: Points = 0
    lots: tuple[Lot, ...] = Field(default=(), max_length=lots_max)
    counters: dict[Counter, Count] = Field(default_factory=dict, max_length=counters_max)
    rolling_spend: NonNegKopecks = 0
    grants_received: tuple[Id, ...] = Field(default=(), max_length=1000)
    referred_by: Id | None = None
    enrolled_at: AwareDatetime | None = None


class FiscalLine(WireModel):
    """A line as the fiscal receipt prints it: whole-kopeck unit price after all discounts."""

    line_id: Id
    quantity_milli: QuantityMilli
    unit_price: NonNegKopecks
    total: NonNegKopecks
    discount: NonNegKopecks


class QuoteLine(WireModel):
    line_id: Id
    earn_points: NonNegPoints
    discount: NonNegKopecks
    """Loyalty discount on this line: rewards plus points spent, in kopecks."""
    burn_points: NonNegPoints
    fiscal: tuple[FiscalLine, ...] = Field(min_length=1, max_length=2)


ExplainedLine = tuple[Id, Points, Kopecks]
"""`[line_id, points, kopecks]`: what one rule gave (or took) on one line."""


class ExplanationItem(WireModel):
    """Ties points or kopecks to the rule that produced them: the rule's totals, and in
    `lines` how they fell on each line (`[line_id, points, kopecks]`, adding up to the
    totals). Points spent show as negative points (`kind = "redeem"`); grants and other
    cheque-level items have no lines."""

    rule_id: Id
    kind: Id
    points: Points = 0
    kopecks: Kopecks = 0
    lines: tuple[ExplainedLine, ...] = Field(default=(), max_length=cheque_lines_max)
    text: Text = ""


class CounterChange(WireModel):
    """A change to a counter; `line_id` names the line that caused it (refunds reverse it
    with that line), or none for the cheque as a whole (refunds reverse it pro rata)."""

    counter: Counter
    delta: Annotated[int, Field(strict=True, ge=-(10**9), le=10**9)]
    rule_id: Id | None = None
    line_id: Id | None = None


class GrantKind(StrEnum):
    welcome = "welcome"
    birthday = "birthday"
    referral = "referral"


class GrantAward(WireModel):
    """A one-time bonus. `grant_key` is unique at central: the second of two offline tills
    to grant it sees its grant reversed. Granted points are active at once (no return window:
    a refund does not take them back) and expire at `expires_at`."""

    kind: GrantKind
    grant_key: Id
    points: NonNegPoints
    rule_id: Id
    customer_id: Id | None = None
    """Who receives it: the cheque's customer, or for a referral the one who referred them."""
    expires_at: AwareDatetime | None = None


class ReceiptMessage(WireModel):
    rule_id: Id
    text: Text


class Quote(WireModel):
    """The evaluator's answer: what the customer earns, spends and pays, and why.

    `total` is what the cheque costs before loyalty (after the POS's own discounts);
    `discount` is the loyalty discount (rewards plus points spent), `payable` what is left to
    pay in money. `earn_points` activate at `earn_activates_at` and expire at
    `earn_expires_at`.
    """

    rule_set_id: Id
    rule_set_hash: Sha256Hex
    evaluator_version: Id
    currency: Currency = "RUB"
    lines: tuple[QuoteLine, ...] = Field(max_length=cheque_lines_max)
    total: NonNegKopecks
    discount: NonNegKopecks
    payable: NonNegKopecks
    earn_points: NonNegPoints
    burn_points: NonNegPoints
    tier: Id | None = None
    """The customer's tier under these rules (by rolling spend, or assigned by HQ)."""
    redeem_requested: NonNegPoints = 0
    redeem_limited_by: Text | None = None
    earn_activates_at: AwareDatetime | None = None
    earn_expires_at: AwareDatetime | None = None
    counter_changes: tuple[CounterChange, ...] = Field(default=(), max_length=counter_changes_max)
    rolling_spend_delta: NonNegKopecks = 0
    grants: tuple[GrantAward, ...] = Field(default=(), max_length=10)
    messages: tuple[ReceiptMessage, ...] = Field(default=(), max_length=receipt_messages_max)
    explanation: tuple[ExplanationItem, ...] = Field(default=(), max_length=explanation_items_max)

    @model_validator(mode="after")
    def _sums(self) -> Quote:
        if self.payable != self.total - self.discount:
            raise ValueError("payable must equal total - discount")
        if sum(line.discount for line in self.lines) != self.discount:
            raise ValueError("line discounts must add up to the discount")
        return self


class RedeemRequest(WireModel):
    """How many points the customer asks to spend; `all` spends as many as the rules allow."""

    mode: Literal["points", "all"] = "points"
    points: NonNegPoints = 0


def at_store(moment: datetime, store: Store) -> datetime:
    """`moment` in the store's own time zone (rules about hours and days read this)."""
    return moment.astimezone(zoneinfo.ZoneInfo(store.timezone))
