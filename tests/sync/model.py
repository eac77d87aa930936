"""The reference model for the stateful sync test: what PRODUCT.md's invariants say, read from
the raw SQLite files of central and the tills.

Written independently of `protocol/` on purpose (it imports nothing of it, nor of `agent` or
`central`): balances are folded from the ledger rows, seqs are counted from the stored rows,
payload hashes are compared as stored text, so a bug in the shared models cannot hide itself.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SNAPSHOT_TABLES = (
    "ledger",
    "cheques",
    "quarantine",
    "accounts",
    "lots",
    "debts",
    "grants",
    "conflicts",
    "change_log",
    "device_epochs",
)
"""Central's tables that a replayed push must leave exactly as they were."""


def _rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def central_snapshot(central_db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a push may change, in a stable order."""
    with closing(sqlite3.connect(central_db)) as conn:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in SNAPSHOT_TABLES
        }


def central_records(central_db: Path) -> dict[tuple[str, int, int], str]:
    """(device, epoch, seq) → payload hash of everything central holds from tills; raises
    when a seq is stored twice."""
    found: dict[tuple[str, int, int], str] = {}
    for table in ("ledger", "cheques"):
        sql = f"SELECT device_id, device_epoch, device_seq, payload_sha256 FROM {table}"
        for device, epoch, seq, digest in _rows(central_db, sql):
            if device.startswith("central"):
                continue  # central's own pseudo-device
            key = (device, epoch, seq)
            if key in found:
                raise AssertionError(f"{key} stored twice at central")
            found[key] = digest
    sql = "SELECT device_id, device_epoch, device_seq, payload_sha256 FROM quarantine"
    for device, epoch, seq, digest in _rows(central_db, sql):
        found.setdefault((device, epoch, seq), digest)
    return found


def till_records(till_db: Path) -> list[tuple[int, int, str, str]]:
    """(epoch, seq, state, payload hash) of every outbox record of a till."""
    sql = "SELECT epoch, seq, state, payload_sha256 FROM outbox ORDER BY epoch, seq"
    return [tuple(row) for row in _rows(till_db, sql)]  # type: ignore[misc]


def check_ledger(central_db: Path) -> dict[str, int]:
    """Invariants 1, 2 and 6 at central; returns each customer's points balance."""
    entry_ids = _rows(central_db, "SELECT entry_id FROM ledger")
    assert len(entry_ids) == len({row[0] for row in entry_ids}), "an entry applied twice"
    folded: dict[tuple[str, str], int] = defaultdict(int)
    for key, asset, amount in _rows(central_db, "SELECT account_key, asset, amount FROM ledger"):
        folded[(key, asset)] += amount
    stored = {
        (key, asset): balance
        for key, asset, balance in _rows(
            central_db, "SELECT account_key, asset, balance FROM accounts"
        )
    }
    nonzero_folded = {k: v for k, v in folded.items() if v}
    nonzero_stored = {k: v for k, v in stored.items() if v}
    assert nonzero_stored == nonzero_folded, "a balance differs from the fold of its entries"
    assert sum(stored.values()) == sum(folded.values()), "the accounts do not sum to the ledger"
    debts = {
        (key, asset) for key, asset in _rows(central_db, "SELECT account_key, asset FROM debts")
    }
    for (key, asset), balance in stored.items():
        if balance < 0:
            assert (key, asset) in debts, f"{key} {asset} = {balance} without a recorded debt"
    by_epoch: dict[tuple[str, int], list[int]] = defaultdict(list)
    for device, epoch, seq in central_records(central_db):
        by_epoch[(device, epoch)].append(seq)
    for (device, epoch), seqs in by_epoch.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"a gap in {device}/{epoch}"
    return {
        key.removeprefix("customer:"): balance
        for (key, asset), balance in stored.items()
        if asset == "points" and key.startswith("customer:")
    }


def check_acknowledged(central_db: Path, device_id: str, till_db: Path) -> None:
    """Invariant 3: every record the till holds as acknowledged is at central, same bytes."""
    theirs = central_records(central_db)
    mine = till_records(till_db)
    for epoch, seq, state, digest in mine:
        key = (device_id, epoch, seq)
        if state == "local":
            continue
        assert key in theirs, f"{key} acknowledged by central, but central does not have it"
        assert theirs[key] == digest, f"{key} changed on the way to central"
    made = {(epoch, seq) for epoch, seq, _, _ in mine}
    for device, epoch, seq in theirs:
        if device == device_id:
            assert (epoch, seq) in made, f"central holds {seq} the till never made"


@dataclass
class OfflineLedger:
    """Points each till spent per customer while offline, not yet pushed (the allowance)."""

    customer_max: int
    till_max: int
    spent: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def spend(self, till: str, customer: str, points: int) -> None:
        mine = self.spent[till]
        mine[customer] = mine.get(customer, 0) + points
        assert mine[customer] <= self.customer_max, (
            f"{till} let {customer} spend {mine[customer]} offline, over {self.customer_max}"
        )
        assert sum(mine.values()) <= self.till_max, f"{till} is over its offline budget"

    def pushed(self, till: str, till_db: Path) -> None:
        """Offline burns the till no longer holds as local stop counting."""
        rows = _rows(
            till_db,
            "SELECT account_key, -SUM(amount) FROM outbox WHERE record = 'entry' "
            "AND kind = 'burn' AND offline = 1 AND state = 'local' GROUP BY account_key",
        )
        self.spent[till] = {key.removeprefix("customer:"): int(total) for key, total in rows}


def load_json(text: str) -> Any:
    return json.loads(text)
