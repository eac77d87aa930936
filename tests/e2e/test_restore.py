"""A till whose disk died comes back from last night's backup: the operator re-enrolls it with
`--restored` before starting it, and it goes on in a new epoch (PRODUCT.md: a restored till
starts a new epoch). Central keeps everything the lost copy sent; nothing collides."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent._demo import setup_code

from .checks import assert_balances_fold, central_records, till_records
from .conftest import ANNA, Chain, sell

pytestmark = pytest.mark.slow


def _backup(data_dir: Path, into: Path) -> None:
    """What a nightly backup takes: a consistent copy of the database (SQLite's online backup)
    and the files beside it."""
    into.mkdir()
    for path in data_dir.iterdir():
        if path.is_file() and not path.name.startswith("till.db"):
            shutil.copy2(path, into / path.name)
    with sqlite3.connect(data_dir / "till.db") as live, sqlite3.connect(into / "till.db") as copy:
        live.backup(copy)


def _restore(backup: Path, data_dir: Path) -> None:
    shutil.rmtree(data_dir)
    shutil.copytree(backup, data_dir)


def _enroll_restored(config: Path, central_url: str, code: str) -> str:
    command = [sys.executable, "-m", "agent.cli", "--config", str(config), "enroll"]
    done = subprocess.run(
        [*command, "--central", central_url, "--code", code, "--restored"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_till_restored_from_a_backup_goes_on_in_a_new_epoch(chain: Chain) -> None:
    till = chain.till("till-a")
    till.wait_synced()
    sell(till, "r-1", 20000)
    till.wait_synced()
    backup = chain.workdir / "backup"
    _backup(till.data_dir, backup)
    sell(till, "r-2", 30000)
    sell(till, "r-3", 40000)
    till.wait_synced()
    central_db = chain.workdir / "central" / "central.db"
    device_id = json.loads((till.data_dir / "device.json").read_text())["device_id"]
    sent_by_the_lost_copy = central_records(central_db, device_id)

    till.process.kill()  # the disk dies
    _restore(backup, till.data_dir)
    said = _enroll_restored(till.config_path, chain.proxy.url, setup_code(chain.central))
    assert f"enrolled as {device_id} (epoch 2)" in said
    till.process.start()
    sell(till, "r-4", 10000)
    till.wait_synced()

    at_central = central_records(central_db, device_id)
    first_epoch = {key: digest for key, digest in at_central.items() if key[0] == 1}
    assert first_epoch == sent_by_the_lost_copy, "the lost copy's records stay as they were"
    mine = till_records(till)
    second_epoch = {key: digest for key, digest in at_central.items() if key[0] == 2}
    assert second_epoch == {key: digest for key, digest in mine.items() if key[0] == 2}
    assert sorted(seq for _, seq in second_epoch) == list(range(1, len(second_epoch) + 1))
    assert second_epoch, "the sale after the restore reached central"
    with sqlite3.connect(central_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM conflicts").fetchone()[0] == 0
        cheques = {row[0] for row in conn.execute("SELECT cheque_id FROM cheques")}
    assert {"r-1", "r-2", "r-3", "r-4"} <= cheques
    balances = assert_balances_fold(central_db)
    assert till.call("/v1/identify", ANNA)["balance"]["balance"] == balances["customer:c-anna"]
