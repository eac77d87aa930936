"""The till's SQLite file: pragmas, numbered migrations, write transactions, and a read-only
snapshot for readers outside the agent.

One file in WAL mode with `synchronous=FULL`: a transaction that returned is on disk. Every
write runs in `BEGIN IMMEDIATE`, so the writer lock is taken before anything is read and two
writers never deadlock on an upgrade; a busy database is waited on (`busy_timeout_ms`) and
retried, never reported to the caller as "database is locked".
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlite_utils

busy_timeout_ms = 5000
write_retries_max = 20
wal_autocheckpoint_pages = 10_000
"""A commit checkpoints by itself only past this (40 MB of WAL). Below it, checkpoints run in
the background (`TillStore.checkpoint`, a scheduled job of the agent): a commit that copied the
default 1,000 pages into the database file took ten times longer, and one sale in forty paid
it."""

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE customers (
        customer_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        state TEXT NOT NULL,
        first_name TEXT NOT NULL DEFAULT '',
        change_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE identifiers (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        customer_id TEXT NOT NULL REFERENCES customers(customer_id) ON DELETE CASCADE,
        PRIMARY KEY (kind, value)
    );
    CREATE INDEX identifiers_by_customer ON identifiers(customer_id);
    CREATE TABLE rule_sets (
        content_hash TEXT PRIMARY KEY,
        rule_set_id TEXT NOT NULL,
        effective_from TEXT NOT NULL,
        document TEXT NOT NULL
    );
    CREATE TABLE cheques (
        cheque_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        account_key TEXT,
        hold_mode TEXT NOT NULL DEFAULT 'none',
        points_held INTEGER NOT NULL DEFAULT 0,
        reserved_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        reservation TEXT NOT NULL,
        fiscal_document TEXT,
        finished_response TEXT,
        refunds TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX cheques_open ON cheques(state, expires_at);
    CREATE TABLE refunds (
        refund_id TEXT PRIMARY KEY,
        cheque_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        response TEXT NOT NULL
    );
    CREATE TABLE outbox (
        epoch INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        record_id TEXT NOT NULL UNIQUE,
        record TEXT NOT NULL,
        account_key TEXT,
        asset TEXT,
        amount INTEGER NOT NULL DEFAULT 0,
        kind TEXT,
        offline INTEGER NOT NULL DEFAULT 0,
        activates_at TEXT,
        payload TEXT NOT NULL,
        payload_sha256 TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'local',
        ack_change_seq INTEGER,
        PRIMARY KEY (epoch, seq)
    );
    CREATE INDEX outbox_by_state ON outbox(state, epoch, seq);
    CREATE INDEX outbox_by_account ON outbox(account_key, state);
    """,
    # 2: sign-up at the till
    """
    CREATE TABLE signups (
        signup_id TEXT PRIMARY KEY,
        request_hash TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        response TEXT NOT NULL
    );
    """,
    # 3: covering partial indexes for the sale path, whose reads must not grow with the
    # outbox or the cheque history (a till offline for a week has thousands of rows)
    """
    CREATE INDEX outbox_offline_burns ON outbox(account_key, amount)
        WHERE record = 'entry' AND kind = 'burn' AND offline = 1 AND state = 'local';
    CREATE INDEX outbox_points ON outbox(account_key, state, ack_change_seq, amount, activates_at)
        WHERE record = 'entry' AND asset = 'points';
    CREATE INDEX cheques_held ON cheques(account_key, hold_mode, points_held)
        WHERE state = 'reserved';
    """,
    # 4: one-time grants (welcome, birthday, referral) this till gave, by the customer whose
    # sale earned them: the next sale must not offer them again before central's state has them
    """
    CREATE TABLE grants_given (
        grant_key TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL
    );
    CREATE INDEX grants_given_by_customer ON grants_given(customer_id);
    """,
    # 5: fewer b-trees written per sale, so fewer pages in each durable commit: the balance
    # view reads an account's entries through `outbox_points`, never `outbox_by_account`; a
    # grant is read by the customer whose sale gave it, so that is the key of its one tree
    """
    DROP INDEX outbox_by_account;
    CREATE TABLE grants_given_by_sale (
        customer_id TEXT NOT NULL,
        grant_key TEXT NOT NULL,
        PRIMARY KEY (customer_id, grant_key)
    ) WITHOUT ROWID;
    INSERT INTO grants_given_by_sale(customer_id, grant_key)
        SELECT customer_id, grant_key FROM grants_given;
    DROP TABLE grants_given;
    ALTER TABLE grants_given_by_sale RENAME TO grants_given;
    """,
    # 6: a reservation's document (some 7 KB, written once) in a table of its own: the
    # cheque's row changes at confirm, void and refund, and a row that held the document
    # was written again whole, overflow pages and all
    """
    CREATE TABLE reservations (
        cheque_id TEXT PRIMARY KEY,
        document TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO reservations(cheque_id, document) SELECT cheque_id, reservation FROM cheques;
    ALTER TABLE cheques DROP COLUMN reservation;
    """,
    # 7: the till's points spent offline and not yet acknowledged, kept as a running total
    # by triggers: summing them from the outbox made every sale read every offline burn
    # since the last push (a week offline: thousands of rows per sale)
    """
    CREATE TABLE offline_burns (
        only INTEGER PRIMARY KEY CHECK (only = 1),
        points INTEGER NOT NULL
    );
    INSERT INTO offline_burns(only, points)
        SELECT 1, COALESCE(SUM(-amount), 0) FROM outbox
        WHERE record = 'entry' AND kind = 'burn' AND offline = 1 AND state = 'local';
    CREATE TRIGGER offline_burn_made AFTER INSERT ON outbox
        WHEN NEW.record = 'entry' AND NEW.kind = 'burn' AND NEW.offline = 1
            AND NEW.state = 'local'
        BEGIN UPDATE offline_burns SET points = points - NEW.amount; END;
    CREATE TRIGGER offline_burn_settled AFTER UPDATE OF state ON outbox
        WHEN NEW.record = 'entry' AND NEW.kind = 'burn' AND NEW.offline = 1
            AND (OLD.state = 'local') <> (NEW.state = 'local')
        BEGIN UPDATE offline_burns SET points = points
            + CASE WHEN NEW.state = 'local' THEN -NEW.amount ELSE NEW.amount END; END;
    """,
    # 8: the lines each refund returned (`{line_id: quantity_milli}`): refunds here of a
    # cheque sold at another till add up to at most what its lines sold
    """
    ALTER TABLE refunds ADD COLUMN returned TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX refunds_by_cheque ON refunds(cheque_id);
    """,
    # 9: an account's counter entries (purchases, stamps, rolling spend) not yet in central's
    # state, which a sale adds to it before it evaluates: found by key, as `outbox_points`
    # finds its points (read from the whole outbox, a quote took 7 ms after 2,000 sales)
    """
    CREATE INDEX outbox_counters ON outbox(account_key, asset, state, ack_change_seq, amount)
        WHERE record = 'entry' AND kind = 'counter';
    """,
    # 10: the change that brought a customer's points balance, apart from their other changes:
    # a snapshot's balances carry its `as_of`, and a till's acknowledged entries up to it are
    # in them, although the cursor moves there only with the snapshot's last page
    """
    ALTER TABLE customers ADD COLUMN points_seq INTEGER NOT NULL DEFAULT 0;
    """,
    # 11: the same for each counter (`{asset: change_seq}`): a snapshot cut short after a
    # customer's rolling spend counted the till's acknowledged sales in it twice
    """
    ALTER TABLE customers ADD COLUMN counter_seqs TEXT NOT NULL DEFAULT '{}';
    """,
    # 12: which cheque a refund of another till's cheque returned from (the hash of the POS's
    # `original_basket`): POS cheque numbers repeat across tills, so one id can name several
    # cheques; NULL for refunds of this till's own cheques and for those made before
    """
    ALTER TABLE refunds ADD COLUMN original_hash TEXT;
    """,
    # 13: a till stores a phone only as its keyed hash (PRODUCT.md): reservations made before
    # kept the phone the POS typed. Nothing reads it back (the cheque's account and customer
    # are kept beside it): it becomes the customer's id, as an erasure leaves it, or `removed`
    """
    UPDATE reservations SET document = json_set(document, '$.request.customer',
        json_object('type', 'customer', 'value', json_extract(document, '$.customer.customer_id')))
    WHERE json_extract(document, '$.request.customer.type') = 'phone'
        AND json_extract(document, '$.customer.customer_id') IS NOT NULL;
    UPDATE reservations SET document = json_set(document, '$.request.customer.value', 'removed')
    WHERE json_extract(document, '$.request.customer.type') = 'phone'
        AND json_extract(document, '$.request.customer.value') NOT LIKE 'hashed:%';
    """,
    # 14: the identifiers each sign-up here was made with, by identifier: an erasure names the
    # customer by central's id and identifiers, and a provisional customer whose identifiers
    # went to central's customer of that person is found here (the cache no longer links them)
    """
    CREATE TABLE signup_identifiers (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        PRIMARY KEY (kind, value, customer_id)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO signup_identifiers(kind, value, customer_id)
        SELECT json_extract(i.value, '$.type'),
            COALESCE(json_extract(i.value, '$.number'), json_extract(i.value, '$.phone_hash'),
                json_extract(i.value, '$.token')),
            json_extract(o.payload, '$.provisional_customer_id')
        FROM outbox AS o, json_each(o.payload, '$.identifiers') AS i
        WHERE o.record = 'signup';
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StorageError(RuntimeError):
    """The database file cannot be used: written by a newer version, or its pragmas are off."""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA wal_autocheckpoint={wal_autocheckpoint_pages}")
    return conn


def _pragmas(conn: sqlite3.Connection) -> dict[str, object]:
    return {
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
    }


def _check_pragmas(conn: sqlite3.Connection) -> None:
    found = _pragmas(conn)
    if found != {"journal_mode": "wal", "synchronous": 2}:
        raise StorageError(f"till database pragmas are {found}, expected WAL with synchronous=FULL")


def _newer(path: Path, version: int) -> StorageError:
    return StorageError(
        f"{path} was written by a newer Kopilka agent (schema {version}, this one knows "
        f"{SCHEMA_VERSION}); upgrade the agent, do not downgrade it"
    )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise _newer(path, version)
    for number in range(version + 1, SCHEMA_VERSION + 1):
        conn.executescript(
            f"BEGIN IMMEDIATE; {MIGRATIONS[number - 1]}; PRAGMA user_version={number}; COMMIT;"
        )


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite_utils.Database]:
    """One snapshot of the till database for a reader outside the agent (`kopilka-agent
    status`): opened read-only, so it is never created, migrated or written, and never waits
    for a writer, however long the agent's or the sync's transaction takes."""
    if not path.exists():
        raise StorageError(
            f"there is no till database ({path}): the agent has never run with this data_dir, "
            f"or its data is gone"
        )
    if not path.is_file():
        raise StorageError(f"{path} is not a till database (not a file)")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        _check_schema(conn, path)
        conn.execute("BEGIN")
        yield sqlite_utils.Database(conn, execute_plugins=False)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """A till database this agent can read, as it is (an older schema has what is read)."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise StorageError(f"{path} is not a till database ({error})") from error
    if version == 0:
        raise StorageError(f"{path} is not a till database (it has no schema version)")
    if version > SCHEMA_VERSION:
        raise _newer(path, version)


