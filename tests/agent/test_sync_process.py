"""The sync process's supervisor and its wake-up, with real child processes and a real file.

End to end (it syncs, it is restarted after SIGKILL, it never outlives the agent):
`tests/e2e/test_sync_process.py`."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent._clock import ManualClock
from agent._config import AgentSettings
from agent._errors import HoldRefused
from agent._sales import Till
from agent._service import AgentService
from agent._sync import CREDENTIAL_FILE, Credential, SyncClient
from agent._syncprocess import SyncProcess, sync_step, wait_for_turn

from .conftest import make_settings
from .test_sync_apply import GRANTED, HOLD, REFUSED


def _died(process: SyncProcess) -> None:
    """Waits for the child, which cannot sync without a credential, to exit."""
    assert process.process is not None
    process.process.join(60)
    assert process.process.exitcode == 1


def test_a_sync_process_that_keeps_dying_is_restarted_after_growing_pauses(
    till: Till, clock: ManualClock, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "agent")  # the till's folder, never enrolled
    supervisor = SyncProcess(settings, till.store, clock)
    try:
        supervisor.keep_running()
        first = supervisor.status()["pid"]
        _died(supervisor)
        supervisor.keep_running()  # the first death: restarted at once
        assert supervisor.status()["restarts"] == 1
        assert supervisor.status()["pid"] not in (None, first)
        _died(supervisor)
        supervisor.keep_running()  # the second in a row: after a pause
        assert supervisor.status() == {"pid": None, "restarts": 2}
        assert till.store.meta("online") == "0"
        error = till.store.meta("last_sync_error")
        assert error == "the sync process stopped (exit code 1); restarting it in 4 s"
        clock.advance(3.9)
        supervisor.keep_running()
        assert supervisor.status()["pid"] is None
        clock.advance(0.1)
        supervisor.keep_running()
        assert supervisor.status()["pid"] is not None
        clock.advance(300)  # this one ran long enough to count as a first death again
        _died(supervisor)
        supervisor.keep_running()
        assert supervisor.status()["restarts"] == 3
        assert supervisor.status()["pid"] is not None
    finally:
        supervisor.stop()
    assert supervisor.status()["pid"] is None
    supervisor.keep_running()  # stopped for good: the agent is shutting down
    assert supervisor.status()["pid"] is None


def _service(
    tmp_path: Path,
    clock: ManualClock,
    answer: httpx.Response | None,
    checkpoint_s: float = 2.0,
) -> AgentService:
    def handler(request: httpx.Request) -> httpx.Response:
        if answer is None:
            raise httpx.ConnectError("no route to central", request=request)
        return answer

    data_dir = tmp_path / "enrolled"
    make_settings(data_dir)
    credential = Credential("http://central", "d-1", 1, "s" * 40)
    (data_dir / CREDENTIAL_FILE).write_text(json.dumps(credential.__dict__))
    settings = AgentSettings(
        data_dir=data_dir,
        api_token="t" * 32,
        central_url="http://central",
        wal_checkpoint_interval_s=checkpoint_s,
    )
    return AgentService(settings, clock=clock, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("answer", "wakes"),
    [
        (httpx.Response(200, json=GRANTED), True),
        (httpx.Response(409, json=REFUSED), True),
        (httpx.Response(503, json=REFUSED), False),
        (None, False),
    ],
)
def test_an_answer_to_a_hold_in_the_pos_process_wakes_the_sync_process(
    tmp_path: Path, clock: ManualClock, answer: httpx.Response | None, wakes: bool
) -> None:
    """The hold is asked from the POS process; the backoff it ends is the sync process's."""
    service = _service(tmp_path, clock, answer)
    service._connect()
    assert service.sync_process is not None
    assert service.till.central_hold is not None
    with contextlib.suppress(HoldRefused):
        service.till.central_hold(HOLD)
    assert service.sync_process.wake.exists() is wakes
    assert service.sync_process.status() == {"pid": None, "restarts": 0}  # never started here


def test_the_wake_file_ends_the_backoff_of_the_next_step(till: Till, tmp_path: Path) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route to central", request=request)

    credential = Credential("http://central", "d-1", 1, "s" * 40)
    settings = make_settings(tmp_path / "sync-settings")
    client = SyncClient(till, credential, settings, transport=httpx.MockTransport(unreachable))
    wake = tmp_path / "sync-wake"
    client.next_attempt_s = till.clock.boottime_s() + 300
    sync_step(client, wake)
    assert client.failures == 0, "still backing off: no attempt"
    wake.touch()
    sync_step(client, wake)
    assert client.failures == 1, "woken: it tried central"
    assert not wake.exists()
    client.close()


def _grow_log(service: AgentService) -> tuple[Path, int]:
    """Commits that leave their pages in the WAL only; the database file and its size."""
    store = service.till.store
    with store.write() as db:
        db.execute("CREATE TABLE filler (n INTEGER PRIMARY KEY, body TEXT)")
    for n in range(300):
        with store.write() as db:
            db.execute("INSERT INTO filler (n, body) VALUES (?, ?)", [n, "x" * 3000])
    path = service.settings.data_dir / "till.db"
    return path, path.stat().st_size


@contextlib.contextmanager
def _sync_child(
    tmp_path: Path, clock: ManualClock, checkpoint_s: float
) -> Iterator[tuple[AgentService, Path, int]]:
    """An enrolled agent whose WAL holds 300 commits, its sync process running (a real
    child); the database file and its size before any checkpoint."""
    service = _service(tmp_path, clock, None, checkpoint_s=checkpoint_s)
    path, size = _grow_log(service)
    service._connect()
    supervisor = service.sync_process
    assert supervisor is not None
    supervisor.keep_running()
    try:
        yield service, path, size
    finally:
        supervisor.stop()


def test_the_pos_process_leaves_the_log_to_a_running_sync_process(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The sync process writes most of the WAL and copies it at its own lower priority; the
    POS process's checkpoint job does nothing while it runs, and copies the log again as soon
    as no sync process runs."""
    with _sync_child(tmp_path, clock, checkpoint_s=3600) as (service, path, size):  # never
        assert service.sync_process is not None
        assert service.sync_process.running()
        service._checkpoint()
        assert path.stat().st_size == size, "the POS process copied the log"
    assert service.sync_process is not None
    assert not service.sync_process.running()
    service._checkpoint()
    assert path.stat().st_size > size + 300 * 3000


def test_the_sync_process_copies_the_log_into_the_database_file(
    tmp_path: Path, clock: ManualClock
) -> None:
    with _sync_child(tmp_path, clock, checkpoint_s=0.2) as (_, path, size):
        deadline = time.monotonic() + 60
        while path.stat().st_size <= size + 300 * 3000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > size + 300 * 3000, "the sync process did not checkpoint"


def test_the_wake_file_ends_the_wait_for_the_next_turn(tmp_path: Path) -> None:
    """The child waits a sync interval between turns, but not past the wake file the POS
    process makes (a hold answered, a held cheque voided): that push happens at once."""
    wake = tmp_path / "sync-wake"
    started = time.monotonic()
    wait_for_turn(wake, 0.3)
    assert time.monotonic() - started >= 0.3  # no wake: the whole interval
    wake.touch()
    started = time.monotonic()
    wait_for_turn(wake, 30)
    assert time.monotonic() - started < 5
