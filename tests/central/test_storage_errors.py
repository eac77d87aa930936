"""Central whose database cannot do its work: a disk that is full (SQLite) or a PostgreSQL
that takes no connections. Every request that needs it gets 503 `storage_unavailable` with a
sentence the operator can act on; nothing is half-written; the till's retry lands once the
database is back, applied once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from central import _tables as t
from central._errors import storage_problem

from .checks import assert_ledger_consistent
from .tills import Hq

ENTRIES = 300
"""Enough ledger rows that SQLite must grow the file to hold them."""


@contextlib.contextmanager
def _disk_full(engine: sa.Engine) -> Iterator[tuple[str, int, str]]:
    """SQLite: the file may not grow by a page (`max_page_count`), which SQLite answers as it
    answers a full disk: `SQLITE_FULL`, "database or disk is full". Reads go on: `/health`
    is 200."""

    def capped(dbapi_conn: Any, _record: Any) -> None:
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    sa.event.listen(engine, "connect", capped)
    engine.dispose()
    try:
        yield "no disk space left", 200, "database or disk is full"
    finally:
        sa.event.remove(engine, "connect", capped)
        engine.dispose()


@contextlib.contextmanager
def _no_connections(engine: sa.Engine, admin_url: str) -> Iterator[tuple[str, int, str]]:
    """PostgreSQL: the database takes no new connections, and central's are cut: `/health`
    is 503 too."""
    name = engine.url.database
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        try:
            yield "cannot reach its database", 503, "not currently accepting connections"
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def _unwell(
    engine: sa.Engine, request: pytest.FixtureRequest
) -> contextlib.AbstractContextManager[tuple[str, int, str]]:
    """The database unwell as each backend can be here: (what central's refusal names, the
    status of `/health` meanwhile, the driver's words that only central's log has)."""
    if engine.dialect.name == "sqlite":
        return _disk_full(engine)
    return _no_connections(engine, request.getfixturevalue("postgres_admin_url"))


def _ledger_rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.ledger)).scalar_one())


def test_a_push_central_cannot_store_is_503_and_lands_once_when_it_can(
    hq: Hq, engine: sa.Engine, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    hq.customer("c1")
    till = hq.enroll()
    first = till.push([till.entry("c1", 100)])
    assert first.status_code == 200, first.text
    batch = [till.entry("c1", 1) for _ in range(ENTRIES)]
    with _unwell(engine, request) as (cause, health, driver_said):
        refused = till.push(batch)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "storage_unavailable"
        assert cause in refused.json()["message"]
        assert "push them again" in refused.json()["message"]
        assert int(refused.headers["Retry-After"]) > 0
        assert hq.client.get("/health").status_code == health
        assert driver_said not in refused.text
    logged = [r.getMessage() for r in caplog.records if r.name == "kopilka.central.storage"]
    assert any(cause in line and driver_said in line for line in logged), logged
    assert _ledger_rows(engine) == 1  # nothing of the refused batch
    again = till.push(batch)
    assert again.status_code == 200, again.text
    assert [r["outcome"] for r in again.json()["results"]] == ["applied"] * ENTRIES
    assert _ledger_rows(engine) == 1 + ENTRIES
    assert_ledger_consistent(engine)


class _Failure(Exception):
    def __init__(self, sqlstate: str | None = None, sqlite_errorname: str | None = None) -> None:
        super().__init__("the driver's message\nits detail")
        self.sqlstate = sqlstate
        self.sqlite_errorname = sqlite_errorname


@pytest.mark.parametrize(
    ("kind", "sqlstate", "sqlite_name", "says"),
    [
        (sa.exc.OperationalError, "53100", None, "no disk space left"),
        (sa.exc.OperationalError, None, "SQLITE_FULL", "no disk space left"),
        (sa.exc.InternalError, "25006", None, "read-only"),
        (sa.exc.OperationalError, None, "SQLITE_READONLY_DBMOVED", "read-only"),
        (sa.exc.OperationalError, None, "SQLITE_BUSY", "database is busy"),
        (sa.exc.OperationalError, None, "SQLITE_IOERR_SHORT_READ", "its database file"),
        (sa.exc.OperationalError, None, None, "cannot reach its database"),
        (sa.exc.OperationalError, "08006", None, "cannot reach its database"),
        (sa.exc.OperationalError, "57P01", None, "cannot reach its database"),
        (sa.exc.OperationalError, "40001", None, "database failed (central's log says how)"),
        (sa.exc.OperationalError, None, "SQLITE_ERROR", None),
        (sa.exc.IntegrityError, "23505", None, None),
        (sa.exc.ProgrammingError, "42P01", None, None),
    ],
)
def test_what_the_operator_reads_for_each_failure(
    kind: type[sa.exc.DBAPIError], sqlstate: str | None, sqlite_name: str | None, says: str | None
) -> None:
    """By the driver's own code (SQLSTATE, SQLite's error name); a bug is None (a 500). The
    driver's words (host names, database names, paths) are not in it: an unauthenticated
    caller is refused this way too, when central cannot look its credential up."""
    error = kind("INSERT …", {}, _Failure(sqlstate, sqlite_name))
    problem = storage_problem(error)
    if says is None:
        assert problem is None
    else:
        assert problem is not None
        assert says in problem
        assert "the driver's message" not in problem, "the driver's words go to the log only"


def test_a_database_error_that_is_a_bug_stays_a_500(engine: sa.Engine) -> None:
    from central import create_app

    from .conftest import TestClient

    app = create_app(engine=engine)

    @app.get("/duplicate")
    def duplicate() -> None:
        raise sa.exc.IntegrityError("INSERT …", {}, _Failure("23505"))

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/duplicate")
    assert response.status_code == 500
    assert response.json()["code"] == "internal"
