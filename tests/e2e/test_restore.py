"""A till whose disk died comes back from last night's backup: the operator re-enrolls it with
`--restored` before starting it, and it goes on in a new epoch (PRODUCT.md: a restored till
starts a new epoch). Central keeps everything the lost copy sent; nothing collides."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent._demo import setup_code
from agent._fleet import Agent

from .checks import (
    assert_balances_fold,
    assert_nothing_lost_nothing_twice,
    central_records,
    opened,
    till_records,
)
from .conftest import ANNA, Chain, line, sell

pytestmark = pytest.mark.slow


def _backup(data_dir: Path, into: Path) -> None:
    """What a nightly backup takes: a consistent copy of the database (SQLite's online backup)
    and the files beside it."""
    into.mkdir()
    for path in data_dir.iterdir():
        if path.is_file() and not path.name.startswith("till.db"):
            shutil.copy2(path, into / path.name)
    with opened(data_dir / "till.db") as live, opened(into / "till.db") as copy:
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
    with opened(central_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM conflicts").fetchone()[0] == 0
        cheques = {row[0] for row in conn.execute("SELECT cheque_id FROM cheques")}
    assert {"r-1", "r-2", "r-3", "r-4"} <= cheques
    balances = assert_balances_fold(central_db)
    assert till.call("/v1/identify", ANNA)["balance"]["balance"] == balances["customer:c-anna"]


def _backup_central(central_db: Path, into: Path) -> None:
    with opened(central_db) as live, opened(into) as copy:
        live.backup(copy)


def _restore_central(chain: Chain, backup: Path) -> None:
    central_db = chain.workdir / "central" / "central.db"
    chain.central.process.stop()
    for suffix in ("-wal", "-shm"):
        Path(f"{central_db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, central_db)
    command = [sys.executable, "-m", "central.cli", "restored", "--db", chain.central.db_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    chain.central.process.start()


ZINA = {"type": "phone", "value": "+79035550123"}


def _sell_to_zina(till: Agent, cheque: str) -> None:
    body = {"cheque_id": cheque, "customer": ZINA, "basket": {"lines": [line("1", 5000)]}}
    till.call("/v1/reserve", body)
    till.call("/v1/confirm", {"cheque_id": cheque, "fiscal_document": f"FD-{cheque}"})


def test_a_central_restored_from_a_backup_gets_what_it_lost_again(chain: Chain) -> None:
    """Central's disk dies and it comes back from a backup older than the tills' last pushes:
    the tills send again what it had acknowledged since, in order, and every balance is
    central's again. A cheque of a customer erased since goes without her data, under the
    hash of what the till keeps, and HQ learns that her erasure was lost with the restore."""
    person = {"first_name": "Зинаида", "birthday": "1984-03-09", "consent_data": True}
    chain.central.call(
        "POST", "/customers", {"customer_id": "c-zina", **person, "phones": [ZINA["value"]]}
    )
    till = chain.till("till-a")
    till.wait_synced()
    sell(till, "b-1", 20000)
    till.wait_synced()
    central_db = chain.workdir / "central" / "central.db"
    backup = chain.workdir / "central-backup.db"
    _backup_central(central_db, backup)
    sell(till, "b-2", 30000)
    _sell_to_zina(till, "z-1")
    sell(till, "b-3", 40000, redeem=100)
    till.wait_synced()
    chain.central.call("POST", "/customers/c-zina/erase")
    till.wait_synced()  # the tombstone: z-1's document, acknowledged, loses her data
    device_id = json.loads((till.data_dir / "device.json").read_text())["device_id"]
    before = central_records(central_db, device_id)
    balance_before = assert_balances_fold(central_db)["customer:c-anna"]

    _restore_central(chain, backup)
    assert len(central_records(central_db, device_id)) < len(before), "the backup is older"
    sell(till, "b-4", 10000)
    till.wait_synced()

    assert_nothing_lost_nothing_twice(central_db, till)
    at_central = central_records(central_db, device_id)
    changed = {key for key in before if at_central[key] != before[key]}
    assert len(changed) == 1, "only z-1's document comes back changed: without her data"
    with opened(central_db) as conn:
        (document,) = conn.execute("SELECT payload FROM cheques WHERE cheque_id = 'z-1'").fetchone()
        assert b"1984-03-09" not in document
        (cheque_seq,) = conn.execute(
            "SELECT device_seq FROM cheques WHERE cheque_id = 'z-1'"
        ).fetchone()
    chain.central.run_jobs()  # the recomputation, at once rather than on its interval
    with opened(central_db) as conn:
        conflicts = conn.execute("SELECT kind, device_seq, detail FROM conflicts").fetchall()
    # the restored central lost the erasure too: HQ is told, for that cheque only
    assert [(kind, seq) for kind, seq, _ in conflicts] == [("cheque_scrubbed", cheque_seq)]
    assert json.loads(conflicts[0][2])["customer_id"] == "c-zina"
    anna = assert_balances_fold(central_db)["customer:c-anna"]
    assert anna > balance_before, "b-4 earned on top of everything sent before the restore"
    assert till.call("/v1/identify", ANNA)["balance"]["balance"] == anna
    assert till.status()["pull_cursor"] > 10**12, "it read a snapshot after `restored`"
    assert "sending" in (chain.workdir / "till-a.log").read_text(), "the log says what happened"
