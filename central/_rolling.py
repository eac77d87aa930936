"""Rolling spend: a customer's spend over the rule set's `rolling_spend_days`, for tiers.

Each sale adds its spend to the account's `rolling_spend` counter, and each refund takes its
part back (entries, like points). The `rolling` job keeps the counter to the window: for every
account whose spend crossed the window's edge since its last run (a sale a year old today), or
arrived already outside it (a till back from weeks offline), it writes one `expire` entry of
central's that brings the counter to the sum of the spend entries inside the window, never
below zero. The window's edge moves back when HQ lengthens the window, and spend comes back
the same way. A sale's time is the till's own (`device_time`); a refund's reversal of its
spend names the sale's entry (`reverses`) and takes the sale's time, so that it leaves the
window with the sale: dated by the refund, it kept taking the sale's spend off the
customer's other spend for as long as the refund was younger than the window.

Each account is set in a transaction that holds its row lock, the lock push takes to move it,
so a sale pushed meanwhile is either in the sum or waits for it; a second run finds nothing
to correct. The job's own entries are not spend: the sum leaves out `expire` entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from central import _directory, _entries
from central import _tables as t
from central._clock import to_ms
from central._lots import lock_for_moves
from protocol import EntryKind, RuleSet

window_days_default = 365
"""The window when no rule set is in force (the rule language's default)."""
accounts_per_transaction_max = 200
SPEND = "rolling_spend"
_EDGE, _LEDGER_ID, _LEDGER_ID_BEFORE = (
    "rolling.edge_ms",
    "rolling.ledger_id",
    "rolling.ledger_id_before",
)


def roll(engine: sa.Engine, now: datetime) -> tuple[int, int | None]:
    """Returns (accounts corrected, None)."""
    with engine.begin() as conn:
        days = window_days(conn, now)
        edge_ms = to_ms(now - timedelta(days=days))
        last_edge_ms, last_id = _position(conn, _EDGE), _position(conn, _LEDGER_ID)
        top_id = conn.execute(sa.select(sa.func.max(t.ledger.c.id))).scalar() or 0
        since_id = _position(conn, _LEDGER_ID_BEFORE) or 0
        keys = _crossed(conn, (last_edge_ms, edge_ms), (since_id, top_id))
    corrected = 0
    for batch in _chunks(keys, accounts_per_transaction_max):
        with engine.begin() as conn:
            lock_for_moves(conn, batch)
            specs = [_correction(conn, key, edge_ms, days) for key in batch]
            corrected += len(_entries.write(conn, [s for s in specs if s is not None], now))
    with engine.begin() as conn:
        _keep(conn, _EDGE, edge_ms)
        _keep(conn, _LEDGER_ID_BEFORE, last_id or 0)
        _keep(conn, _LEDGER_ID, top_id)
    return corrected, None


def window_days(conn: sa.Connection, now: datetime) -> int:
    row = _directory.rule_set_in_force(conn, now)
    if row is None:
        return window_days_default
    return RuleSet.model_validate_json(row.document).rolling_spend_days


def _crossed(
    conn: sa.Connection, edges_ms: tuple[int | None, int], ids: tuple[int, int]
) -> list[str]:
    """Accounts with spend between the last run's edge and this one's (the whole past on the
    first run), or pushed lately with a time outside the window.

    "Lately" starts at the top ledger id the run before the last one read, not the last one:
    ids are handed out before commit, so a push could commit an id below the last run's top
    after that run read. Each push commits within seconds, well inside a job interval, so
    whatever the last run could not see is above the id read one run earlier."""
    ledger = t.ledger.c
    last_edge_ms, edge_ms = edges_ms
    spend = ledger.asset == SPEND
    if last_edge_ms is None:
        crossing = ledger.device_time_ms <= edge_ms
    else:
        low, high = sorted((last_edge_ms, edge_ms))
        crossing = sa.and_(ledger.device_time_ms > low, ledger.device_time_ms <= high)
    crossed = conn.execute(sa.select(ledger.account_key).where(spend, crossing).distinct())
    late = sa.and_(ledger.id > ids[0], ledger.id <= ids[1], _dated(edge_ms))
    pushed = conn.execute(
        sa.select(ledger.account_key).select_from(_with_reversed).where(spend, late).distinct()
    )
    return sorted(set(crossed.scalars()) | set(pushed.scalars()))


_reversed = t.ledger.alias("reversed")
_with_reversed = t.ledger.outerjoin(
    _reversed,
    sa.and_(_reversed.c.entry_id == t.ledger.c.reverses, _reversed.c.asset == SPEND),
)
"""Spend entries with the spend entry each reverses (a refund's), which dates them."""


def _dated(edge_ms: int) -> sa.ColumnElement[bool]:
    """Dated at or before `edge_ms`: by the spend a reversal reverses, else by the entry's
    own time (over `_with_reversed`)."""
    return sa.func.coalesce(_reversed.c.device_time_ms, t.ledger.c.device_time_ms) <= edge_ms


def _correction(conn: sa.Connection, key: str, edge_ms: int, days: int) -> dict[str, Any] | None:
    ledger = t.ledger.c
    inside = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(ledger.amount), 0))
        .select_from(_with_reversed)
        .where(
            ledger.account_key == key,
            ledger.asset == SPEND,
            ledger.kind != str(EntryKind.expire),
            sa.not_(_dated(edge_ms)),
        )
    ).scalar_one()
    accounts = t.accounts.c
    held = conn.execute(
        sa.select(accounts.balance).where(accounts.account_key == key, accounts.asset == SPEND)
    ).scalar_one_or_none()
    change = max(int(inside), 0) - int(held or 0)
    if change == 0:
        return None
    return {
        "kind": EntryKind.expire,
        "account": _entries.account_of(key),
        "asset": SPEND,
        "amount": change,
        "reason": f"rolling spend kept to the last {days} days",
    }


def _position(conn: sa.Connection, name: str) -> int | None:
    cursors = t.job_cursors.c
    found = conn.execute(sa.select(cursors.position).where(cursors.name == name)).scalar()
    return None if found is None else int(found)


def _keep(conn: sa.Connection, name: str, position: int) -> None:
    cursors = t.job_cursors.c
    moved = conn.execute(
        sa.update(t.job_cursors).where(cursors.name == name).values(position=position)
    ).rowcount
    if not moved:
        conn.execute(sa.insert(t.job_cursors).values(name=name, position=position))


def _chunks(keys: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]
