"""A fleet against one central: simulated tills at the protocol level plus two real agents.

    .venv/bin/python bench/fleet.py --quick    # about a minute
    .venv/bin/python bench/fleet.py            # 200 tills, 100,000 entries, 5,000 cheques

A real `kopilka-central serve` process on an SQLite file; `tills` simulated tills enrolled with
HQ codes that push ledger entries (protocol models, canonical JSON, as a till stores them) from
worker threads in batches, each till going offline for some rounds and pushing its backlog when
it comes back; and two real `kopilka-agent run` processes. Half the entries are sold before "the
week", with both agents online and pulling. Then agent B is cut off (a partitioning proxy, in a
process of its own) for the week: it sells `cheques` cheques while the simulated fleet makes the
week's chain-wide changes, at least `week_changes_min` change records (50,000, as issue 8 names
it: five rounds, then rounds of as many sales as records are missing). Then the link returns and
the bench times B's catch-up (outbox empty and pull cursor at central's last change), sampling
B's POS API (`/v1/quote`, one every `--pos-gap-ms`) meanwhile against the same samples taken
while B was idle. Lost, duplicated and mismatched are counted from the load generator's own log
of acknowledgements (and B's outbox) against central's SQLite ledger. The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpu_baseline import python_loop_ms  # noqa: E402  # bench/ is this script's own folder

from agent._demo import setup_central  # noqa: E402
from agent._fleet import Agent, Central  # noqa: E402
from protocol import (  # noqa: E402
    CustomerAccount,
    EntryKind,
    LedgerEntry,
    PushItem,
    PushRequest,
    UUIDv7Generator,
    canonical_json,
    sha256_hex,
)
from tests.faultproxy import ProxyProcess  # noqa: E402

batch_entries_max = 500
push_workers = 8
rounds = 5
offline_chance = 0.3
quote_samples_idle = 300
pos_gap_ms_default = 20
"""Pause between two POS samples: a quote every 20 ms is a very busy till (a cashier scans
an item a second or so). 0 samples back to back, as this bench did before 2026-11-25 20:00:
that keeps a whole core busy with the probe (the bench's client and the agent's POS threads)
on a 2-core machine, competing with the catch-up it measures."""
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@dataclass
class SimTill:
    device_id: str
    epoch: int
    secret: str
    pending: list[PushItem] = field(default_factory=list)
    next_seq: int = 1

    def make(self, ids: UUIDv7Generator, customer: str, amount: int) -> None:
        entry = LedgerEntry(
            entry_id=str(ids()),
            device_id=self.device_id,
            device_epoch=self.epoch,
            device_seq=self.next_seq,
            kind=EntryKind.earn,
            account=CustomerAccount(customer_id=customer),
            amount=amount,
            device_time=NOW,
        )
        payload = canonical_json(entry)
        self.pending.append(
            PushItem(
                seq=self.next_seq, payload=payload.decode(), payload_sha256=sha256_hex(payload)
            )
        )
        self.next_seq += 1


@dataclass
class AckLog:
    """What central acknowledged, as the load generator saw it: (device, epoch, seq) → hash."""

    acked: dict[tuple[str, int, int], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, till: SimTill, items: list[PushItem], through: int) -> None:
        with self.lock:
            for item in items:
                if item.seq <= through:
                    self.acked[(till.device_id, till.epoch, item.seq)] = item.payload_sha256


def _enroll_sims(central: Central, count: int) -> list[SimTill]:
    tills = []
    with httpx.Client(base_url=central.url, timeout=30) as client:
        for _ in range(count):
            code = central.call("POST", "/stores/msk-1/enrollment-codes")["code"]
            answer = client.post("/sync/enroll", json={"code": code, "hostname": "sim"})
            answer.raise_for_status()
            body = answer.json()
            tills.append(SimTill(body["device_id"], body["device_epoch"], body["secret"]))
    return tills


def _push_backlog(client: httpx.Client, till: SimTill, log: AckLog) -> int:
    """Everything the till holds, in bounded batches; retried on a transport error."""
    pushed = 0
    while till.pending:
        batch = till.pending[:batch_entries_max]
        body = PushRequest(
            device_id=till.device_id,
            device_epoch=till.epoch,
            items=tuple(batch),
            device_time=NOW,
        ).model_dump_json()
        for attempt in range(5):
            try:
                answer = client.post(
                    "/sync/push",
                    content=body,
                    headers={
                        "Authorization": f"Bearer {till.secret}",
                        "content-type": "application/json",
                    },
                )
                break
            except httpx.TransportError:
                time.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeError(f"{till.device_id}: central unreachable")
        if answer.status_code != 200:
            raise RuntimeError(f"{till.device_id}: push {answer.status_code} {answer.text[:300]}")
        through = int(answer.json()["acked_through"])
        log.record(till, batch, through)
        till.pending = [item for item in till.pending if item.seq > through]
        pushed += len([item for item in batch if item.seq <= through])
    return pushed


@dataclass
class Fleet:
    """The simulated tills and what they sell, over the phases of the bench."""

    central: Central
    tills: list[SimTill]
    customers: list[str]
    log: AckLog
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    ids: UUIDv7Generator = field(default_factory=UUIDv7Generator)
    pushed: int = 0
    seconds: float = 0.0

    def run(self, size: Callable[[int], int]) -> int:
        """Rounds of sales, `size(number)` of them in round `number` (0, 1, …), until it is
        0. In the first `rounds - 1` rounds a till is offline with some chance and keeps its
        backlog; from the next one on, every till comes back and pushes all it holds.
        Returns the entries pushed."""
        started, pushed_before = time.perf_counter(), self.pushed
        with httpx.Client(
            base_url=self.central.url,
            timeout=60,
            limits=httpx.Limits(max_connections=push_workers),
        ) as client:
            number = 0
            while (count := size(number)) > 0:
                for _ in range(count):
                    till = self.rng.choice(self.tills)
                    till.make(self.ids, self.rng.choice(self.customers), self.rng.randint(1, 500))
                everyone = number >= rounds - 1
                self._push(
                    client,
                    [
                        t
                        for t in self.tills
                        if t.pending and (everyone or self.rng.random() > offline_chance)
                    ],
                )
                number += 1
        self.seconds += time.perf_counter() - started
        return self.pushed - pushed_before

    def _push(self, client: httpx.Client, tills: list[SimTill]) -> None:
        with ThreadPoolExecutor(push_workers) as pool:
            self.pushed += sum(pool.map(lambda t: _push_backlog(client, t, self.log), tills))


def _quote_body(customer: str) -> dict[str, Any]:
    line = {
        "line_id": "1",
        "sku": "sku-1",
        "category": "grocery",
        "quantity_milli": 1000,
        "unit_price": 15000,
        "total": 15000,
    }
    return {"customer": {"type": "customer", "value": customer}, "basket": {"lines": [line]}}


@dataclass(frozen=True)
class Sample:
    """One POS request, and how long each side of it waited for a core meanwhile."""

    ms: float
    agent_wait_ms: float
    """The agent's POS process (all its threads), runnable but not running."""
    probe_wait_ms: float
    """This process, which stands in for the POS software: its waits are in `ms` too."""


