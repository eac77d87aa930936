"""The sync job in its own process: it syncs, it is restarted when it dies, and it never
outlives the agent (real central, real agents, real signals)."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from agent._fleet import Agent

from ..procfs import children, wait_gone
from .checks import assert_nothing_lost_nothing_twice
from .conftest import Chain, sell

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="reads process states from /proc"),
]


def _sync_pid(till: Agent) -> int:
    deadline = time.monotonic() + 30
    while (process := till.status()["sync_process"]) is None or process["pid"] is None:
        assert time.monotonic() < deadline, "the sync process never started"
        time.sleep(0.05)
    return int(process["pid"])


def test_the_sync_process_syncs_and_is_a_child_of_the_agent(chain: Chain) -> None:
    till = chain.till("till-a")
    pid = _sync_pid(till)
    assert pid in children(till.process.pid)
    sell(till, "p-1", 20000)
    status = till.wait_synced()
    assert status["sync_process"] == {"pid": pid, "restarts": 0}
    assert_nothing_lost_nothing_twice(chain.workdir / "central" / "central.db", till)


def test_a_killed_sync_process_is_reported_and_restarted(chain: Chain) -> None:
    till = chain.till("till-a")
    till.wait_synced()
    first = _sync_pid(till)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while till.status()["sync_process"]["restarts"] == 0:
        assert time.monotonic() < deadline, "the agent did not notice its sync process died"
        time.sleep(0.05)
    log = till.process.log_path.read_text()
    assert f"the sync process stopped (exit code -{signal.SIGKILL})" in log
    second = _sync_pid(till)
    assert second != first
    sell(till, "p-2", 30000)
    status = till.wait_synced()
    assert status["sync_process"] == {"pid": second, "restarts": 1}
    assert status["last_sync_error"] == ""
    assert_nothing_lost_nothing_twice(chain.workdir / "central" / "central.db", till)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_sync_process_never_outlives_the_agent(chain: Chain, sig: signal.Signals) -> None:
    till = chain.till("till-a")
    pid = _sync_pid(till)
    spawned = children(till.process.pid)  # and multiprocessing's resource tracker
    assert pid in spawned
    till.process.kill(sig)
    for child in spawned:
        wait_gone(child)


def test_the_sync_job_can_still_run_in_the_agents_thread(chain: Chain) -> None:
    till = chain.till("till-a", {"sync_runs_in": "thread"})
    sell(till, "t-1", 20000)
    status = till.wait_synced()
    assert status["sync_process"] is None
    assert children(till.process.pid) == set()
    assert_nothing_lost_nothing_twice(chain.workdir / "central" / "central.db", till)
