"""The till database file: pragmas checked at start, migrations, refusal of newer files."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent._store import SCHEMA_VERSION, StorageError, TillStore, set_meta


def test_pragmas_are_wal_and_full(tmp_path: Path) -> None:
    store = TillStore(tmp_path / "till.db")
    assert store.pragmas() == {"journal_mode": "wal", "synchronous": 2}
    with sqlite3.connect(tmp_path / "till.db") as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_database_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    TillStore(tmp_path / "till.db").close()
    with sqlite3.connect(tmp_path / "till.db") as raw:
        raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer Kopilka agent"):
        TillStore(tmp_path / "till.db")


def test_reopening_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    store = TillStore(tmp_path / "till.db")
    with store.write() as db:
        set_meta(db, "greeting", "привет")
    store.close()
    again = TillStore(tmp_path / "till.db")
    assert again.meta("greeting") == "привет"


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = TillStore(tmp_path / "till.db")
    with pytest.raises(RuntimeError), store.write() as db:
        set_meta(db, "half", "done")
        raise RuntimeError("crash in the middle")
    assert store.meta("half") is None


def test_concurrent_writers_never_see_locked(tmp_path: Path) -> None:
    store = TillStore(tmp_path / "till.db")
    errors: list[BaseException] = []

    def bump(name: str) -> None:
        try:
            for _ in range(200):
                with store.write() as db:
                    row = db.execute("SELECT value FROM meta WHERE key = 'n'").fetchone()
                    set_meta(db, "n", str(int(row[0]) + 1 if row else 1))
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=bump, args=(str(i),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.meta("n") == "800"


def test_sales_do_not_checkpoint_the_background_job_does(tmp_path: Path) -> None:
    """Commits leave copying the WAL into the database file to `checkpoint`, which keeps
    writers and readers going, and leaves nothing of the log behind."""
    store = TillStore(tmp_path / "till.db")
    page = "x" * 3000
    with store.write() as db:
        db.execute("CREATE TABLE filler (n INTEGER PRIMARY KEY, body TEXT)")
    before = (tmp_path / "till.db").stat().st_size
    for n in range(1_500):  # past SQLite's default of 1,000 pages per automatic checkpoint
        with store.write() as db:
            db.execute("INSERT INTO filler (n, body) VALUES (?, ?)", [n, page])
    assert (tmp_path / "till.db").stat().st_size == before, "a commit copied the log"
    reader = sqlite3.connect(tmp_path / "till.db")
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM filler").fetchone()[0] == 1_500
    with store.write() as db:  # a writer is not held up by a reader's snapshot
        db.execute("INSERT INTO filler (n, body) VALUES (?, ?)", [1_500, page])
    assert store.checkpoint() > 0, "the open snapshot keeps the newest frames in the log"
    reader.rollback()
    reader.close()
    assert store.checkpoint() == 0
    assert (tmp_path / "till.db").stat().st_size > before + 1_500 * 3000
    with sqlite3.connect(tmp_path / "till.db") as raw:
        assert raw.execute("SELECT COUNT(*) FROM filler").fetchone()[0] == 1_501


def test_upgrade_to_schema_5_keeps_the_grants_a_till_gave(tmp_path: Path) -> None:
    """A till upgraded from schema 4 still knows which one-time grants its sales gave, so
    the customer's next sale does not offer them again."""
    from agent._entries import grants_given

    with _at_schema(tmp_path / "till.db", 4) as raw:
        raw.execute(
            "INSERT INTO grants_given(grant_key, customer_id) VALUES ('welcome:c-1', 'c-1')"
        )
    store = TillStore(tmp_path / "till.db")
    with store.read() as db:
        assert grants_given(db, "c-1") == {"welcome:c-1"}
        assert grants_given(db, "c-2") == set()
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "outbox_by_account" not in indexes
    with store.write() as db:  # the same grant again from the same customer's sale: no error
        db.execute(
            "INSERT OR IGNORE INTO grants_given(grant_key, customer_id) VALUES (?, ?)",
            ["welcome:c-1", "c-1"],
        )
    with store.read() as db:
        assert grants_given(db, "c-1") == {"welcome:c-1"}


def test_upgrade_to_schema_14_finds_the_identifiers_of_sign_ups_made_before(
    tmp_path: Path,
) -> None:
    """An erasure finds a member who signed up here by the identifiers of their sign-up:
    those of sign-ups made before schema 14 come from their records in the outbox."""
    signup = {
        "record": "signup",
        "provisional_customer_id": "p-1",
        "identifiers": [
            {"type": "card", "number": "2770000000024"},
            {"type": "phone_hash", "phone_hash": "ab" * 32},
        ],
    }
    with _at_schema(tmp_path / "till.db", 13) as raw:
        raw.execute(
            "INSERT INTO outbox(epoch, seq, record_id, record, payload, payload_sha256) "
            "VALUES (1, 1, 's-1', 'signup', ?, 'x')",
            [json.dumps(signup)],
        )
    store = TillStore(tmp_path / "till.db")
    with store.read() as db:
        rows = db.execute("SELECT kind, value, customer_id FROM signup_identifiers").fetchall()
    store.close()
    assert sorted(rows) == [("card", "2770000000024", "p-1"), ("phone_hash", "ab" * 32, "p-1")]


@contextlib.contextmanager
def _at_schema(path: Path, version: int) -> Iterator[sqlite3.Connection]:
    """A till database as an agent of schema `version` left it (closed on leaving)."""
    from agent._store import MIGRATIONS

    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("PRAGMA journal_mode=WAL")
        for number, script in enumerate(MIGRATIONS[:version], start=1):
            raw.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
        yield raw
    finally:
        raw.close()
