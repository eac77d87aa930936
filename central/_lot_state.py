"""The lots behind each points balance: the fold, and its result kept per account.

The fold is deterministic: one account's points entries in central's order (`ledger.id`).
A positive entry is a lot (its activation and expiry from `lots`, none when it has no row);
an entry that `reverses` a lot takes from that lot first; any other negative entry takes
from the lots as they were when it was made (its `device_time`): first the active ones, then
those still in their return window, each time those that expire first (never-expiring last),
and never from a lot that had expired by then, even if the expiry job has not written it off
yet; what no lot covers is debt, which the next positive entries pay first.

`lot_states` keeps each account's fold result (its debt and its lots with points left, in
fold order), updated in the same transaction as the entries, so that push answers with an
account's lots in time proportional to the batch, not to the account's history. It equals
the fold of the ledger because every writer of entries (push, `central._entries.write`)
takes the account row locks before it inserts its ledger rows: entries of one account get
their `ledger.id` in the order the transactions apply them here. `central._lots.fold_account`
folds the ledger itself and stays the oracle the tests compare this table with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa

from central import _bulk
from central import _tables as t
from central._clock import to_ms
from protocol import LedgerEntry, account_key

_never = 2**62


LotLeft = list[Any]
"""One lot and the points left in it: `[lot_id, left, activates_ms, expires_ms]`.

A plain list, so that a kept state decodes from its JSON straight into lots and encodes back
without building an object per lot or per field: push reads, folds and writes back every
open lot of each account it touches. `lot_dict` names the fields."""

_LOT_FIELDS = ("lot_id", "left", "activates_ms", "expires_ms")
_LEFT = 1
_ACTIVATES = 2
_EXPIRES = 3


def lot_dict(lot: LotLeft) -> dict[str, Any]:
    """`lot` with its fields named."""
    return dict(zip(_LOT_FIELDS, lot, strict=True))


def _spend_order(at_ms: int) -> Callable[[LotLeft], tuple[bool, int]]:
    """The order spending at `at_ms` takes lots in: active ones before those still waiting
    (their return window), and among each those that expire first; never-expiring ones last
    (a stable sort keeps fold order among equals)."""

    def order(lot: LotLeft) -> tuple[bool, int]:
        expires: int | None = lot[_EXPIRES]
        return (lot[_ACTIVATES] or 0) > at_ms, _never if expires is None else expires

    return order


@dataclass
class Folded:
    lots: dict[str, LotLeft]
    debt: int

    @property
    def balance(self) -> int:
        points: int = sum(lot[_LEFT] for lot in self.lots.values())
        return points - self.debt

    def spendable(self, now_ms: int) -> int:
        """Points usable now: active, unexpired lots, less the debt."""
        active: int = sum(
            lot[_LEFT]
            for lot in self.lots.values()
            if (lot[_ACTIVATES] or 0) <= now_ms
            and (lot[_EXPIRES] is None or now_ms < lot[_EXPIRES])
        )
        return max(active - self.debt, 0)

    def open_lots(self) -> list[LotLeft]:
        """The lots with points left, in fold order."""
        return [lot for lot in self.lots.values() if lot[_LEFT] > 0]


class Step(NamedTuple):
    """What the fold reads of one points entry."""

    entry_id: str
    amount: int
    reverses: str | None
    device_time_ms: int


LotTimes = dict[str, tuple[int | None, int | None]]
_NO_TIMES: tuple[None, None] = (None, None)


class Posting(NamedTuple):
    """What the accounts and the fold read of one new entry, its texts made once."""

    entry_id: str
    account_key: str
    asset: str
    amount: int
    reverses: str | None
    device_time_ms: int


def postings(entries: Iterable[LedgerEntry], ids: Iterable[str] | None = None) -> list[Posting]:
    """`ids`: the entries' ids as text when the caller has them already."""
    entries = list(entries)
    texts = [str(e.entry_id) for e in entries] if ids is None else list(ids)
    return [
        Posting(
            text,
            account_key(e.account),
            e.asset,
            e.amount,
            None if e.reverses is None else str(e.reverses),
            to_ms(e.device_time),
        )
        for e, text in zip(entries, texts, strict=True)
    ]


def fold(entries: Iterable[Any], lot_times: LotTimes, start: Folded | None = None) -> Folded:
    """`entries`: rows with entry_id, amount, reverses, device_time_ms, in ledger order
    (points only), folded onto `start` (an empty account when None; `start` is changed in place)."""
    folded = start if start is not None else Folded({}, 0)
    lots = folded.lots
    debt = folded.debt
    for entry in entries:
        amount = int(entry.amount)
        if amount > 0:
            paid = min(debt, amount)
            debt -= paid
            activates, expires = lot_times.get(entry.entry_id, _NO_TIMES)
            lots[entry.entry_id] = [entry.entry_id, amount - paid, activates, expires]
        elif amount < 0:
            need = -amount
            first = lots.get(entry.reverses) if entry.reverses else None
            if first is not None:
                need -= _take(first, need)
            debt += _spend(lots, need, entry.device_time_ms) if need else 0
    folded.debt = debt
    return folded


def _take(lot: LotLeft, need: int) -> int:
    """Take up to `need` points from `lot`; how many it gave."""
    taken = min(lot[_LEFT], need) if lot[_LEFT] > 0 else 0
    lot[_LEFT] -= taken
    return taken