class TillStore:
    """The till database: one connection per thread, writes in `BEGIN IMMEDIATE`.

    `commit_hook`, if given, is called with "before" and "after" around every COMMIT: crash
    tests use it to pause a real process exactly there and kill it.
    """

    def __init__(self, path: Path | str, commit_hook: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._commit_hook = commit_hook
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = threading.Lock()
        first = self._conn()
        _check_pragmas(first)
        _migrate(first, self.path)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite_utils.Database(self._conn(), execute_plugins=False)
            self._local.db = db
        return db

    def pragmas(self) -> dict[str, object]:
        return _pragmas(self._conn())

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction: all of it reaches the disk, or none of it.

        Writers of this process queue on a lock (handed over at once, where SQLite's busy
        handler would sleep in steps of up to 100 ms); other processes are waited for by
        `busy_timeout_ms`.
        """
        conn = self._conn()
        with self._writer:
            self._begin(conn)
            try:
                yield self.db
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._commit(conn)

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite_utils.Database]:
        """A consistent snapshot for several reads."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield self.db
        finally:
            conn.execute("COMMIT")

    def _begin(self, conn: sqlite3.Connection) -> None:
        for attempt in range(write_retries_max):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
                time.sleep(0.001 * (attempt + 1))
        conn.execute("BEGIN IMMEDIATE")

    def _commit(self, conn: sqlite3.Connection) -> None:
        if self._commit_hook is not None:
            self._commit_hook("before")
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if self._commit_hook is not None:
            self._commit_hook("after")

    def checkpoint(self) -> int:
        """Copy committed pages from the WAL into the database file without waiting for, or
        blocking, readers and writers (`PASSIVE`); returns the WAL frames not yet copied."""
        _, frames, copied = self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return max(int(frames) - int(copied), 0)

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


def set_meta(db: sqlite_utils.Database, key: str, value: str) -> None:
    """Inside a write transaction: remember `key`."""
    db.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )
