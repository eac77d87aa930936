"""Entries central writes itself (jobs and HQ actions): numbered under its pseudo-device,
stored, folded into their accounts and announced to tills, all in the caller's transaction.

Locks, in the order push takes them: central's pseudo-device row, account rows in key order,
the change counter last. A caller locks rows of its own (a lot, a cheque) before this.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter

from central import _changes, _lot_state, _push
from central import _tables as t
from central._clock import to_ms
from protocol import AccountRef, LedgerEntry, account_key, canonical_json

_account = TypeAdapter(AccountRef)


def account_of(account_key: str) -> AccountRef:
    """The account a stored `account_key` names (`customer:c1`, `card:...`)."""
    return _account.validate_python(_changes.account_ref(account_key))


def key_of(account: dict[str, Any]) -> str:
    """The `account_key` of an account as JSON (`{"type": "card", "number": ...}`)."""
    return account_key(_account.validate_python(account))


def write(conn: sa.Connection, specs: list[dict[str, Any]], now: datetime) -> list[LedgerEntry]:
    """Write central's entries. An entry with a `grant_key` claims it in `grants`; a second
    claim of the same key fails the whole transaction (IntegrityError), so no job or action
    can write the same keyed entry twice, whatever the leases do."""
    if not specs:
        return []
    entries = _push.central_entries(conn, specs, now)
    now_ms = to_ms(now)
    # Account rows are locked before the ledger rows are inserted: see `_lot_state`.
    posted = _lot_state.postings(entries)
    balances = _fresh_accounts(conn, entries, now_ms) or _push._move_accounts(conn, posted, now_ms)
    conn.execute(
        sa.insert(t.ledger),
        [_push._ledger_row(e, canonical_json(e), None, now_ms) for e in entries],
    )
    keyed = [_push.grant_row(e) for e in entries if e.grant_key is not None]
    if keyed:
        conn.execute(sa.insert(t.grants), keyed)
    lots = [
        _push._lot_row(e)
        for e in entries
        if e.asset == "points" and e.amount > 0 and (e.activates_at or e.expires_at)
    ]
    if lots:
        conn.execute(sa.insert(t.lots), lots)
    states = _lot_state.advance(conn, posted, _push.lot_times(lots), now_ms)
    bodies = [(k, a, b, n) for (k, a), (b, n) in balances.items()]
    _changes.append(conn, _changes.balance_bodies(conn, bodies, now_ms, states), now_ms)
    return entries


fresh_accounts_min = 50


def _fresh_accounts(
    conn: sa.Connection, entries: list[LedgerEntry], now_ms: int
) -> dict[tuple[str, str], tuple[int, int]] | None:
    """Many entries on accounts that do not exist yet (an import): plain inserts, compiled
    once, instead of one large upsert. None when this does not apply."""
    if len(entries) < fresh_accounts_min:
        return None
    sums: dict[tuple[str, str], list[int]] = {}
    for entry in entries:
        key = (account_key(entry.account), entry.asset)
        total = sums.setdefault(key, [0, 0])
        total[0] += entry.amount
        total[1] += 1
    if any(balance < 0 for balance, _ in sums.values()):
        return None
    keys = sorted({k for k, _ in sums})
    present = conn.execute(
        sa.select(sa.func.count()).where(t.accounts.c.account_key.in_(keys))
    ).scalar_one()
    if present:
        return None
    _push.check_bounds({key: (total[0], total[1]) for key, total in sums.items()})
    rows = [
        {"account_key": k, "asset": a, "balance": b, "entries": n, "updated_ms": now_ms}
        for (k, a), (b, n) in sorted(sums.items())
    ]
    conn.execute(sa.insert(t.accounts), rows)
    return {(k, a): (b, n) for (k, a), (b, n) in sorted(sums.items())}


def keys_taken(conn: sa.Connection, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    rows = conn.execute(sa.select(t.grants.c.grant_key).where(t.grants.c.grant_key.in_(keys)))
    return set(rows.scalars())