def _spend(lots: dict[str, LotLeft], need: int, at_ms: int) -> int:
    """Take `need` points from the lots not expired at `at_ms`, in `_spend_order` (fold
    order when no lot waits or expires); what they could not cover."""
    ordered: Iterable[LotLeft] = lots.values()
    if any(lot[_EXPIRES] is not None or lot[_ACTIVATES] is not None for lot in ordered):
        ordered = sorted(
            (lot for lot in ordered if lot[_EXPIRES] is None or at_ms < lot[_EXPIRES]),
            key=_spend_order(at_ms),
        )
    for lot in ordered:
        if lot[_LEFT] > 0:
            need -= _take(lot, need)
            if need == 0:
                break
    return need


# --- the kept state -----------------------------------------------------------------------


def _encode(folded: Folded) -> str:
    return orjson.dumps(folded.open_lots()).decode()


def _decode(debt: int, text: str) -> Folded:
    return Folded({lot[0]: lot for lot in orjson.loads(text)}, int(debt))


def load(conn: sa.Connection, account_keys: Iterable[str]) -> dict[str, Folded]:
    """The kept fold of each account (an empty one for an account without points entries)."""
    keys = sorted(set(account_keys))
    found = {key: Folded({}, 0) for key in keys}
    if not keys:
        return found
    where, values = _bulk.among(conn, "account_key", keys)
    rows = conn.exec_driver_sql(
        f"SELECT account_key, debt, lots FROM lot_states WHERE {where}", (values,)
    ).all()
    for key, debt, text in rows:
        found[key] = _decode(debt, text)
    return found


_COLUMNS = ("account_key", "debt", "lots", "updated_ms")
_UPDATES = {"debt": "excluded.debt", "lots": "excluded.lots", "updated_ms": "excluded.updated_ms"}


def save(
    conn: sa.Connection,
    states: dict[str, Folded],
    now_ms: int,
    deferred: _bulk.Deferred | None = None,
) -> None:
    """Write the accounts' folds (one batch; into `deferred` when given). The caller holds
    their account rows."""
    rows = [(key, state.debt, _encode(state), now_ms) for key, state in sorted(states.items())]
    if deferred is not None:
        deferred.upsert(t.lot_states, _COLUMNS, rows, ("account_key",), _UPDATES)
    else:
        _bulk.upsert(conn, t.lot_states, _COLUMNS, rows, ("account_key",), _UPDATES)


def advance(
    conn: sa.Connection,
    posted: Iterable[Posting],
    lot_times: LotTimes,
    now_ms: int,
    deferred: _bulk.Deferred | None = None,
) -> dict[str, Folded]:
    """Fold new entries (in the order they were inserted into the ledger) into their
    accounts' kept state, and write it. Returns the new fold of each points account they
    touched. Call it after the account rows are locked."""
    steps: dict[str, list[Posting]] = {}
    for posting in posted:
        if posting.asset == "points":
            steps.setdefault(posting.account_key, []).append(posting)
    if not steps:
        return {}
    states = load(conn, steps)
    for key, mine in steps.items():
        fold(mine, lot_times, states[key])
    save(conn, states, now_ms, deferred)
    return states


class Kept:
    """The kept folds of one write transaction that applies several batches (group commit):
    each account is read once and written once for the whole group. `advance` folds a
    batch into them in place, so a batch that fails after its `advance` cannot be rolled
    back to its savepoint alone: the caller redoes the transaction without it (`advances`
    counts the batches folded in)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.states: dict[str, Folded] = {}
        self.advances = 0

    def advance(self, posted: Iterable[Posting], lot_times: LotTimes) -> None:
        """Fold new entries (in the order they are inserted into the ledger) into their
        accounts' states. Call it after the account rows are locked."""
        steps: dict[str, list[Posting]] = {}
        for posting in posted:
            if posting.asset == "points":
                steps.setdefault(posting.account_key, []).append(posting)
        if not steps:
            return
        self.advances += 1
        kept = self.states
        kept.update(load(self.conn, [key for key in steps if key not in kept]))
        for key, mine in steps.items():
            fold(mine, lot_times, kept[key])

    def save(self, now_ms: int, deferred: _bulk.Deferred) -> None:
        if self.states:
            save(self.conn, self.states, now_ms, deferred)


def rebuild(conn: sa.Connection, now_ms: int) -> int:
    """Fold every account's points entries from the ledger again and keep the result (a
    migration, or a repair). Returns the number of accounts."""
    times: LotTimes = {
        lot_id: (activates, expires)
        for lot_id, activates, expires in conn.execute(
            sa.select(t.lots.c.lot_id, t.lots.c.activates_ms, t.lots.c.expires_ms)
        )
    }
    conn.execute(sa.delete(t.lot_states))
    rows = conn.execute(
        sa.select(
            t.ledger.c.account_key,
            t.ledger.c.entry_id,
            t.ledger.c.amount,
            t.ledger.c.reverses,
            t.ledger.c.device_time_ms,
        )
        .where(t.ledger.c.asset == "points")
        .order_by(t.ledger.c.account_key, t.ledger.c.id)
    )
    states: dict[str, Folded] = {}
    for row in rows:
        folded = states.setdefault(row.account_key, Folded({}, 0))
        fold([Step(row.entry_id, row.amount, row.reverses, row.device_time_ms)], times, folded)
    save(conn, states, now_ms)
    return len(states)
