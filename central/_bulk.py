"""Many rows in one statement, straight through the driver: the hot path of push.

The values are already plain ints, strings and bytes, so SQLAlchemy's per-row parameter
processing and statement compilation are skipped. On SQLite a batch is the driver's
`executemany` (the engine is in-process, a statement per row costs little). On PostgreSQL a
batch is one statement over `unnest` of one array per column, in the rows' order (`WITH
ORDINALITY ... ORDER BY`): one round trip and one plan per batch, and an upsert takes its row
locks in the order of the rows given. The arrays travel in binary (`%b`): psycopg builds a
text-format array in Python, escaping every element with a regular expression, which was
half of push's CPU on PostgreSQL; and they are built here (`pg_array`), not by psycopg, whose
list dumper walks every element in Python several times. Every SQL text here is the same for
any batch size, so the driver's and the server's statement caches keep them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import chain, repeat
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


class TextArray(bytes):
    """A `text[]` in PostgreSQL's binary format, sent as it is (`pg_array`)."""


class BigintArray(bytes):
    """A `bigint[]` in PostgreSQL's binary format, sent as it is (`pg_array`)."""


_TEXT_OID = 25
_BIGINT_OID = 20
_array_head = struct.Struct(">iiIii")  # dimensions, has nulls, element type, length, first index
_length = struct.Struct(">i")
_bigint_bytes = 8


def pg_array(values: Sequence[Any]) -> Any:
    """`values` as the parameter of a `%b::type[]` (PostgreSQL): a list of str or of int
    made into the binary array at C speed (encoded all at once, lengths packed by `struct`);
    anything else (None among them, bytes, mixed, empty, an int beyond 64 bits) as a list,
    for psycopg to dump. The server reads the same array either way: psycopg sends str as
    text and int as the smallest integer type that holds them, which the cast in the SQL
    widens to the column's."""
    if not values:
        return list(values)
    kinds = set(map(type, values))
    if kinds == {str}:
        encoded = list(map(str.encode, values))
        head = _array_head.pack(1, 0, _TEXT_OID, len(encoded), 1)
        lengths = map(_length.pack, map(len, encoded))
        return TextArray(head + b"".join(chain.from_iterable(zip(lengths, encoded, strict=True))))
    if kinds == {int}:
        try:
            body = struct.pack(
                f">{'iq' * len(values)}", *chain.from_iterable(zip(repeat(_bigint_bytes), values))
            )
        except struct.error:  # beyond 64 bits
            return list(values)
        return BigintArray(_array_head.pack(1, 0, _BIGINT_OID, len(values), 1) + body)
    return list(values)


def _register_array_dumpers() -> None:
    """Teach psycopg (when installed) to send `TextArray` and `BigintArray` as they are."""
    try:
        import psycopg
        from psycopg.adapt import Buffer, Dumper
        from psycopg.pq import Format
    except ImportError:  # SQLite only
        return

    class TextArrayDumper(Dumper):
        format = Format.BINARY
        oid = 1009  # text[]

        def dump(self, obj: Any) -> Buffer:
            return obj  # type: ignore[no-any-return]

    class BigintArrayDumper(TextArrayDumper):
        oid = 1016  # bigint[]

    psycopg.adapters.register_dumper(TextArray, TextArrayDumper)
    psycopg.adapters.register_dumper(BigintArray, BigintArrayDumper)


_register_array_dumpers()


def _columns(rows: Sequence[Row], count: int) -> list[Any]:
    """One `pg_array` per column."""
    if not rows:
        return [[]] * count
    return [pg_array(column) for column in zip(*rows, strict=True)]


def _source(table: sa.Table, names: Sequence[str]) -> str:
    """`SELECT cols FROM unnest(arrays...)` in the rows' order (PostgreSQL)."""
    arrays = ", ".join(f"%b::{_pg_array_type(table, name)}" for name in names)
    columns = ", ".join(names)
    return (
        f"SELECT {columns} FROM unnest({arrays}) WITH ORDINALITY AS u({columns}, row_order) "
        "ORDER BY row_order"
    )


Statement = tuple[str, Any, bool]  # SQL with %s marks, parameters, executemany?


def insert_statement(
    table: sa.Table, names: Sequence[str], rows: Sequence[Row], pg: bool
) -> Statement:
    columns = ", ".join(names)
    if pg:
        sql = f"INSERT INTO {table.name} ({columns}) {_source(table, names)}"
        return sql, tuple(_columns(rows, len(names))), False
    marks = ", ".join(["%s"] * len(names))
    return f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", rows, True


def upsert_statement(
    table: sa.Table,
    names: Sequence[str],
    rows: Sequence[Row],
    conflict: Sequence[str],
    updates: dict[str, str],
    returning: Sequence[str],
    pg: bool,
) -> Statement:
    """INSERT ... ON CONFLICT (`conflict`) DO UPDATE SET name = `updates[name]` (SQL in terms
    of the table's name and `excluded`); RETURNING only on PostgreSQL."""
    columns = ", ".join(names)
    tail = f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET " + ", ".join(
        f"{name} = {value}" for name, value in updates.items()
    )
    if pg:
        sql = f"INSERT INTO {table.name} ({columns}) {_source(table, names)}{tail}"
        if returning:
            sql += f" RETURNING {', '.join(returning)}"
        return sql, tuple(_columns(rows, len(names))), False
    marks = ", ".join(["%s"] * len(names))
    return f"INSERT INTO {table.name} ({columns}) VALUES ({marks}){tail}", rows, True


