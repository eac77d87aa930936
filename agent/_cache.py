"""What the till knows from central: customers, identifiers, rule sets, offline limits.

Written only by applying pulls (and by sign-up at the till, which makes a provisional
customer); read by the sale path. Phones are kept as keyed hashes, never as numbers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar, cast

import sqlite_utils
from pydantic import BaseModel, TypeAdapter

from agent import _erasure
from agent._store import set_meta
from protocol import (
    BalanceChange,
    CustomerState,
    CustomerStatus,
    Identifier,
    Lot,
    OfflineLimits,
)

_lots = TypeAdapter(tuple[Lot, ...])
_Model = TypeVar("_Model", bound=BaseModel)
parsed_documents_cached_max = 16
"""Stored documents parsed lately, by their text: a customer's state is read on each of their
sales, a reservation again at its confirmation. Kept small on purpose: at 256 the cached
models were tens of thousands of live objects that every young garbage collection walked (2.5
to 8 ms inside one sale in forty: reserve + confirm p99 5.1 ms against 2.5 ms at 16)."""


_parsed: OrderedDict[tuple[type[BaseModel], str], BaseModel] = OrderedDict()
_parsed_lock = threading.Lock()


def parsed(model: type[_Model], text: str) -> _Model:
    """`text` (a document this till stored) as `model`, parsed once for the same text: the
    models are immutable, so the same object can be handed out again."""
    key = (model, text)
    with _parsed_lock:
        found = _parsed.get(key)
        if found is not None:
            _parsed.move_to_end(key)
            return cast(_Model, found)
    value = model.model_validate_json(text)
    remember(text, value)
    return value


def remember(text: str, value: BaseModel) -> None:
    """`value` is what `text` parses to (its own `model_dump_json()`, just stored)."""
    with _parsed_lock:
        _parsed[(type(value), text)] = value
        if len(_parsed) > parsed_documents_cached_max:
            _parsed.popitem(last=False)


@dataclass(frozen=True)
class CachedCustomer:
    state: CustomerState
    first_name: str
    points_seq: int = 0
    """The change that brought the points balance in `state`: the till's entries acknowledged
    up to it are in that balance (see `balance_view`)."""
    counter_seqs: str = "{}"
    """The same for each counter and rolling spend, as JSON (`{asset: change_seq}`), which
    `counters_here` reads in SQL."""


def identifier_key(identifier: Identifier) -> tuple[str, str]:
    if identifier.type == "card":
        return ("card", identifier.number)
    if identifier.type == "phone_hash":
        return ("phone_hash", identifier.phone_hash)
    return ("qr", identifier.token)


def find_customer_id(db: sqlite_utils.Database, identifier: Identifier) -> str | None:
    kind, value = identifier_key(identifier)
    row = db.execute(
        "SELECT customer_id FROM identifiers WHERE kind = ? AND value = ?", [kind, value]
    ).fetchone()
    return row[0] if row else None


def get_customer(db: sqlite_utils.Database, customer_id: str) -> CachedCustomer | None:
    row = db.execute(
        "SELECT state, first_name, points_seq, counter_seqs FROM customers WHERE customer_id = ?",
        [customer_id],
    ).fetchone()
    if row is None:
        return None
    return CachedCustomer(parsed(CustomerState, row[0]), row[1], row[2], row[3])


def put_customer(
    db: sqlite_utils.Database,
    state: CustomerState,
    identifiers: tuple[Identifier, ...],
    first_name: str = "",
    change_seq: int = 0,
) -> None:
    """Inside a write: replace what the till knows of one customer."""
    if state.customer_id is None:
        raise ValueError("a cached customer needs a customer_id")
    db.execute(
        "INSERT INTO customers(customer_id, status, state, first_name, change_seq) "
        "VALUES (?,?,?,?,?) ON CONFLICT(customer_id) DO UPDATE SET status = excluded.status, "
        "state = excluded.state, first_name = excluded.first_name, "
        "change_seq = excluded.change_seq",
        [state.customer_id, str(state.status), state.model_dump_json(), first_name, change_seq],
    )
    db.execute("DELETE FROM identifiers WHERE customer_id = ?", [state.customer_id])
    for identifier in identifiers:
        kind, value = identifier_key(identifier)
        db.execute(
            "INSERT INTO identifiers(kind, value, customer_id) VALUES (?,?,?) "
            "ON CONFLICT(kind, value) DO UPDATE SET customer_id = excluded.customer_id",
            [kind, value, state.customer_id],
        )


BALANCE_FIELDS = ("points_balance", "lots", "counters", "rolling_spend")
"""What of a cached state only balance changes set: a customer change from central carries
the profile alone, so applying one keeps these as the till holds them."""


def put_profile(
    db: sqlite_utils.Database,
    state: CustomerState,
    identifiers: tuple[Identifier, ...],
    first_name: str,
    change_seq: int,
) -> None:
    """Inside a write: a customer change from central (profile, status, identifiers). The
    balances already cached stay; a customer new to the till starts at zero until its
    balance changes arrive."""
    if state.customer_id is None:
        raise ValueError("a cached customer needs a customer_id")
    cached = get_customer(db, state.customer_id)
    if cached is not None:
        kept = {name: getattr(cached.state, name) for name in BALANCE_FIELDS}
        state = state.model_copy(update=kept)
    put_customer(db, state, identifiers, first_name, change_seq)


_SET_POINTS = (
    "UPDATE customers SET state = json_set(state, '$.points_balance', ?1, '$.lots', json(?2)), "
    "change_seq = max(change_seq, ?3), points_seq = max(points_seq, ?3) WHERE customer_id = ?4"
)
_SET_AMOUNT = (
    "UPDATE customers SET state = json_set(state, ?1, ?2), change_seq = max(change_seq, ?3), "
    "counter_seqs = json_set(counter_seqs, ?5, "
    "max(COALESCE(json_extract(counter_seqs, ?5), 0), ?3)) WHERE customer_id = ?4"
)


def put_balances(db: sqlite_utils.Database, changes: Iterable[BalanceChange]) -> None:
    """Inside a write: balance changes of customers, at most one per customer and asset,
    each set into the cached state in place (SQLite's `json_set`), so the state is never
    parsed and written again per change. Customers the till does not hold are skipped."""
    points: list[tuple[int, str, int, str]] = []
    amounts: list[tuple[str, int, int, str, str]] = []
    for change in changes:
        if change.account.type != "customer":
            raise ValueError("only a customer's balance is cached")
        customer_id = change.account.customer_id
        if change.asset == "points":
            lots = _lots.dump_json(change.lots).decode()
            points.append((change.balance, lots, change.change_seq, customer_id))
        else:
            path = (
                "$.rolling_spend"
                if change.asset == "rolling_spend"
                else f'$.counters."{change.asset}"'  # the asset's pattern allows no quote
            )
            seq_path = f'$."{change.asset}"'
            amounts.append((path, max(change.balance, 0), change.change_seq, customer_id, seq_path))
    db.conn.executemany(_SET_POINTS, points)
    db.conn.executemany(_SET_AMOUNT, amounts)


def erase_customer(
    db: sqlite_utils.Database, customer_id: str, identifiers: tuple[Identifier, ...]
) -> None:
    """Inside a write: the tombstone. Personal data of the customer is gone from the till:
    from its cache, and from what the till kept of their sales and sign-up (`_erasure`). A
    customer who signed up here is cached under the provisional id the till gave them: the
    tombstone's identifiers name them too, as the owner of those identifiers or, once central
    made them a customer of its own id and the identifiers went to that one, through the
    sign-up's record."""
    keys = [identifier_key(identifier) for identifier in identifiers]
    owners = {customer_id} | _signed_up_with(db, set(keys))
    for kind, value in keys:
        owner = db.execute(
            "SELECT customer_id FROM identifiers WHERE kind = ? AND value = ?", [kind, value]
        ).fetchone()
        owners |= {owner[0]} if owner else set()
    for kind, value in keys:
        db.execute("DELETE FROM identifiers WHERE kind = ? AND value = ?", [kind, value])
    for owner_id in sorted(owners):
        db.execute("DELETE FROM identifiers WHERE customer_id = ?", [owner_id])
        db.execute("DELETE FROM signup_identifiers WHERE customer_id = ?", [owner_id])
        erased = CustomerState(customer_id=owner_id, status=CustomerStatus.erased)
        db.execute(
            "UPDATE customers SET status = ?, state = ?, first_name = '' WHERE customer_id = ?",
            [str(CustomerStatus.erased), erased.model_dump_json(), owner_id],
        )
    _erasure.forget(db, sorted(owners))


def _signed_up_with(db: sqlite_utils.Database, keys: set[tuple[str, str]]) -> set[str]:
    """The provisional customers sign-ups at this till made with any of `keys`."""
    found = set()
    for kind, value in keys:
        rows = db.execute(
            "SELECT customer_id FROM signup_identifiers WHERE kind = ? AND value = ?",
            [kind, value],
        ).fetchall()
        found |= {row[0] for row in rows}
    return found


def remember_signup(
    db: sqlite_utils.Database, customer_id: str, identifiers: tuple[Identifier, ...]
) -> None:
    """Inside the sign-up's write: the identifiers it was made with (`_signed_up_with`)."""
    for identifier in identifiers:
        kind, value = identifier_key(identifier)
        db.execute(
            "INSERT OR IGNORE INTO signup_identifiers(kind, value, customer_id) VALUES (?,?,?)",
            [kind, value, customer_id],
        )


def put_rule_set(
    db: sqlite_utils.Database,
    rule_set_id: str,
    content_hash: str,
    effective_from: datetime,
    document: str,
) -> None:
    db.execute(
        "INSERT OR IGNORE INTO rule_sets(content_hash, rule_set_id, effective_from, document) "
        "VALUES (?,?,?,?)",
        [content_hash, rule_set_id, utc_iso(effective_from), document],
    )


def limits_of(stored: str | None) -> OfflineLimits:
    """HQ's offline limits from their stored text; the defaults before the first pull."""
    return OfflineLimits() if stored is None else parsed(OfflineLimits, stored)


def put_offline_limits(db: sqlite_utils.Database, limits: OfflineLimits) -> None:
    set_meta(db, "offline_limits", limits.model_dump_json())


def utc_iso(moment: datetime) -> str:
    """The one text form of a moment in the till database, so text order is time order."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def customer_count(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT COUNT(*) FROM customers").fetchone()[0])
