"""Several central processes running the jobs at once do the work once: the lease lets one
in; and even without the lease, each unit of work is claimed in its own transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from central import _jobs, _lease, _lots, make_engine
from central import _tables as t
from central._clock import to_ms
from protocol import CardIdentifier

from .checks import assert_ledger_consistent
from .tills import NOW, Hq

racers = 4


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Start every call at the same moment on its own thread; their results (or errors)."""
    gate = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def runner(index: int) -> None:
        gate.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:  # noqa: BLE001 - the test inspects it
            results[index] = error

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_one_holder_at_a_time_until_the_lease_expires(engine: sa.Engine) -> None:
    now = to_ms(NOW)
    assert _lease.take(engine, "j", "a", now, 1000)
    assert not _lease.take(engine, "j", "b", now + 999, 1000)
    assert _lease.take(engine, "j", "a", now + 500, 1000)  # the holder extends it
    assert _lease.take(engine, "j", "b", now + 1500, 1000)  # expired: taken over
    _lease.release(engine, "j", "a")  # not a's any more: nothing happens
    assert not _lease.take(engine, "j", "a", now + 1600, 1000)
    _lease.release(engine, "j", "b")
    assert _lease.take(engine, "j", "a", now + 1600, 1000)


def test_racing_takers_on_separate_engines_get_one_lease(db_url: str, engine: sa.Engine) -> None:
    engines = [make_engine(db_url) for _ in range(racers)]
    try:
        now = to_ms(NOW)
        won = race(
            [
                lambda e=e, i=i: _lease.take(e, "race", f"h{i}", now, 60_000)
                for i, e in enumerate(engines)
            ]
        )
    finally:
        for other in engines:
            other.dispose()
    assert sorted(won) == [False] * (racers - 1) + [True]


def _expiring_lots(hq: Hq, customers: int) -> None:
    till = hq.enroll()
    for index in range(customers):
        hq.customer(f"c{index}")
    expires = NOW + timedelta(days=1)
    card = CardIdentifier(number="2770000000017")
    items = [till.entry(f"c{i}", 10 + i, expires_at=expires) for i in range(customers)]
    items.append(till.entry("", 5, account=card, activates_at=NOW + timedelta(days=1)))
    assert till.push(items).status_code == 200
    hq.post("/admin/customers/c0/cards", {"number": "2770000000017"})


def test_jobs_run_at_once_by_several_processes_do_the_work_once(
    hq: Hq, db_url: str, engine: sa.Engine
) -> None:
    _expiring_lots(hq, 12)
    later = NOW + timedelta(days=40)
    engines = [make_engine(db_url) for _ in range(racers)]
    try:
        for job in _jobs.JOBS:
            outcomes = race(
                [
                    lambda e=e, i=i, j=job: _jobs.run(e, j, later, f"p{i}")
                    for i, e in enumerate(engines)
                ]
            )
            assert all(isinstance(o, _jobs.Outcome) and o.error is None for o in outcomes), outcomes
            assert sum(o.ran for o in outcomes) >= 1
    finally:
        for other in engines:
            other.dispose()
    with engine.connect() as conn:
        expired = conn.execute(
            sa.select(sa.func.count()).where(t.ledger.c.kind == "expire")
        ).scalar_one()
        activated = conn.execute(
            sa.select(sa.func.count()).where(t.ledger.c.kind == "activate")
        ).scalar_one()
        merged = conn.execute(
            sa.select(sa.func.count()).where(t.ledger.c.kind == "merge")
        ).scalar_one()
    assert (expired, activated, merged) == (12, 1, 2)
    balances = assert_ledger_consistent(engine)
    assert balances[("customer:c0", "points")] == 5  # c0's lot expired, the card's 5 moved


def test_without_the_lease_each_lot_is_still_expired_once(
    hq: Hq, db_url: str, engine: sa.Engine
) -> None:
    """The lease is the first guard; the claim of each lot in the entries' transaction is the
    second: job bodies racing with no lease at all still expire each lot once."""
    _expiring_lots(hq, 12)
    later = NOW + timedelta(days=40)
    engines = [make_engine(db_url) for _ in range(racers)]
    try:
        outcomes = race([lambda e=e: _lots.expire(e, later) for e in engines])
    finally:
        for other in engines:
            other.dispose()
    done = sum(o[0] for o in outcomes if isinstance(o, tuple))
    failures = [o for o in outcomes if not isinstance(o, tuple)]
    assert done == 12  # a racer that lost a claim rolled back whole
    assert all(isinstance(f, RuntimeError) for f in failures), failures
    with engine.connect() as conn:
        expired = conn.execute(
            sa.select(sa.func.count()).where(t.ledger.c.kind == "expire")
        ).scalar_one()
    assert expired == 12
    assert_ledger_consistent(engine)


def test_a_move_waits_for_its_accounts_in_key_order_not_holding_the_source(
    hq: Hq, engine: sa.Engine
) -> None:
    """A push holding the target account and about to lock the source (key order: target
    `customer:c1` before source `customer:c2`) meets a move of c2 into c1. The move must wait
    for c1 holding nothing a push takes after it; had it locked its source first, the two
    would wait for each other and PostgreSQL would fail one of them as a deadlock."""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks: on SQLite one writer at a time, nobody holds a row")
    hq.customer("c1")
    hq.customer("c2")
    till = hq.enroll()
    assert till.push([till.entry("c1", 100), till.entry("c2", 50)]).status_code == 200
    accounts = t.accounts.c

    def lock(conn: sa.Connection, key: str) -> None:
        conn.execute(
            sa.select(accounts.balance).where(accounts.account_key == key).with_for_update()
        ).all()

    def merge() -> list[Any]:
        with engine.begin() as conn:
            return _lots.move(conn, "customer:c2", "customer:c1", NOW, "c2 merged into c1")

    mover: list[Any] = []
    thread = threading.Thread(target=lambda: mover.append(race([merge])[0]))
    with engine.connect() as pusher:
        with pusher.begin():
            pusher.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
            lock(pusher, "customer:c1")
            thread.start()
            assert _waiting_for_a_row_lock(engine)
            lock(pusher, "customer:c2")  # free: the move did not take its source first
        thread.join(30)
    assert not isinstance(mover[0], Exception), mover[0]
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 150


def _waiting_for_a_row_lock(engine: sa.Engine) -> bool:
    """Whether some session of this database waits for a lock, within 5 s (PostgreSQL)."""
    with engine.connect() as watch:
        for _ in range(100):
            waiting = watch.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).scalar_one()
            # pg_stat_activity is read once per transaction and kept until it ends: without
            # this, a first look taken before the other session waited was the only look
            watch.rollback()
            if waiting:
                return True
            time.sleep(0.05)
    return False
