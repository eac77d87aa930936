"""The till database file: pragmas checked at start, migrations, refusal of newer files."""

from __future__ import annotations

import sqlite3
import threading
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