def _quote(agent: Agent, customer: str, gap_ms: float = 0) -> Sample:
    """A quote, timed; the run queues are read outside the timed part."""
    time.sleep(gap_ms / 1000)
    body = _quote_body(customer)
    agent_before, probe_before = _run_queue_ms(agent.process.pid), _run_queue_ms(os.getpid())
    started = time.perf_counter()
    agent.call("/v1/quote", body)
    ms = (time.perf_counter() - started) * 1000
    agent_wait = _run_queue_ms(agent.process.pid) - agent_before
    return Sample(ms, agent_wait, _run_queue_ms(os.getpid()) - probe_before)


def _tail_waits(samples: list[Sample]) -> dict[str, float]:
    """The mean run-queue waits of the samples at or above the p99: whether the tail is the
    agent waiting for a core, or the probe."""
    cut = _p99([sample.ms for sample in samples])
    tail = [sample for sample in samples if sample.ms >= cut]
    return {
        "agent": round(sum(sample.agent_wait_ms for sample in tail) / len(tail), 2),
        "probe": round(sum(sample.probe_wait_ms for sample in tail) / len(tail), 2),
    }


def _percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _p99(samples: list[float]) -> float:
    return _percentile(samples, 0.99)


def _sell(agent: Agent, cheques: int, customers: list[str], prefix: str) -> None:
    rng = random.Random(11)
    for number in range(cheques):
        cheque = f"{prefix}-{number}"
        body = {"cheque_id": cheque, **_quote_body(rng.choice(customers))}
        agent.call("/v1/reserve", body)
        agent.call("/v1/confirm", {"cheque_id": cheque, "fiscal_document": f"FD-{number}"})


