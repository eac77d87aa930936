"""Real central processes: two on one database at once, `serve --workers 2`, SIGKILL
mid-push, lost replies."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from central import _tables as t
from central import make_engine, migrate
from central._clock import system_clock, to_ms
from central._directory import issue_admin_token
from protocol import EntryKind, PullResponse

from ..faultproxy import Fault, FaultProxy
from .checks import assert_ledger_consistent
from .servers import CentralProcess
from .tills import Hq, Till

pytestmark = pytest.mark.slow
customers_count = 8


def _prepare(db_url: str) -> tuple[sa.Engine, str]:
    engine = make_engine(db_url)
    migrate(engine)
    with engine.begin() as conn:
        token = issue_admin_token(conn, "tests", to_ms(system_clock()))
    _open_engines.append(engine)
    return engine, token


_open_clients: list[httpx.Client] = []
_open_engines: list[sa.Engine] = []


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[CentralProcess]]:
    processes: list[CentralProcess] = []
    yield processes
    while _open_clients:
        _open_clients.pop().close()
    for process in processes:
        process.stop()
    while _open_engines:
        _open_engines.pop().dispose()


def _hq(url: str, token: str) -> Hq:
    client = httpx.Client(base_url=url, timeout=30)
    _open_clients.append(client)
    return Hq(client, token)


def _count(engine: sa.Engine, device_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(t.ledger)
                .where(t.ledger.c.device_id == device_id)
            ).scalar_one()
        )


def test_two_processes_many_devices_one_database(
    db_url: str, tmp_path: Path, started: list[CentralProcess]
) -> None:
    """On PostgreSQL row locks order the two processes; on SQLite the writer lock beside the
    file (`central._db.Writer`) and `BEGIN IMMEDIATE` do."""
    engine, token = _prepare(db_url)
    for index in range(2):
        started.append(CentralProcess(db_url, tmp_path / f"central-{index}.log"))
    threads = [threading.Thread(target=p.start) for p in started]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    urls = [p.url for p in started]
    hq = _hq(urls[0], token)
    for index in range(customers_count):
        hq.customer(f"c{index}")
    tills = [hq.enroll() for _ in range(12)]
    clients = [httpx.Client(base_url=url, timeout=60) for url in urls]
    served = [0, 0]
    pulled: list[Any] = []
    writing = threading.Event()
    writing.set()
    errors: list[BaseException] = []

    def device(number: int, till: Till) -> None:
        rng = random.Random(number)
        try:
            for batch in range(8):
                items = [
                    till.entry(
                        f"c{rng.randrange(customers_count)}",
                        rng.choice([-3, 5, 7, 11]),
                        EntryKind.earn,
                    )
                    for _ in range(15)
                ]
                targets = [batch % 2, 1 - batch % 2] if batch % 3 == 0 else [batch % 2]
                # Every third batch goes to both processes at once: the device row lock
                # makes one apply it and the other acknowledge it as a duplicate.
                body = till.body(items)
                with ThreadPoolExecutor(len(targets)) as pool:
                    futures = [
                        pool.submit(
                            clients[target].post, "/sync/push", json=body, headers=till.headers
                        )
                        for target in targets
                    ]
                    responses = [future.result() for future in futures]
                outcomes = []
                for target, response in zip(targets, responses, strict=True):
                    assert response.status_code == 200, response.text
                    served[target] += 1
                    outcomes.append(sorted({r["outcome"] for r in response.json()["results"]}))
                assert sorted(outcomes) == (
                    [["applied"], ["duplicate"]] if len(targets) == 2 else [["applied"]]
                )
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    def puller() -> None:
        cursor = 0
        reader = tills[0]
        try:
            while True:
                done = not writing.is_set()
                response = clients[1].get(
                    "/sync/pull", params={"since": cursor, "limit": 50}, headers=reader.headers
                )
                page = PullResponse.model_validate(response.json())
                pulled.extend(page.changes)
                cursor = page.next_cursor
                if done and not page.more:
                    return
                if not page.more:
                    time.sleep(0.01)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    pull_thread = threading.Thread(target=puller)
    pull_thread.start()
    workers = [threading.Thread(target=device, args=(n, till)) for n, till in enumerate(tills)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    writing.clear()
    pull_thread.join(timeout=60)
    assert errors == []
    assert served[0] > 0, "process 0 served no push"
    assert served[1] > 0, "process 1 served no push"
    balances = assert_ledger_consistent(engine)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(t.ledger)).scalar_one()
        top = conn.execute(sa.select(sa.func.max(t.change_log.c.change_seq))).scalar_one()
    assert total == 12 * 8 * 15
    assert sum(len(till.outbox) for till in tills) == total
    seqs = [change.change_seq for change in pulled]
    assert seqs == list(range(1, top + 1)), "the puller skipped or repeated a change"
    seen: dict[tuple[str, str], int] = {}
    for change in pulled:
        if change.type == "balance":
            seen[(f"customer:{change.account.customer_id}", change.asset)] = change.balance
    assert seen == balances
    for client in clients:
        client.close()


def _total(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.ledger)).scalar_one())


def _batch(till: Till, size: int) -> list[Any]:
    return [till.entry(f"c{index % customers_count}", 1) for index in range(size)]


def _hold_change_counter(engine: sa.Engine) -> sa.Connection:
    conn = engine.connect()
    conn.execute(
        sa.select(t.counters.c.value).where(t.counters.c.name == "change_seq").with_for_update()
    )
    return conn


def _wait_for_lock_waiter(engine: sa.Engine) -> None:
    query = sa.text(
        "select count(*) from pg_stat_activity where datname = current_database() "
        "and wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one() > 0:
                return
        time.sleep(0.02)
    raise AssertionError("central never reached the change counter")


def test_sigkill_mid_push_leaves_all_or_nothing(
    db_url: str, tmp_path: Path, started: list[CentralProcess]
) -> None:
    engine, token = _prepare(db_url)
    central = CentralProcess(db_url, tmp_path / "central.log").start()
    started.append(central)
    hq = _hq(central.url, token)
    for index in range(customers_count):
        hq.customer(f"c{index}")
    till = hq.enroll()
    items = _batch(till, 400)
    blocker = _hold_change_counter(engine) if engine.dialect.name == "postgresql" else None
    outcome: list[Any] = []

    def send() -> None:
        try:
            outcome.append(
                httpx.post(
                    f"{central.url}/sync/push",
                    json=till.body(items),
                    headers=till.headers,
                    timeout=30,
                )
            )
        except httpx.TransportError as error:
            outcome.append(error)

    sender = threading.Thread(target=send)
    sender.start()
    if blocker is not None:
        # The push has written its entries and accounts and now waits for the counter:
        # the very middle of its transaction.
        _wait_for_lock_waiter(engine)
    else:
        time.sleep(0.15)
    central.kill()
    sender.join(timeout=30)
    if blocker is not None:
        blocker.rollback()
        blocker.close()
        assert isinstance(outcome[0], httpx.TransportError)
    landed = _count(engine, till.device_id)
    assert landed in (0, len(items))
    if blocker is not None:
        assert landed == 0
    central.start()
    client = httpx.Client(base_url=central.url, timeout=30)
    response = client.post("/sync/push", json=till.body(items), headers=till.headers)
    assert response.status_code == 200, response.text
    assert response.json()["acked_through"] == len(items)
    again = client.post("/sync/push", json=till.body(items), headers=till.headers)
    assert {r["outcome"] for r in again.json()["results"]} == {"duplicate"}
    assert _count(engine, till.device_id) == len(items)
    assert_ledger_consistent(engine)
    client.close()


@pytest.mark.parametrize("landed_first", [1, 300])
def test_sigkill_during_group_commit_leaves_each_batch_all_or_nothing(
    db_url: str, tmp_path: Path, started: list[CentralProcess], landed_first: int
) -> None:
    """Several devices push at once, so on SQLite their batches are written in groups
    (`central._group`); a SIGKILL while they are being written (once `landed_first` of the
    5,400 entries are in) leaves each batch wholly there or wholly absent, and every till's
    retry then lands."""
    engine, token = _prepare(db_url)
    central = CentralProcess(db_url, tmp_path / "central.log").start()
    started.append(central)
    hq = _hq(central.url, token)
    for index in range(customers_count):
        hq.customer(f"c{index}")
    tills = [hq.enroll() for _ in range(6)]
    batches = [[_batch(till, 300) for _ in range(3)] for till in tills]

    def device(till: Till, mine: list[list[Any]]) -> None:
        with httpx.Client(base_url=central.url, timeout=30) as client:
            for items in mine:
                try:
                    response = client.post(
                        "/sync/push", json=till.body(items), headers=till.headers
                    )
                except httpx.TransportError:
                    return
                assert response.status_code == 200, response.text

    senders = [
        threading.Thread(target=device, args=pair) for pair in zip(tills, batches, strict=True)
    ]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 20
    while _total(engine) < landed_first and time.monotonic() < deadline:
        time.sleep(0.002)
    central.kill()
    for sender in senders:
        sender.join(timeout=30)
    for till in tills:
        assert _count(engine, till.device_id) % 300 == 0  # whole batches only
    assert_ledger_consistent(engine)
    central.start()
    client = httpx.Client(base_url=central.url, timeout=30)
    _open_clients.append(client)
    for till, mine in zip(tills, batches, strict=True):
        for items in mine:
            response = client.post("/sync/push", json=till.body(items), headers=till.headers)
            assert response.status_code == 200, response.text
        assert _count(engine, till.device_id) == 900
    assert_ledger_consistent(engine)


def test_lost_reply_and_duplicate_through_the_fault_proxy(
    db_url: str, tmp_path: Path, started: list[CentralProcess]
) -> None:
    engine, token = _prepare(db_url)
    central = CentralProcess(db_url, tmp_path / "central.log").start()
    started.append(central)
    hq = _hq(central.url, token)
    for index in range(customers_count):
        hq.customer(f"c{index}")
    till = hq.enroll()
    with FaultProxy(central.port) as proxy, httpx.Client(base_url=proxy.url, timeout=30) as client:
        first = _batch(till, 50)
        proxy.inject(Fault.lose_reply)
        with pytest.raises(httpx.TransportError):
            client.post("/sync/push", json=till.body(first), headers=till.headers)
        assert _count(engine, till.device_id) == len(first)  # it went through
        retry = client.post("/sync/push", json=till.body(first), headers=till.headers)
        assert {r["outcome"] for r in retry.json()["results"]} == {"duplicate"}
        second = _batch(till, 30)
        proxy.inject(Fault.drop)
        with pytest.raises(httpx.TransportError):
            client.post("/sync/push", json=till.body(second), headers=till.headers)
        assert _count(engine, till.device_id) == len(first)
        proxy.inject(Fault.duplicate)
        landed = client.post("/sync/push", json=till.body(second), headers=till.headers)
        assert {r["outcome"] for r in landed.json()["results"]} == {"duplicate"}
        assert proxy.applied == [Fault.lose_reply, Fault.drop, Fault.duplicate]
    assert _count(engine, till.device_id) == len(first) + len(second)
    assert_ledger_consistent(engine)


def _children(pid: int) -> list[int]:
    listed = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in listed.read_text().split()] if listed.exists() else []


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _workers_of(central: CentralProcess) -> list[int]:
    assert central.process is not None
    return [
        pid
        for pid in _children(central.process.pid)
        if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_serve_workers_share_the_connections_and_die_with_serve(
    db_url: str, tmp_path: Path, started: list[CentralProcess]
) -> None:
    """`serve --workers 2`: each worker listens with a socket of its own (SO_REUSEPORT), so
    tills connecting at once land on both; the workers end with `serve`, even on SIGKILL."""
    engine, token = _prepare(db_url)
    central = CentralProcess(db_url, tmp_path / "central.log", workers=2).start()
    started.append(central)
    hq = _hq(central.url, token)
    for index in range(customers_count):
        hq.customer(f"c{index}")
    tills = [hq.enroll() for _ in range(12)]
    workers = _workers_of(central)
    assert len(workers) == 2
    before = [_cpu_ticks(pid) for pid in workers]

    def device(till: Till) -> None:
        with httpx.Client(base_url=central.url, timeout=60) as client:
            for _ in range(4):
                body = till.body(_batch(till, 60))
                response = client.post("/sync/push", json=body, headers=till.headers)
                assert response.status_code == 200, response.text

    with ThreadPoolExecutor(len(tills)) as pool:
        list(pool.map(device, tills))
    used = [_cpu_ticks(pid) - ticks for pid, ticks in zip(workers, before, strict=True)]
    assert min(used) > 0, f"one worker served nothing: {used} CPU ticks"
    assert sum(_count(engine, till.device_id) for till in tills) == 12 * 4 * 60
    assert_ledger_consistent(engine)
    central.kill()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived serve"
        time.sleep(0.05)
