"""Crash safety with real processes: SIGKILL at random moments and right at COMMIT.

After every restart, each operation the caller saw acknowledged is on disk exactly once,
nothing unacknowledged is half there, and each epoch's seq runs 1…N without a gap.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("till_worker.py")
CARD = {"type": "card", "value": "2770000000017"}


class Worker:
    def __init__(self, data_dir: Path, pause: str | None = None) -> None:
        env = dict(os.environ)
        env.pop("KOPILKA_TEST_PAUSE", None)
        if pause:
            env["KOPILKA_TEST_PAUSE"] = pause
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.readline() == "READY"

    def readline(self) -> str | None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        return line.strip() if line else None

    def call(self, op: dict[str, Any]) -> dict[str, Any] | str | None:
        """The answer, "PAUSED", or None when the process died before answering."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(op) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        line = self.readline()
        if line is None or line == "PAUSED":
            return line
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()


def basket(i: int) -> dict[str, Any]:
    return {
        "lines": [
            {
                "line_id": "1",
                "sku": "milk",
                "category": "dairy",
                "quantity_milli": 2000,
                "unit_price": 5000 + i,
                "total": 10000 + 2 * i,
            },
            {
                "line_id": "2",
                "sku": "bread",
                "category": "bread",
                "quantity_milli": 1000,
                "unit_price": 3000,
                "total": 3000,
            },
        ]
    }


