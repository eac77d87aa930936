"""The schema: migrations match the tables; the ledger's uniqueness holds in the database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from central import _db, migrate
from central import _tables as t


def test_migrations_build_exactly_the_declared_tables(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []


def test_migrate_twice_is_harmless(engine: sa.Engine) -> None:
    migrate(engine)
    with engine.connect() as conn:
        names = dict(conn.execute(sa.select(t.counters.c.name, t.counters.c.value)).all())
    assert names == {"change_seq": 0, "change_floor": 0}


def test_migration_names_the_customer_of_every_grant_already_given(db_url: str) -> None:
    """0004 fills `grants.customer_id` from the keys given before it, by their form."""
    from alembic import command

    engine = _db.make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_db.alembic_config(conn), "0003_lot_states")
            keys = ["welcome:c1", "referral:c2", "birthday:c1:x:2026", "promo:c3"]
            conn.execute(
                sa.text("INSERT INTO grants (grant_key, entry_id) VALUES (:key, :entry)"),
                [{"key": key, "entry": f"e{n}"} for n, key in enumerate(keys)],
            )
        migrate(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(t.grants.c.grant_key, t.grants.c.customer_id)).all()
            named = {key: customer for key, customer in rows}
    finally:
        engine.dispose()
    assert named == {
        "welcome:c1": "c1",
        "referral:c2": "c2",
        "birthday:c1:x:2026": "c1:x",
        "promo:c3": None,
    }


def _row(entry_id: str, seq: int) -> dict[str, object]:
    return {
        "entry_id": entry_id,
        "device_id": "d",
        "device_epoch": 1,
        "device_seq": seq,
        "kind": "earn",
        "account_key": "customer:c",
        "asset": "points",
        "amount": 1,
        "device_time_ms": 0,
        "received_ms": 0,
        "payload": b"{}",
        "payload_sha256": "0" * 64,
    }


@pytest.mark.parametrize(("second", "why"), [(("a", 2), "entry_id"), (("b", 1), "seq")])
def test_ledger_uniqueness_is_enforced_by_the_database(
    engine: sa.Engine, second: tuple[str, int], why: str
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(t.ledger), [_row("a", 1)])
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.insert(t.ledger), [_row(*second)])


def test_one_writer_per_sqlite_file_in_a_process_and_reentrant(tmp_path: Path) -> None:
    """The routes and the jobs of one process share the file's writer lock: a job run from
    a route that holds it takes it again at once, and another thread waits its turn."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'central.db'}")
    lock = _db.writer(engine)
    assert lock is not None
    assert _db.writer(sa.create_engine(f"sqlite:///{tmp_path / 'central.db'}")) is lock
    entered = threading.Event()

    def other() -> None:
        with _db.writing(engine):
            entered.set()

    with lock.held():
        with _db.writing(engine):  # the same thread again: no wait for itself
            thread = threading.Thread(target=other)
            thread.start()
        assert not entered.wait(0.3), "another thread got in while the lock was held"
    assert entered.wait(5), "the other thread never got the lock"
    thread.join()


def test_sqlite_writers_of_two_processes_take_turns(tmp_path: Path) -> None:
    """`_db.Writer` of another process (another open file, as a second `serve` worker has)
    waits until the holder lets go, and then gets the lock at once."""
    database = str(tmp_path / "central.db")
    first, second = _db.Writer(database), _db.Writer(database)
    entered = threading.Event()

    def other() -> None:
        with second.held():
            entered.set()

    with first.held():
        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.3), "the second writer got in while the first held the lock"
    assert entered.wait(5), "the second writer never got the lock"
    thread.join()
    assert _db.writer(sa.create_engine(f"sqlite:///{database}")) is not None
