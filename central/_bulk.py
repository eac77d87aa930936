"""Many rows in one statement, straight through the driver: the hot path of push.

The values are already plain ints, strings and bytes, so SQLAlchemy's per-row parameter
processing and statement compilation are skipped. On SQLite a batch is the driver's
`executemany` (the engine is in-process, a statement per row costs little). On PostgreSQL a
batch is one statement over `unnest` of one array per column, in the rows' order (`WITH
ORDINALITY ... ORDER BY`): one round trip and one plan per batch, and an upsert takes its row
locks in the order of the rows given. Every SQL text here is the same for any batch size, so
the driver's and the server's statement caches keep them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

Row = Sequence[Any]


def is_postgresql(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


_pg = postgresql.dialect()  # type: ignore[no-untyped-call]


@cache
def _pg_array_type(table: sa.Table, name: str) -> str:
    return f"{table.c[name].type.compile(dialect=_pg)}[]"


def _columns(rows: Sequence[Row], count: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * count


def _source(table: sa.Table, names: Sequence[str]) -> str:
    """`SELECT cols FROM unnest(arrays...)` in the rows' order (PostgreSQL)."""
    arrays = ", ".join(f"%s::{_pg_array_type(table, name)}" for name in names)
    columns = ", ".join(names)
    return (
        f"SELECT {columns} FROM unnest({arrays}) WITH ORDINALITY AS u({columns}, row_order) "
        "ORDER BY row_order"
    )


def insert(conn: sa.Connection, table: sa.Table, names: Sequence[str], rows: Sequence[Row]) -> None:
    """INSERT `rows` (tuples in the order of `names`), in order."""
    if not rows:
        return
    columns = ", ".join(names)
    if is_postgresql(conn):
        sql = f"INSERT INTO {table.name} ({columns}) {_source(table, names)}"
        conn.exec_driver_sql(sql, tuple(_columns(rows, len(names))))
        return
    marks = ", ".join(["?"] * len(names))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", rows)


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    names: Sequence[str],
    rows: Sequence[Row],
    conflict: Sequence[str],
    updates: dict[str, str],
    returning: Sequence[str] = (),
) -> list[Row] | None:
    """INSERT ... ON CONFLICT (`conflict`) DO UPDATE SET name = `updates[name]` (SQL in terms
    of the table's name and `excluded`), rows in order. On PostgreSQL returns the `returning`
    columns of every row; on SQLite (executemany returns nothing) None."""
    if not rows:
        return [] if returning else None
    columns = ", ".join(names)
    tail = f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET " + ", ".join(
        f"{name} = {value}" for name, value in updates.items()
    )
    if is_postgresql(conn):
        sql = f"INSERT INTO {table.name} ({columns}) {_source(table, names)}{tail}"
        if returning:
            sql += f" RETURNING {', '.join(returning)}"
        result = conn.exec_driver_sql(sql, tuple(_columns(rows, len(names))))
        return [tuple(row) for row in result] if returning else None
    marks = ", ".join(["?"] * len(names))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) VALUES ({marks}){tail}", rows)
    return None


def among(conn: sa.Connection, column: str, values: Iterable[str]) -> tuple[str, Any]:
    """A condition `column` is one of `values`, with one parameter whatever their number:
    `= ANY(array)` on PostgreSQL, `IN (SELECT value FROM json_each(?))` on SQLite."""
    listed = sorted(set(values))
    if is_postgresql(conn):
        return f"{column} = ANY(%s)", listed
    return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(listed)