def plan(cheques: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ops: list[dict[str, Any]] = []
    for i in range(cheques):
        cheque = f"c{i}"
        ops.append(
            {
                "op": "reserve",
                "body": {
                    "cheque_id": cheque,
                    "customer": CARD,
                    "basket": basket(i),
                    "redeem": {"points": rng.choice([0, 0, 5, 20])},
                },
            }
        )
        if rng.random() < 0.1:
            ops.append({"op": "void", "body": {"cheque_id": cheque}})
            continue
        ops.append({"op": "confirm", "body": {"cheque_id": cheque, "fiscal_document": f"F{i}"}})
        if rng.random() < 0.3:
            ops.append(
                {
                    "op": "refund",
                    "body": {
                        "refund_id": f"r{i}",
                        "cheque_id": cheque,
                        "lines": [{"line_id": "1", "quantity_milli": 1000}],
                    },
                }
            )
    return ops


def check_disk(db_path: Path) -> dict[str, Any]:
    """The invariants of the till database, read with plain sqlite3."""
    conn = sqlite3.connect(db_path)
    rows = conn.execute(
        "SELECT epoch, seq, record, record_id, payload FROM outbox ORDER BY epoch, seq"
    ).fetchall()
    by_epoch: dict[int, list[int]] = {}
    for epoch, seq, *_ in rows:
        by_epoch.setdefault(epoch, []).append(seq)
    for seqs in by_epoch.values():
        assert seqs == list(range(1, len(seqs) + 1)), "seq has a gap or a duplicate"
    entries = {r[3]: json.loads(r[4]) for r in rows if r[2] == "entry"}
    documents = [json.loads(r[4]) for r in rows if r[2] == "cheque"]
    referenced = Counter(entry_id for doc in documents for entry_id in doc["entry_ids"])
    assert set(referenced) == set(entries), "an entry without its document, or the reverse"
    assert all(count == 1 for count in referenced.values())
    finished = Counter((doc["cheque_id"], doc["kind"]) for doc in documents)
    assert all(count == 1 for count in finished.values()), "a cheque document twice"
    states = dict(conn.execute("SELECT cheque_id, state FROM cheques").fetchall())
    refunds = {r[0] for r in conn.execute("SELECT refund_id FROM refunds")}
    conn.close()
    return {"states": states, "refunds": refunds, "documents": finished, "entries": entries}


def run_with_kills(
    data_dir: Path, ops: list[dict[str, Any]], seed: int, strikes: int = 8
) -> tuple[list[Any], int]:
    """Send every op, retrying after each crash as a POS would. Before `strikes` ops picked at
    random, a killer is armed to SIGKILL the process within the next few milliseconds: while
    the op runs, around its commit, or just after it answered. (Timed from the start instead,
    the count of kills depended on how fast the till is.)"""
    rng = random.Random(seed)
    armed_before = set(rng.sample(range(len(ops)), strikes))
    answers: list[Any] = []
    kills = 0
    worker = Worker(data_dir)
    index = 0
    while index < len(ops):
        killer = None
        if index in armed_before:
            armed_before.discard(index)
            killer = threading.Timer(
                rng.uniform(0.0, 0.01), os.kill, (worker.proc.pid, signal.SIGKILL)
            )
            killer.start()
        answer = worker.call(ops[index])
        if killer is not None:
            killer.join()  # it struck: during this op, or after its answer (then the next
            # op finds the process dead)
        if answer is None:
            kills += 1
            worker.kill()
            check_disk(data_dir / "till.db")
            worker = Worker(data_dir)
            continue
        answers.append(answer)
        index += 1
    worker.kill()
    return answers, kills


@pytest.mark.slow
def test_random_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    ops = plan(cheques=120, seed=7)
    answers, kills = run_with_kills(tmp_path / "agent", ops, seed=11)
    assert kills >= 3, "the killer should have struck several times"
    disk = check_disk(tmp_path / "agent" / "till.db")
    for op, answer in zip(ops, answers, strict=True):
        assert answer["ok"], (op, answer)
        body = op["body"]
        if op["op"] == "confirm":
            assert disk["states"][body["cheque_id"]] in {"confirmed", "partially_refunded"}
            assert disk["documents"][(body["cheque_id"], "sale")] == 1
        elif op["op"] == "void":
            assert disk["states"][body["cheque_id"]] == "voided"
        elif op["op"] == "refund":
            assert body["refund_id"] in disk["refunds"]
            assert disk["documents"][(body["refund_id"], "refund")] == 1
    confirmed = [
        answer["result"] for answer, op in zip(answers, ops, strict=True) if op["op"] == "confirm"
    ]
    spent = sum(result["spent_points"] for result in confirmed)
    burns = sum(-e["amount"] for e in disk["entries"].values() if e["kind"] == "burn")
    assert burns == spent


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["before", "after"])
@pytest.mark.parametrize(("commit", "op_index"), [(1, 0), (2, 1), (3, 2)])
def test_sigkill_at_commit(tmp_path: Path, stage: str, commit: int, op_index: int) -> None:
    """Killed right before COMMIT: the operation is absent; right after: wholly present.
    Either way the retry answers once, and the disk holds it exactly once."""
    ops = [
        {
            "op": "reserve",
            "body": {
                "cheque_id": "k",
                "customer": CARD,
                "basket": basket(1),
                "redeem": {"points": 20},
            },
        },
        {"op": "confirm", "body": {"cheque_id": "k", "fiscal_document": "F"}},
        {
            "op": "refund",
            "body": {
                "refund_id": "kr",
                "cheque_id": "k",
                "lines": [{"line_id": "1", "quantity_milli": 1000}],
            },
        },
    ]
    data_dir = tmp_path / "agent"
    worker = Worker(data_dir, pause=f"{stage}:{commit}")
    for op in ops[:op_index]:
        assert worker.call(op)["ok"]  # type: ignore[index]
    assert worker.call(ops[op_index]) == "PAUSED"
    worker.kill()
    disk = check_disk(data_dir / "till.db")
    target = ops[op_index]
    if target["op"] == "reserve":
        present = "k" in disk["states"]
    elif target["op"] == "confirm":
        present = disk["states"].get("k") == "confirmed"
    else:
        present = "kr" in disk["refunds"]
    assert present == (stage == "after")
    again = Worker(data_dir)
    answer = again.call(target)
    again.kill()
    assert answer["ok"]  # type: ignore[index]
    disk = check_disk(data_dir / "till.db")
    expected = {"reserve": "reserved", "confirm": "confirmed", "refund": "partially_refunded"}
    assert disk["states"]["k"] == expected[target["op"]]
