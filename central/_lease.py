"""Database leases: one holder of a named job at a time across every central process.

A lease is one row. Taking it is a single `UPDATE ... WHERE name = :name AND (expires_ms <=
:now OR holder = :me)`: on PostgreSQL a second taker blocks on the row lock and re-reads the
row after the first commits (so it sees the new expiry and updates nothing); on SQLite writers
are serial. Exactly one of any number of concurrent takers gets `True`.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from central import _tables as t


def _ensure(conn: sa.Connection, name: str) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(t.leases)
        .values(name=name, holder="", expires_ms=0, acquired_ms=0)
        .on_conflict_do_nothing(index_elements=[t.leases.c.name])
    )


def take(engine: sa.Engine, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
    """Take (or extend) the lease `name` for `ttl_ms`; False when another holder has it."""
    if ttl_ms <= 0:
        raise ValueError("a lease needs a positive ttl")
    with engine.begin() as conn:
        _ensure(conn, name)
        done = conn.execute(
            sa.update(t.leases)
            .where(
                t.leases.c.name == name,
                sa.or_(t.leases.c.expires_ms <= now_ms, t.leases.c.holder == holder),
            )
            .values(holder=holder, expires_ms=now_ms + ttl_ms, acquired_ms=now_ms)
        ).rowcount
    return done == 1


def release(engine: sa.Engine, name: str, holder: str) -> None:
    """Give the lease back at once (only if still ours)."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(t.leases)
            .where(t.leases.c.name == name, t.leases.c.holder == holder)
            .values(expires_ms=0)
        )


def holder_of(conn: sa.Connection, name: str, now_ms: int) -> str | None:
    row = conn.execute(sa.select(t.leases).where(t.leases.c.name == name)).first()
    if row is None or row.expires_ms <= now_ms:
        return None
    return str(row.holder)