def _central_last_change(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(
            conn.execute("SELECT COALESCE(MAX(change_seq), 0) FROM change_log").fetchone()[0]
        )


def _changes_since(db: Path, cursor: int) -> int:
    """Change records after `cursor`: one `change_seq` each (a change-log row holds the
    changes of one transaction, `first_seq..change_seq`)."""
    return _central_last_change(db) - cursor


@dataclass
class CatchUp:
    seconds: float
    outbox_empty_s: float
    samples: list[Sample]


def _catch_up(agent: Agent, central_db: Path, customers: list[str], gap_ms: float) -> CatchUp:
    """Seconds until the outbox is empty and the cursor has reached central's last change
    (and, within that, until the outbox was empty), with POS latency samples taken all
    along."""
    target = _central_last_change(central_db)
    samples: list[Sample] = []
    started = time.perf_counter()
    deadline = started + 600
    checked = 0.0
    outbox_empty_s: float | None = None
    while time.perf_counter() < deadline:
        samples.append(_quote(agent, random.choice(customers), gap_ms))
        now = time.perf_counter()
        if now - checked >= 0.05:
            checked = now
            status = agent.status()
            if status["outbox_depth"] == 0 and outbox_empty_s is None:
                outbox_empty_s = now - started
            if outbox_empty_s is not None and status["pull_cursor"] >= target:
                return CatchUp(time.perf_counter() - started, outbox_empty_s, samples)
    raise RuntimeError(f"{agent.name} did not catch up: {agent.status()}")


def _jobs_overlapping(db: Path, started_ms: int) -> list[str]:
    """Central's jobs whose last run overlapped the catch-up (started in it, or still
    running or finished after it began)."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT name FROM job_state WHERE last_started_ms >= ? OR last_finished_ms >= ? "
            "OR last_finished_ms IS NULL OR last_finished_ms < last_started_ms ORDER BY name",
            (started_ms, started_ms),
        ).fetchall()
    return [name for (name,) in rows]


class JobsDuringCatchUp:
    """`--recompute-in-catchup`: a second jobs process (`kopilka-central jobs`, at the same
    lower priority as the one `serve` runs) runs `recompute` every second while the till
    catches up, so that its cheques are evaluated and written in the middle of the push: the
    worst case, which `serve`'s 30-second interval hits only sometimes."""

    def __init__(self, central: Central) -> None:
        self.central = central
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> JobsDuringCatchUp:
        argv = ["nice", "-n", "10", sys.executable, "-m", "central.cli", "jobs"]
        self.process = subprocess.Popen(
            [*argv, "--db", self.central.db_url, "--job", "recompute", "--every-s", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _recomputed(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        found = conn.execute(
            "SELECT COALESCE(SUM(items_total), 0) FROM job_state WHERE name = 'recompute'"
        ).fetchone()
    return int(found[0])


def _run_queue_ms(pid: int) -> float:
    """Milliseconds the threads of process `pid` (B's POS API, not its sync process) have
    spent runnable but waiting for a core (`/proc/<pid>/task/*/schedstat`, second field),
    threads that already ended excepted: how much of the POS's latency is the machine's."""
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total_ns += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_ns / 1e6


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its live children (the agent's sync process)
    have used so far: on a shared machine, the work done, where wall time also counts the
    waits for a core."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return own + sum(_cpu_s(child) for child in children)


def _audit(central_db: Path, log: AckLog, agent: Agent) -> dict[str, int]:
    """Acknowledged records against central's ledger: lost, duplicated, mismatched."""
    acked = dict(log.acked)
    with closing(sqlite3.connect(agent.data_dir / "till.db")) as conn:
        device_id = conn.execute("SELECT value FROM meta WHERE key = 'device_id'").fetchone()[0]
        rows = conn.execute(
            "SELECT epoch, seq, payload_sha256 FROM outbox WHERE state != 'local'"
        ).fetchall()
    for epoch, seq, digest in rows:
        acked[(device_id, epoch, seq)] = digest
    stored: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    with closing(sqlite3.connect(central_db)) as conn:
        for table in ("ledger", "cheques", "quarantine"):
            sql = f"SELECT device_id, device_epoch, device_seq, payload_sha256 FROM {table}"
            for device, epoch, seq, digest in conn.execute(sql):
                stored[(device, epoch, seq)].append(digest)
        ids = conn.execute("SELECT COUNT(*) - COUNT(DISTINCT entry_id) FROM ledger").fetchone()[0]
    lost = sum(1 for key in acked if key not in stored)
    duplicated = sum(len(found) - 1 for found in stored.values() if len(found) > 1) + int(ids)
    mismatched = sum(
        1 for key, digest in acked.items() if key in stored and digest not in stored[key]
    )
    return {"acked": len(acked), "lost": lost, "duplicated": duplicated, "mismatched": mismatched}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, about a minute")
    parser.add_argument(
        "--pos-gap-ms",
        type=float,
        default=pos_gap_ms_default,
        help=f"pause between POS samples (default {pos_gap_ms_default}; 0: back to back)",
    )
    parser.add_argument(
        "--recompute-in-catchup",
        action="store_true",
        help="run central's recompute job back to back during the catch-up (the worst case)",
    )
    args = parser.parse_args(argv)
    tills_count = 200
    entries = 8_000 if args.quick else 100_000
    week_changes_min = 4_000 if args.quick else 50_000
    cheques = 200 if args.quick else 5_000
    customers_count = 500 if args.quick else 2_000
    per_round = entries // 2 // rounds
    loop_before_ms = python_loop_ms()
    workdir = Path(tempfile.mkdtemp(prefix="kopilka-fleet-"))
    central = Central(workdir / "central").start()
    central_db = workdir / "central" / "central.db"
    proxy: ProxyProcess | None = None
    agents: list[Agent] = []
    try:
        code = setup_central(central)
        customers = [f"c-{number}" for number in range(customers_count)]
        for customer in customers:
            central.call("POST", "/customers", {"customer_id": customer, "consent_data": True})
        fleet = Fleet(central, _enroll_sims(central, tills_count), customers, AckLog())
        proxy = ProxyProcess(central.port)  # not in this process: it times the POS
        second = central.call("POST", "/stores/msk-1/enrollment-codes")["code"]
        agent_a = Agent(workdir, "agent-a", central.url, code).start()
        agent_b = Agent(workdir, "agent-b", proxy.url, second).start()
        agents = [agent_a, agent_b]
        before = fleet.run(lambda number: per_round if number < rounds else 0)
        print(f"fleet: {before} entries before the week, both agents online", flush=True)
        for agent in agents:
            agent.wait_synced(timeout_s=300)
        cursor_before = int(agent_b.status()["pull_cursor"])
        proxy.partitioned = True  # agent B's week without a network begins
        print(f"fleet: agent B offline; selling {cheques} cheques there", flush=True)
        seller = threading.Thread(target=_sell, args=(agent_b, cheques, customers, "B"))
        seller.start()
        _sell(agent_a, 50, customers, "A")

        def week_round(number: int) -> int:
            """Five rounds, then rounds of as many sales as change records are missing."""
            if number < rounds:
                return per_round
            return max(week_changes_min - _changes_since(central_db, cursor_before), 0)

        week = fleet.run(week_round)
        print(f"fleet: {week} entries during the week", flush=True)
        seller.join()
        waited_before_ms = _run_queue_ms(agent_b.process.pid)
        idle_samples = [
            _quote(agent_b, random.choice(customers), args.pos_gap_ms)
            for _ in range(quote_samples_idle)
        ]
        idle_waited_ms = _run_queue_ms(agent_b.process.pid) - waited_before_ms
        week_changes = _changes_since(central_db, cursor_before)
        print(f"fleet: agent B back with {week_changes} changes to pull", flush=True)
        cpu_before = _cpu_s(central.process.pid), _cpu_s(agent_b.process.pid)
        started_ms = int(time.time() * 1000)
        proxy.partitioned = False
        recomputed_before = _recomputed(central_db)
        forced = JobsDuringCatchUp(central) if args.recompute_in_catchup else None
        waited_before_ms = _run_queue_ms(agent_b.process.pid)
        with forced or contextlib.nullcontext():
            catchup = _catch_up(agent_b, central_db, customers, args.pos_gap_ms)
        catchup_waited_ms = _run_queue_ms(agent_b.process.pid) - waited_before_ms
        overlapping = _jobs_overlapping(central_db, started_ms)
        recomputed = _recomputed(central_db) - recomputed_before
        cpu_central_s = _cpu_s(central.process.pid) - cpu_before[0]
        cpu_agent_s = _cpu_s(agent_b.process.pid) - cpu_before[1]
        agent_a.wait_synced(timeout_s=120)
        audit = _audit(central_db, fleet.log, agent_b)
        idle = [sample.ms for sample in idle_samples]
        busy = [sample.ms for sample in catchup.samples]
        result = {
            "tills": tills_count + len(agents),
            "entries": fleet.pushed,
            "entries_per_s": round(fleet.pushed / fleet.seconds),
            "catchup_7d_s": round(catchup.seconds, 2),
            "catchup_outbox_empty_s": round(catchup.outbox_empty_s, 2),
            "catchup_cpu_central_s": round(cpu_central_s, 2),
            "catchup_cpu_agent_s": round(cpu_agent_s, 2),
            "catchup_cheques": cheques,
            "catchup_jobs": overlapping,
            "catchup_recompute_forced": args.recompute_in_catchup,
            "catchup_recomputed": recomputed,
            "catchup_changes": week_changes,
            "pos_gap_ms": args.pos_gap_ms,
            "pos_samples": len(busy),
            "pos_p50_idle_ms": round(_percentile(idle, 0.5), 2),
            "pos_p50_catchup_ms": round(_percentile(busy, 0.5), 2),
            "pos_p99_idle_ms": round(_p99(idle), 2),
            "pos_p99_catchup_ms": round(_p99(busy), 2),
            "pos_p99_ratio": round(_p99(busy) / _p99(idle), 2),
            "pos_run_queue_ms_per_sample_idle": round(idle_waited_ms / len(idle), 3),
            "pos_run_queue_ms_per_sample_catchup": round(catchup_waited_ms / len(busy), 3),
            "pos_tail_run_queue_ms_idle": _tail_waits(idle_samples),
            "pos_tail_run_queue_ms_catchup": _tail_waits(catchup.samples),
            "acked": audit["acked"],
            "lost": audit["lost"],
            "duplicated": audit["duplicated"],
            "mismatched": audit["mismatched"],
            "python_loop_ms": [loop_before_ms, python_loop_ms()],
        }
    finally:
        for agent in agents:
            agent.close()
        if proxy is not None:
            proxy.close()
        central.close()
    shutil.rmtree(workdir, ignore_errors=True)  # kept when the run failed, for its logs
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
