"""Central's disk fills up while a till sells (real processes, a real tmpfs): the till sells
on, its status and central's log say what is wrong and what to do, and once space is freed
every record lands once."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from agent._demo import setup_central, setup_code
from agent._fleet import Agent, Central

from ..disks import fill, small_disk
from .checks import assert_balances_fold, assert_nothing_lost_nothing_twice, opened
from .conftest import ANNA, sell

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]

FULL = "central's database has no disk space left"


def _wait_for_error(till: Agent, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    said = ""
    while time.monotonic() < deadline:
        said = till.status().get("last_sync_error") or ""
        if FULL in said:
            return said
        time.sleep(0.1)
    raise AssertionError(f"the till never said central's disk is full; it said {said!r}")


def test_central_out_of_disk_space_loses_nothing(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        disk = stack.enter_context(small_disk(tmp_path / "disk", "16m"))
        central_db = disk / "central.db"
        central = Central(tmp_path / "central", db_url=f"sqlite:///{central_db}").start()
        stack.callback(central.close)
        setup_central(central)
        till = Agent(tmp_path, "till-a", central.url, setup_code(central)).start()
        stack.callback(till.close)
        sell(till, "d-1", 20000)
        till.wait_synced()

        filler = fill(disk)
        sold = [sell(till, f"d-{n}", 10000 * n) for n in range(2, 7)]
        assert {cheque["state"] for cheque in sold} == {"confirmed"}, "the POS sells on"
        said = _wait_for_error(till)
        assert "free space on its disk" in said
        assert "storage_unavailable, HTTP 503" in said
        assert till.status()["outbox_depth"] > 0
        assert FULL in (tmp_path / "central" / "central.log").read_text()

        filler.unlink()
        till.wait_synced(timeout_s=60)
        assert_nothing_lost_nothing_twice(central_db, till)
        balances = assert_balances_fold(central_db)
        with opened(central_db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0
            cheques = {row[0] for row in conn.execute("SELECT cheque_id FROM cheques")}
        assert {f"d-{n}" for n in range(1, 7)} <= cheques
        assert till.call("/v1/identify", ANNA)["balance"]["balance"] == balances["customer:c-anna"]
