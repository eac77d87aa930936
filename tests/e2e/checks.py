"""The invariants of PRODUCT.md, read straight from the SQLite files of central and the tills."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from agent._fleet import Agent


@contextlib.contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection closed on leaving, not when the garbage collector gets to it: one left
    open holds the file's shared memory, and a test that puts a backup in its place would
    read through that stale memory."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        yield conn


def till_records(till: Agent) -> dict[tuple[int, int], str]:
    """(epoch, seq) → payload hash of every record the till ever made."""
    with opened(till.data_dir / "till.db") as conn:
        rows = conn.execute("SELECT epoch, seq, payload_sha256 FROM outbox").fetchall()
    return {(epoch, seq): digest for epoch, seq, digest in rows}


def central_records(central_db: Path, device_id: str) -> dict[tuple[int, int], str]:
    """(epoch, seq) → payload hash of everything central holds from one device: ledger
    entries, cheque documents and quarantined records alike."""
    found: dict[tuple[int, int], str] = {}
    with opened(central_db) as conn:
        for table in ("ledger", "cheques"):
            rows = conn.execute(
                f"SELECT device_epoch, device_seq, payload_sha256 FROM {table} WHERE device_id = ?",
                [device_id],
            ).fetchall()
            for epoch, seq, digest in rows:
                assert (epoch, seq) not in found, f"seq {seq} stored twice"
                found[(epoch, seq)] = digest
        quarantined = conn.execute(
            "SELECT device_epoch, device_seq FROM quarantine WHERE device_id = ?", [device_id]
        ).fetchall()
    for epoch, seq in quarantined:
        found.setdefault((epoch, seq), "quarantined")
    return found


def assert_nothing_lost_nothing_twice(central_db: Path, till: Agent) -> None:
    mine = till_records(till)
    device_id = json.loads((till.data_dir / "device.json").read_text())["device_id"]
    theirs = central_records(central_db, device_id)
    assert set(theirs) == set(mine), "central and till disagree on which records exist"
    for key, digest in theirs.items():
        if digest != "quarantined":
            assert digest == mine[key], f"record {key} changed on the way"
    by_epoch: dict[int, list[int]] = defaultdict(list)
    for epoch, seq in theirs:
        by_epoch[epoch].append(seq)
    for seqs in by_epoch.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), "a gap at central"


def assert_balances_fold(central_db: Path) -> dict[str, int]:
    """Every account balance equals the fold of its entries; the points balances."""
    with opened(central_db) as conn:
        folded = dict(
            ((key, asset), total)
            for key, asset, total in conn.execute(
                "SELECT account_key, asset, SUM(amount) FROM ledger GROUP BY account_key, asset"
            )
        )
        stored = {
            (key, asset): balance
            for key, asset, balance in conn.execute(
                "SELECT account_key, asset, balance FROM accounts"
            )
        }
        debts = {row[0] for row in conn.execute("SELECT account_key FROM debts")}
    assert {k: v for k, v in stored.items() if v} == {k: v for k, v in folded.items() if v}
    for (key, asset), balance in stored.items():
        if balance < 0:
            assert key in debts, f"{key} {asset} is negative without a recorded debt"
    return {key: balance for (key, asset), balance in stored.items() if asset == "points"}
