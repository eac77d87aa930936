"""The ledger entries a confirmed sale writes, in a fixed order, each with its own seq."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlite_utils

from agent import _outbox
from protocol import (
    AccountRef,
    CustomerAccount,
    EntryKind,
    LedgerEntry,
    Quote,
    Refund,
    RuleSetRef,
    account_key,
)

if TYPE_CHECKING:
    from agent._sales import Till


def refund_movements(
    refund: Refund,
    original: Quote,
    sale_entries: tuple[str | None, str | None],
    returned_expire: datetime | None,
) -> Iterator[dict[str, Any]]:
    """What a refund reverses: earned points taken back (from the sale's own lot, its earn
    entry: central takes them from it first, pending or active, not from the lots that
    expire first; the reversal carries the original's activation time too), spent points
    given back (expiring at `returned_expire`, see `returned_points_expire_at`), counters,
    and rolling spend (naming the sale's rolling spend entry, so that central's rolling
    window dates the reversal by the sale). `sale_entries`: the sale's earn and rolling
    spend entries (`sale_entry_of`)."""
    earned, spent = sale_entries
    if refund.earn_points:
        yield {
            "kind": EntryKind.refund_reversal,
            "asset": "points",
            "amount": -refund.earn_points,
            "activates_at": original.earn_activates_at,
            "reverses": earned,
        }
    if refund.burn_points:
        yield {
            "kind": EntryKind.refund_reversal,
            "asset": "points",
            "amount": refund.burn_points,
            "expires_at": returned_expire,
        }
    for change in refund.counter_changes:
        if change.delta:
            yield {"kind": EntryKind.counter, "asset": change.counter, "amount": change.delta}
    if refund.rolling_spend_reversed:
        yield {
            "kind": EntryKind.counter,
            "asset": "rolling_spend",
            "amount": -refund.rolling_spend_reversed,
            "reverses": spent,
        }


def sale_movements(quote: Quote) -> Iterator[dict[str, Any]]:
    """(kind, asset, amount, extras) of every change a sale makes, zero moves left out."""
    if quote.burn_points:
        yield {"kind": EntryKind.burn, "asset": "points", "amount": -quote.burn_points}
    if quote.earn_points:
        yield {
            "kind": EntryKind.earn,
            "asset": "points",
            "amount": quote.earn_points,
            "activates_at": quote.earn_activates_at,
            "expires_at": quote.earn_expires_at,
        }
    for grant in quote.grants:  # active at once (a refund keeps them), expiring as granted
        yield {
            "kind": EntryKind(grant.kind),
            "asset": "points",
            "amount": grant.points,
            "grant_key": grant.grant_key,
            "beneficiary": grant.customer_id,
            "expires_at": grant.expires_at,
        }
    for change in quote.counter_changes:
        if change.delta:
            yield {"kind": EntryKind.counter, "asset": change.counter, "amount": change.delta}
    if quote.rolling_spend_delta:
        yield {
            "kind": EntryKind.counter,
            "asset": "rolling_spend",
            "amount": quote.rolling_spend_delta,
        }


def append_entries(
    till: Till,
    db: sqlite_utils.Database,
    account: AccountRef | None,
    movements: Iterator[dict[str, Any]],
    source: Quote | Refund,
    cheque_id: str,
    offline: bool,
) -> list[LedgerEntry]:
    """Append the entries of a confirmed sale or a refund to the outbox, each with its own
    seq; an anonymous cheque has none."""
    if account is None:
        return []
    rules = RuleSetRef(
        rule_set_id=source.rule_set_id,
        rule_set_hash=source.rule_set_hash,
        evaluator_version=source.evaluator_version,
    )
    entries: list[LedgerEntry] = []
    first_seq = _outbox.next_seq(db, till.seat.epoch)
    for movement in movements:
        beneficiary = movement.pop("beneficiary", None)
        grant = movement["kind"] in {EntryKind.welcome, EntryKind.birthday, EntryKind.referral}
        if grant and account.type != "customer":
            continue  # a one-time grant needs a known customer
        entry = LedgerEntry(
            entry_id=till.make_id(),
            device_id=till.seat.device_id,
            device_epoch=till.seat.epoch,
            device_seq=first_seq + len(entries),
            account=account if beneficiary is None else CustomerAccount(customer_id=beneficiary),
            cheque_id=cheque_id,
            rules=rules,
            device_time=till.clock.wall(),
            **movement,
        )
        if grant and account.type == "customer":
            _remember_grant(db, str(movement["grant_key"]), account.customer_id)
        entries.append(entry)
    _outbox.append_many(db, list(entries), offline)
    return entries


def _remember_grant(db: sqlite_utils.Database, grant_key: str, customer_id: str) -> None:
    db.execute(
        "INSERT OR IGNORE INTO grants_given(grant_key, customer_id) VALUES (?, ?)",
        [grant_key, customer_id],
    )


def sale_entry_of(
    db: sqlite_utils.Database,
    account: AccountRef | None,
    cheque_id: str,
    what: tuple[EntryKind, str],
) -> str | None:
    """The id of the entry of `what` (kind, asset) the sale `cheque_id` wrote for
    `account`, if any."""
    if account is None:
        return None
    kind, asset = what
    row = db.execute(
        "SELECT record_id FROM outbox WHERE account_key = ? AND record = 'entry' "
        "AND asset = ? AND kind = ? AND json_extract(payload, '$.cheque_id') = ?",
        [account_key(account), asset, kind.value, cheque_id],
    ).fetchone()
    return None if row is None else str(row[0])


def grants_given(db: sqlite_utils.Database, customer_id: str) -> set[str]:
    """The one-time grant keys this till gave in sales of `customer_id`."""
    rows = db.execute(
        "SELECT grant_key FROM grants_given WHERE customer_id = ?", [customer_id]
    ).fetchall()
    return {row[0] for row in rows}
