"""Engines and migrations: one code path for SQLite (the default, one file, WAL) and
PostgreSQL (psycopg 3)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from central import _tables as t

sqlite_busy_timeout_ms = 30_000
pool_connections_max = 10

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `sqlite:///path` as well as explicit driver URLs."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine for central. SQLite gets WAL, FULL sync and `BEGIN IMMEDIATE` for every
    transaction except those opened with the `sqlite_begin="DEFERRED"` execution option."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": sqlite_busy_timeout_ms / 1000, "check_same_thread": False},
            pool_size=pool_connections_max,
            **kwargs,
        )
        _sqlite_events(engine)
        return engine
    return sa.create_engine(
        url, pool_size=pool_connections_max, max_overflow=5, pool_pre_ping=True, **kwargs
    )


def _sqlite_events(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={sqlite_busy_timeout_ms}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Writer:
    """One writer at a time on SQLite, so that writers queue instead of polling.

    Within a process, a thread lock; across the processes of `serve --workers N`, an
    exclusive `flock` on `<database>-writer` beside the file, which the kernel hands to the
    next waiter as soon as the holder lets go. SQLite's own lock (`BEGIN IMMEDIATE`, with its
    busy timeout) still makes any other writer (the jobs, the CLI) wait its turn; but its busy
    handler sleeps and polls (1, 2, 5, ... 100 ms), which between two busy processes wastes
    most of the time it waits. Take this before the write transaction begins and let go
    after it ended."""

    def __init__(self, database: str | None) -> None:
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._path = None if not database or database == ":memory:" else f"{database}-writer"
        self._fd: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Reentrant in one thread: a job run from a route that holds the lock takes it
        again without waiting for itself."""
        with self._thread_lock:
            if self._path is None or self._depth > 0:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                weakref.finalize(self, os.close, self._fd)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
                fcntl.flock(self._fd, fcntl.LOCK_UN)


_writers: weakref.WeakValueDictionary[tuple[int, str], Writer] = weakref.WeakValueDictionary()
_writers_lock = threading.Lock()


def writer(engine: sa.Engine) -> Writer | None:
    """The writer lock of a SQLite engine (None on PostgreSQL: row locks order writers).
    One per file in a process, while someone holds it: the routes and the jobs of one
    process queue on the same lock (two open files in one process would each wait for the
    other's `flock`)."""
    if not is_sqlite(engine):
        return None
    database = engine.url.database or ""
    key = (os.getpid(), database)
    with _writers_lock:
        found = _writers.get(key)
        if found is None:
            found = Writer(database)
            _writers[key] = found
    return found


@contextlib.contextmanager
def writing(engine: sa.Engine) -> Iterator[None]:
    """Hold the engine's writer lock (SQLite) around a write transaction; nothing on
    PostgreSQL."""
    lock = writer(engine)
    if lock is None:
        yield
        return
    with lock.held():
        yield


def reading(engine: sa.Engine) -> sa.Engine:
    """The same engine for read-only transactions (no write lock taken on SQLite)."""
    return engine.execution_options(sqlite_begin="DEFERRED")


def alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


migration_lock_key = 0x4B4F5049  # "KOPI": serialises `migrate` of several processes


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision; seed counters, the chain's phone-hash key
    and central's pseudo-device. One transaction; on PostgreSQL under an advisory lock, so
    several processes starting at once migrate one after another."""
    from central._clock import system_clock, to_ms
    from central._directory import ensure_chain

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(migration_lock_key)))
        command.upgrade(alembic_config(conn), "head")
        for name in ("change_seq", "change_floor"):
            present = conn.execute(
                sa.select(t.counters.c.value).where(t.counters.c.name == name)
            ).first()
            if present is None:
                conn.execute(sa.insert(t.counters).values(name=name, value=0))
        ensure_chain(conn, to_ms(system_clock()))
