"""Messages between a till and central: enrollment, push, pull, holds, errors."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StrictInt, model_validator

from protocol._base import (
    Count,
    Cursor,
    Epoch,
    Id,
    NonNegPoints,
    Points,
    Seq,
    Sha256Hex,
    StrictBool,
    Text,
    WireModel,
)
from protocol._identifiers import CardRange
from protocol._ledger import AccountRef, Asset, Identifier
from protocol._sale import CustomerState, Lot, Store

PROTOCOL_VERSION = 1
sync_batch_entries_max = 500
pull_page_changes_max = 1000
payload_bytes_max = 256 * 1024
identifiers_per_customer_max = 20


class ErrorBody(WireModel):
    """Every refusal: a stable machine-readable `code` and a sentence a person can act on."""

    code: Id
    message: Text
    details: dict[str, StrictInt | str | None] = Field(default_factory=dict, max_length=20)


# --- enrollment ---------------------------------------------------------------------------


class EnrollRequest(WireModel):
    code: Annotated[str, Field(min_length=8, max_length=64)]
    hostname: Annotated[str, Field(max_length=128)] = ""
    previous_device_id: Id | None = None
    """A reinstalled or restored till keeps its id and starts a new epoch."""
    device_id: Id | None = None
    """The id the till made for itself at install, under which it may already have sold."""
    device_epoch: Epoch | None = None


class EnrollResponse(WireModel):
    device_id: Id
    device_epoch: Epoch
    secret: Annotated[str, Field(min_length=32, max_length=128)]
    store: Store
    phone_hash_key_hex: Annotated[str, Field(pattern=r"^[0-9a-f]{64,128}$")]
    card_ranges: tuple[CardRange, ...] = Field(default=(), max_length=100)
    protocol_version: StrictInt = PROTOCOL_VERSION


# --- push ---------------------------------------------------------------------------------


class PushItem(WireModel):
    """One outbox record: its bytes exactly as first stored on the till, and their hash."""

    seq: Seq
    payload: Annotated[str, Field(min_length=2, max_length=payload_bytes_max)]
    payload_sha256: Sha256Hex


class PushRequest(WireModel):
    device_id: Id
    device_epoch: Epoch
    items: tuple[PushItem, ...] = Field(min_length=1, max_length=sync_batch_entries_max)
    device_time: AwareDatetime

    @model_validator(mode="after")
    def _consecutive(self) -> PushRequest:
        first = self.items[0].seq
        if [item.seq for item in self.items] != list(range(first, first + len(self.items))):
            raise ValueError("items must carry consecutive seqs in ascending order")
        return self


class ItemOutcome(StrEnum):
    applied = "applied"
    duplicate = "duplicate"
    quarantined = "quarantined"


class PushResult(WireModel):
    seq: Seq
    outcome: ItemOutcome
    reason: Text | None = None


BalanceKey = Annotated[str, Field(min_length=3, max_length=200)]
"""`"<account key> <asset>"`, as `PushResponse.balance_seqs` names a balance."""


class PushResponse(WireModel):
    acked_through: Count
    """Every seq up to this one is durably at central."""
    change_seq: Cursor = 0
    """Central's change seq once this push committed: a pull that has reached it sees every
    balance these entries moved (the till counts them locally until then)."""
    results: tuple[PushResult, ...] = Field(max_length=sync_batch_entries_max)
    server_time: AwareDatetime
    balance_seqs: dict[BalanceKey, Cursor] = Field(
        default_factory=dict, max_length=2 * sync_batch_entries_max
    )
    """For each account and asset the push moved (`"<account key> <asset>"`), the number of
    the change that carries its new balance, at or below `change_seq`: a pull that has reached
    it has central's balance with these entries in it, even when its page ended inside the
    rest of the push's changes (pages cut them anywhere). Others: `change_seq`."""


class PushRefusal(StrEnum):
    gap = "gap"
    conflict = "conflict"
    epoch_unknown = "epoch_unknown"


# --- pull ---------------------------------------------------------------------------------


class OfflineLimits(WireModel):
    """What HQ allows a till to do without central. Accrual never stops."""

    customer_points_per_till_max: NonNegPoints = 1000
    till_points_budget_max: NonNegPoints = 20000
    phone_only_points_max: NonNegPoints = 300
    data_age_max_s: Annotated[int, Field(strict=True, ge=0, le=90 * 86400)] = 3 * 86400
    offline_window_days: Annotated[int, Field(strict=True, ge=1, le=365)] = 30
    reservation_ttl_s: Annotated[int, Field(strict=True, ge=60, le=7 * 86400)] = 3600


class CustomerChange(WireModel):
    type: Literal["customer"] = "customer"
    change_seq: Seq
    state: CustomerState
    identifiers: tuple[Identifier, ...] = Field(default=(), max_length=identifiers_per_customer_max)
    first_name: Annotated[str, Field(max_length=64)] = ""


class ErasureChange(WireModel):
    """Tombstone: the till deletes every piece of personal data of this customer."""

    type: Literal["erasure"] = "erasure"
    change_seq: Seq
    customer_id: Id
    identifiers: tuple[Identifier, ...] = Field(default=(), max_length=identifiers_per_customer_max)


class RuleSetChange(WireModel):
    """A published rule set; `document` is its canonical JSON, `content_hash` names it."""

    type: Literal["rule_set"] = "rule_set"
    change_seq: Seq
    rule_set_id: Id
    content_hash: Sha256Hex
    effective_from: AwareDatetime
    document: Annotated[str, Field(max_length=4 * 1024 * 1024)]


class OfflineLimitsChange(WireModel):
    type: Literal["offline_limits"] = "offline_limits"
    change_seq: Seq
    limits: OfflineLimits


class BalanceChange(WireModel):
    """The balance of one asset of one account after the change numbered `change_seq`."""

    type: Literal["balance"] = "balance"
    change_seq: Seq
    account: AccountRef
    asset: Asset = "points"
    balance: Points
    entries: Count = 0
    """How many ledger entries the balance folds."""
    lots: tuple[Lot, ...] = Field(default=(), max_length=1000)
    """For points: the lots behind the balance, so a till never spends pending points."""


Change = Annotated[
    CustomerChange | ErasureChange | RuleSetChange | OfflineLimitsChange | BalanceChange,
    Field(discriminator="type"),
]


class PullResponse(WireModel):
    changes: tuple[Change, ...] = Field(max_length=pull_page_changes_max)
    next_cursor: Cursor
    more: StrictBool
    server_time: AwareDatetime


class SnapshotRequired(WireModel):
    code: Literal["snapshot_required"] = "snapshot_required"
    oldest_cursor: Cursor
    message: Text


class SnapshotPage(WireModel):
    """One page of central's full state as of the cursor `as_of`.

    Every item is written as a change numbered `max(as_of, 1)`. The first page is fetched
    without `page`; each next page with the `next_page` token of the one before, until it is
    null; then the till pulls `since=as_of`, which re-delivers anything that changed while it
    was reading the pages.
    """

    changes: tuple[Change, ...] = Field(max_length=pull_page_changes_max)
    as_of: Cursor
    next_page: Annotated[str, Field(max_length=200)] | None = None
    server_time: AwareDatetime


# --- holds --------------------------------------------------------------------------------


class HoldRequest(WireModel):
    device_id: Id
    cheque_id: Id
    customer_id: Id
    points: NonNegPoints
    phone_only: StrictBool = False
    confirmation_code: Annotated[str, Field(pattern=r"^[0-9]{4,8}$")] | None = None


class HoldResponse(WireModel):
    hold_id: Id
    points: NonNegPoints
    expires_at: AwareDatetime
