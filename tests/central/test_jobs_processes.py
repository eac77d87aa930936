"""Two real `kopilka-central` processes run the jobs at the same moment on one database:
each job's work is done once, and `serve` runs the scheduler unless told `--no-jobs`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from agent._demo import wait_for
from central import _tables as t
from central import create_app, make_engine, migrate
from central._directory import issue_admin_token

from ..procfs import alive, children
from .checks import assert_ledger_consistent
from .conftest import FakeClock
from .tills import NOW, Hq

lots_expiring = 12
ready_timeout_s = 30.0


def _seed(hq: Hq) -> None:
    """Lots that expired long before the real clock's now, and one pending lot."""
    till = hq.enroll()
    for index in range(lots_expiring):
        hq.customer(f"c{index}")
    gone = NOW - timedelta(days=400)
    items = [till.entry(f"c{i}", 10 + i, expires_at=gone) for i in range(lots_expiring)]
    items.append(till.entry("c0", 7, activates_at=NOW - timedelta(days=1)))
    assert till.push(items).status_code == 200


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.ledger.c.kind, sa.func.count()).group_by(t.ledger.c.kind)
        ).all()
    return {row[0]: row[1] for row in rows}


def _seeded(postgres_url: str) -> tuple[sa.Engine, str, str]:
    """A migrated PostgreSQL database with `_seed`'s data; its engine, URL and admin token."""
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        token = issue_admin_token(conn, "tests", 0)
    with TestClient(create_app(engine=engine, clock=FakeClock())) as client:
        _seed(Hq(client, token))
    return engine, url, token


@pytest.mark.postgres
def test_two_job_processes_at_once_do_the_work_once(postgres_url: str) -> None:
    engine, db_url, _ = _seeded(postgres_url)
    argv = [sys.executable, "-m", "central.cli", "jobs", "--once", "--db", db_url]
    procs = [
        subprocess.Popen([*argv, "--holder", f"p{i}"], stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outcomes = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        outcomes += [json.loads(line) for line in out.splitlines()]
    by_job: dict[str, list[dict[str, object]]] = {}
    for outcome in outcomes:
        by_job.setdefault(str(outcome["job"]), []).append(outcome)
    assert all(any(o["ran"] for o in runs) for runs in by_job.values())
    assert sum(int(str(o["items"])) for o in by_job["expire"]) == lots_expiring
    assert sum(int(str(o["items"])) for o in by_job["activate"]) == 1
    counts = _counts(engine)
    assert (counts["expire"], counts["activate"]) == (lots_expiring, 1)
    assert_ledger_consistent(engine)
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _serve(db_url: str, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    argv = [sys.executable, "-m", "central.cli", "serve", "--db", db_url, "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen([*argv, *extra], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(log.read_text()[-2000:])


@pytest.mark.postgres
def test_two_serve_processes_run_the_scheduler_and_do_the_work_once(
    postgres_url: str, tmp_path: Path
) -> None:
    engine, url, _ = _seeded(postgres_url)
    servers = [_serve(url, tmp_path / f"central{i}.log") for i in range(2)]
    try:
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            counts = _counts(engine)
            if counts.get("expire") == lots_expiring and counts.get("activate") == 1:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # let both schedulers' first runs finish
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=15)
    counts = _counts(engine)
    assert (counts["expire"], counts["activate"]) == (lots_expiring, 1)
    with engine.connect() as conn:
        expire = conn.execute(sa.select(t.job_state).where(t.job_state.c.name == "expire")).one()
        holders = set(conn.execute(sa.select(t.job_state.c.last_holder)).scalars())
    assert expire.runs >= 1
    assert expire.items_total == lots_expiring
    assert len(holders) >= 1
    assert_ledger_consistent(engine)
    engine.dispose()


def _children(pid: int) -> list[int]:
    """The processes `pid` spawned with multiprocessing (not its resource tracker)."""
    return [child for child in sorted(children(pid)) if b"spawn_main" in _cmdline(child)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_serve_runs_the_jobs_in_a_child_at_lower_priority_restarts_it_and_takes_it_down(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'central.db'}"
    proc, _ = _serve(db_url, tmp_path / "central.log")
    try:
        (jobs,) = wait_for(lambda: _children(proc.pid), "the jobs process")
        lower = _nice(proc.pid) + 10
        wait_for(lambda: _nice(jobs) == lower, "the jobs process at nice 10")
        engine = make_engine(db_url).execution_options(sqlite_begin="DEFERRED")

        def holders() -> set[str]:
            with engine.connect() as conn:
                return set(conn.execute(sa.select(t.job_state.c.last_holder)).scalars())

        wait_for(lambda: any(f":{jobs}:" in str(h) for h in holders()), "a job run by it")
        os.kill(jobs, signal.SIGKILL)
        (again,) = wait_for(lambda: [c for c in _children(proc.pid) if c != jobs], "a new one")
        wait_for(lambda: _nice(again) == lower, "the new one at nice 10")
        proc.kill()
        proc.wait(timeout=15)
        wait_for(lambda: not alive(again), "the jobs process to die with serve")
        engine.dispose()
    finally:
        proc.kill()
        proc.wait(timeout=15)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_jobs_process_whose_serve_died_while_it_started_does_not_linger(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'central.db'}"
    argv = [sys.executable, "-m", "central.cli", "serve", "--db", db_url]
    proc = subprocess.Popen([*argv, "--port", str(_free_port())], stderr=subprocess.DEVNULL)
    try:
        (jobs,) = wait_for(
            lambda: _children(proc.pid) if proc.poll() is None else [-1], "the jobs process"
        )
        assert jobs > 0, "serve exited"
        proc.kill()  # before the child could have asked to die with its parent
        proc.wait(timeout=15)
        wait_for(lambda: not alive(jobs), "the jobs process to die with serve")
    finally:
        proc.kill()
        proc.wait(timeout=15)


def test_jobs_command_runs_the_chosen_job_every_n_seconds(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'central.db'}"
    migrate(make_engine(db_url))
    argv = [sys.executable, "-m", "central.cli", "jobs", "--db", db_url]
    proc = subprocess.Popen([*argv, "--job", "holds", "--every-s", "1"], stderr=subprocess.DEVNULL)
    engine = make_engine(db_url).execution_options(sqlite_begin="DEFERRED")

    def runs() -> dict[str, int]:
        with engine.connect() as conn:
            return dict(conn.execute(sa.select(t.job_state.c.name, t.job_state.c.runs)).all())

    try:
        wait_for(lambda: runs().get("holds", 0) >= 3, "three runs of holds")
        assert set(runs()) == {"holds"}, "only the chosen job runs"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        engine.dispose()