def run(conn: sa.Connection, statement: Statement) -> sa.CursorResult[Any]:
    sql, params, many = statement
    if not is_postgresql(conn):
        sql = sql.replace("%s", "?")
    return conn.exec_driver_sql(sql, params if many else tuple(params))


def insert(conn: sa.Connection, table: sa.Table, names: Sequence[str], rows: Sequence[Row]) -> None:
    """INSERT `rows` (tuples in the order of `names`), in order."""
    if rows:
        run(conn, insert_statement(table, names, rows, is_postgresql(conn)))


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    names: Sequence[str],
    rows: Sequence[Row],
    conflict: Sequence[str],
    updates: dict[str, str],
    returning: Sequence[str] = (),
) -> list[Row] | None:
    """An upsert of `rows` in order (`upsert_statement`). On PostgreSQL returns the
    `returning` columns of every row; on SQLite (executemany returns nothing) None."""
    if not rows:
        return [] if returning else None
    pg = is_postgresql(conn)
    result = run(conn, upsert_statement(table, names, rows, conflict, updates, returning, pg))
    return [tuple(row) for row in result] if pg and returning else None


class Deferred:
    """Writes whose results the transaction does not read, sent together at `flush`: on
    PostgreSQL in one pipeline (one round trip for all of them instead of one each, which
    also shortens the time push holds its account row locks); on SQLite one after another.
    SQL is written with `%s` marks; database errors surface as SQLAlchemy's exceptions."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.pg = is_postgresql(conn)
        self.statements: list[Statement] = []

    def insert(self, table: sa.Table, names: Sequence[str], rows: Sequence[Row]) -> None:
        if rows:
            self.statements.append(insert_statement(table, names, rows, self.pg))

    def upsert(
        self,
        table: sa.Table,
        names: Sequence[str],
        rows: Sequence[Row],
        conflict: Sequence[str],
        updates: dict[str, str],
    ) -> None:
        if rows:
            self.statements.append(
                upsert_statement(table, names, rows, conflict, updates, (), self.pg)
            )

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self.statements.append((sql, params, False))

    def flush(self, last: Statement | None = None) -> list[Row]:
        """Send every statement, then `last` (if any); returns the rows `last` returned."""
        statements, self.statements = self.statements, []
        if not self.pg:
            for statement in statements:
                run(self.conn, statement)
            return [] if last is None else [tuple(row) for row in run(self.conn, last)]
        return _pipeline(self.conn, statements, last)


def _pipeline(
    conn: sa.Connection, statements: list[Statement], last: Statement | None
) -> list[Row]:
    import psycopg

    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    sql, params = "", None
    try:
        with raw.cursor() as cursor, raw.cursor() as final:
            with raw.pipeline():
                for sql, params, many in statements:
                    if many:
                        cursor.executemany(sql, params)
                    else:
                        cursor.execute(sql, params)
                if last is not None:
                    sql, params, _ = last
                    final.execute(sql, params)
            return [] if last is None else [tuple(row) for row in final.fetchall()]
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(sql, params, error, psycopg.Error) from error


@cache
def _copy_types(table: sa.Table, names: tuple[str, ...]) -> list[str]:
    def one(column: sa.Column[Any]) -> str:
        kind = column.type
        if isinstance(kind, sa.BigInteger):
            return "int8"
        if isinstance(kind, sa.Integer):
            return "int4"
        if isinstance(kind, sa.LargeBinary):
            return "bytea"
        if isinstance(kind, sa.String):
            return "text"
        raise AssertionError(f"no COPY type for {table.name}.{column.name} ({kind})")

    return [one(table.c[name]) for name in names]


def copy(conn: sa.Connection, table: sa.Table, names: Sequence[str], rows: Sequence[Row]) -> None:
    """INSERT `rows` in order with `COPY ... FROM STDIN (FORMAT BINARY)` (PostgreSQL): the
    driver writes each row in C, where the arrays of `insert` are built element by element
    in Python, and the server skips `unnest`. Not in a pipeline: call it before `flush`."""
    import psycopg

    if not rows:
        return
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    try:
        with raw.cursor() as cursor, cursor.copy(sql) as copying:
            copying.set_types(_copy_types(table, tuple(names)))
            for row in rows:
                copying.write_row(row)
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(sql, None, error, psycopg.Error) from error


def among(conn: sa.Connection, column: str, values: Iterable[str]) -> tuple[str, Any]:
    """A condition `column` is one of `values`, with one parameter whatever their number:
    `IN (SELECT unnest(array))` on PostgreSQL (not `= ANY(array)`: once psycopg prepares the
    statement, its generic plan tests every row against the whole array, 20 times slower
    for a batch's few hundred keys), `IN (SELECT value FROM json_each(?))` on SQLite."""
    listed = sorted(set(values))
    if is_postgresql(conn):
        return f"{column} IN (SELECT unnest(%b::text[]))", pg_array(listed)
    return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(listed)
