"""The append-only ledger: entries, the accounts they move, and the cheque documents they
travel with. Both are outbox records: numbered per device epoch, pushed in seq order."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from protocol._base import (
    Epoch,
    Id,
    NonNegPoints,
    Points,
    QuantityMilli,
    Seq,
    Sha256Hex,
    StrictBool,
    Text,
    WireModel,
    cheque_lines_max,
)
from protocol._refund import Refund
from protocol._sale import Basket, CustomerState, Quote, RedeemRequest

CENTRAL_DEVICE_ID = "central"
"""The pseudo-device under which central writes the entries it makes itself."""

Asset = Annotated[
    str, Field(pattern=r"^(points|purchases|rolling_spend|stamps:[A-Za-z0-9_\-]{1,40})$")
]


class CustomerAccount(WireModel):
    type: Literal["customer"] = "customer"
    customer_id: Id


class CardIdentifier(WireModel):
    type: Literal["card"] = "card"
    number: Annotated[str, Field(pattern=r"^[0-9A-Z]{6,32}$")]


class PhoneHashIdentifier(WireModel):
    """A phone as a till knows it: the keyed hash of its E.164 form, never the number."""

    type: Literal["phone_hash"] = "phone_hash"
    phone_hash: Sha256Hex


class QrIdentifier(WireModel):
    type: Literal["qr"] = "qr"
    token: Annotated[str, Field(pattern=r"^KQ[A-Z2-7]{24}[0-9A-Z*]$")]


Identifier = Annotated[
    CardIdentifier | PhoneHashIdentifier | QrIdentifier, Field(discriminator="type")
]
AccountRef = Annotated[
    CustomerAccount | CardIdentifier | PhoneHashIdentifier | QrIdentifier,
    Field(discriminator="type"),
]
"""Whose account an entry moves: a known customer, or an identifier central resolves later."""


def account_key(account: AccountRef) -> str:
    """The one text form of an account, as both ends index it: `customer:<id>`,
    `card:<number>`, `phone_hash:<hash>`, `qr:<token>`."""
    if account.type == "customer":
        return f"customer:{account.customer_id}"
    if account.type == "card":
        return f"card:{account.number}"
    if account.type == "phone_hash":
        return f"phone_hash:{account.phone_hash}"
    return f"qr:{account.token}"


class EntryKind(StrEnum):
    earn = "earn"
    burn = "burn"
    refund_reversal = "refund_reversal"
    adjust = "adjust"
    expire = "expire"
    activate = "activate"
    welcome = "welcome"
    birthday = "birthday"
    referral = "referral"
    grant_reversal = "grant_reversal"
    merge = "merge"
    debt = "debt"
    correction = "correction"
    counter = "counter"
    import_ = "import"


GRANT_KINDS = frozenset({EntryKind.welcome, EntryKind.birthday, EntryKind.referral})


class RuleSetRef(WireModel):
    """The exact rules and evaluator that computed something, so central can recompute it."""

    rule_set_id: Id
    rule_set_hash: Sha256Hex
    evaluator_version: Id


class LedgerEntry(WireModel):
    """One immutable change to one asset of one account. Mistakes are corrected by new
    entries (`reverses` names the entry a reversal undoes), never by edits."""

    record: Literal["entry"] = "entry"
    entry_id: uuid.UUID
    device_id: Id
    device_epoch: Epoch
    device_seq: Seq
    kind: EntryKind
    account: AccountRef
    asset: Asset = "points"
    amount: Points
    grant_key: Id | None = None
    cheque_id: Id | None = None
    rules: RuleSetRef | None = None
    activates_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    reverses: uuid.UUID | None = None
    reason: Text | None = None
    device_time: AwareDatetime

    @field_validator("entry_id")
    @classmethod
    def _uuid7(cls, value: uuid.UUID) -> uuid.UUID:
        if value.version != 7:
            raise ValueError("entry_id must be a UUIDv7")
        return value

    @model_validator(mode="after")
    def _grants_keyed(self) -> LedgerEntry:
        if self.kind in GRANT_KINDS and self.grant_key is None:
            raise ValueError(f"a {self.kind} entry needs a grant_key")
        if self.amount == 0 and self.kind not in {EntryKind.counter, EntryKind.activate}:
            raise ValueError("an entry must move something (amount is 0)")
        return self


class ChequeKind(StrEnum):
    sale = "sale"
    refund = "refund"


class ChequeState(StrEnum):
    reserved = "reserved"
    confirmed = "confirmed"
    voided = "voided"
    expired = "expired"
    partially_refunded = "partially_refunded"
    refunded = "refunded"


class ReturnedLine(WireModel):
    line_id: Id
    quantity_milli: QuantityMilli


class ChequeDocument(WireModel):
    """A cheque as the till evaluated it: enough for central to recompute it exactly.

    Identified or anonymous, every finished cheque is reported (anonymous ones feed the
    KPIs). A refund document names the original by `original_cheque_id` and lists the
    `returned` lines. When the till sold the original itself, `quote` and `basket` are the
    original's and `refund` is what the till reversed; for a cheque sold elsewhere `basket`
    holds the original lines as the POS supplied them, `quote` and `refund` are empty and
    central reconciles the refund with the original. `quoted_at` is when the till evaluated
    `quote` (at reserve; `device_time` is when the document was made, at confirm): central
    recomputes as of then, so a rule of certain hours that began in between changes nothing.
    """

    record: Literal["cheque"] = "cheque"
    document_id: uuid.UUID
    device_id: Id
    device_epoch: Epoch
    device_seq: Seq
    cheque_id: Id
    kind: ChequeKind
    state: ChequeState
    store_id: Id
    account: AccountRef | None = None
    customer: CustomerState
    basket: Basket
    redeem: RedeemRequest = RedeemRequest()
    quote: Quote | None = None
    refund: Refund | None = None
    returned: tuple[ReturnedLine, ...] = Field(default=(), max_length=cheque_lines_max)
    fiscal_document: Annotated[str, Field(max_length=64)] | None = None
    original_cheque_id: Id | None = None
    original_device_id: Id | None = None
    entry_ids: tuple[uuid.UUID, ...] = Field(default=(), max_length=1000)
    points_held: NonNegPoints = 0
    device_time: AwareDatetime
    quoted_at: AwareDatetime | None = None


class SignupRecord(WireModel):
    """A customer who signed up at a till, possibly offline: provisional until central makes
    the customer. The till keeps the phone only as its keyed hash, so central learns the
    number itself the first time the customer gives it online (or from HQ). Entries of a
    provisional customer are written against the identifiers, which central resolves."""

    record: Literal["signup"] = "signup"
    signup_id: uuid.UUID
    device_id: Id
    device_epoch: Epoch
    device_seq: Seq
    store_id: Id
    provisional_customer_id: Id
    identifiers: tuple[Identifier, ...] = Field(min_length=1, max_length=5)
    consent_marketing: StrictBool
    consent_data: StrictBool
    language: Annotated[str, Field(pattern=r"^[a-z]{2}$")] = "ru"
    first_name: Annotated[str, Field(max_length=64)] = ""
    referral_code: Id | None = None
    device_time: AwareDatetime


OutboxRecord = Annotated[LedgerEntry | ChequeDocument | SignupRecord, Field(discriminator="record")]
