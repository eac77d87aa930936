"""The till agent's latency: a cached base of 1,000,000 customers and the 50-rule set.

    python bench/agent.py            # 1,000,000 customers, thousands of runs each
    python bench/agent.py --quick    # 100,000 customers, fewer runs: under a minute

In process: quote p99 and reserve+confirm p99 beside a raw durable SQLite commit (WAL,
synchronous=FULL, one small INSERT and COMMIT) in the same directory and the same run; identify
by phone p99. Over HTTP on loopback, against a real `kopilka-agent run` process with a keep-alive
httpx client: a full sale (quote + reserve + confirm) p99 beside a `/health` round trip, and
identify by phone p99; then the agent's RSS. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# This file is named like the `agent` package: take its folder off the path, load the
# sibling scripts it uses by file.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench"]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "agent")]


def _bench_module(name: str) -> Any:
    """`bench/<name>.py`, loaded by its path."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evaluator = _bench_module("evaluator")
python_loop_ms = _bench_module("cpu_baseline").python_loop_ms
basket_30, percentile, rule_set_50 = (
    evaluator.basket_30,
    evaluator.percentile,
    evaluator.rule_set_50,
)

import httpx  # noqa: E402
from agent_process import PHONE_KEY, TOKEN, AgentProcess, free_port, mark_fresh, write_config  # noqa: E402

from agent._clock import SystemClock  # noqa: E402
from agent._config import load_settings  # noqa: E402
from agent._models import (  # noqa: E402
    ConfirmRequest,
    IdentifierInput,
    QuoteRequest,
    ReserveRequest,
)
from agent._rulebook import install_rule_set  # noqa: E402
from agent._runtime import build_till  # noqa: E402
from agent._sales import Till  # noqa: E402
from protocol import Basket, PhoneHasher, RedeemRequest, freeze_startup_heap  # noqa: E402

BASKET_LINES = 10
"""A typical grocery cheque; `bench/evaluator.py` times the 30-line one alone."""
LOT_AT = "2026-01-10T00:00:00+00:00"


def card_number(n: int) -> str:
    body = f"277000{n:06d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def phone(n: int) -> str:
    return f"+7916{n:07d}"


def load_customers(db_path: Path, count: int) -> None:
    """Straight into the cache tables, as a snapshot would leave them."""
    hasher = PhoneHasher(bytes.fromhex(PHONE_KEY))
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    batch = 50_000
    for start in range(0, count, batch):
        numbers = range(start, min(start + batch, count))
        conn.executemany(
            "INSERT INTO customers(customer_id, status, state, first_name, change_seq) "
            "VALUES (?, 'active', ?, '', ?)",
            (
                (
                    f"c-{n}",
                    f'{{"customer_id":"c-{n}","tier":"silver","consent_marketing":true,'
                    f'"points_balance":5000,"rolling_spend":{n % 2_000_000},"lots":[{{'
                    f'"lot_id":"l-{n}","points":5000,"earned_at":"{LOT_AT}",'
                    f'"activates_at":"{LOT_AT}"}}]}}',
                    n + 1,
                )
                for n in numbers
            ),
        )
        conn.executemany(
            "INSERT INTO identifiers(kind, value, customer_id) VALUES (?, ?, ?)",
            (
                row
                for n in numbers
                for row in (
                    ("card", card_number(n), f"c-{n}"),
                    ("phone_hash", hasher(phone(n)), f"c-{n}"),
                )
            ),
        )
    conn.execute("COMMIT")
    conn.close()


def prepare(data_dir: Path, count: int) -> Path:
    config = write_config(data_dir, free_port(), rules=None)
    till = build_till(load_settings(config))
    with till.store.write() as db:
        install_rule_set(db, rule_set_50())
        mark_fresh(db, SystemClock())
    till.store.close()
    load_customers(data_dir / "till.db", count)
    return config


def timed(runs: int, action: Callable[[int], Any], warmup: int = 50) -> list[int]:
    for n in range(warmup):
        action(-1 - n)
    clock = time.perf_counter_ns
    samples = []
    for n in range(runs):
        start = clock()
        action(n)
        samples.append(clock() - start)
    samples.sort()
    return samples


def p99(samples: list[int]) -> float:
    return round(percentile(samples, 0.99), 4)


def p50(samples: list[int]) -> float:
    return round(percentile(samples, 0.50), 4)


def raw_commit(data_dir: Path, runs: int) -> list[int]:
    conn = sqlite3.connect(data_dir / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")

    def commit(n: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t(payload) VALUES (?)", (f"payload {n}",))
        conn.execute("COMMIT")

    samples = timed(runs, commit)
    conn.close()
    return samples


def basket() -> Basket:
    full = basket_30()
    return full.model_copy(update={"lines": full.lines[:BASKET_LINES]})


def in_process(till: Till, count: int, runs: int, data_dir: Path) -> dict[str, list[int]]:
    pick = random.Random(7)
    goods = basket()
    redeem = RedeemRequest(points=10)
    parts: dict[str, list[int]] = {"reserve": [], "confirm": []}
    clock = time.perf_counter_ns

    def card(_: int) -> IdentifierInput:
        return IdentifierInput(type="card", value=card_number(pick.randrange(count)))

    def quote(n: int) -> None:
        till.quote(QuoteRequest(customer=card(n), basket=goods, redeem=redeem))

    def reserve_confirm(n: int) -> None:
        cheque_id = f"bench-{n}-{pick.random()}"
        start = clock()
        till.reserve(
            ReserveRequest(cheque_id=cheque_id, customer=card(n), basket=goods, redeem=redeem)
        )
        reserved = clock()
        till.confirm(ConfirmRequest(cheque_id=cheque_id, fiscal_document="FD"))
        if n >= 0:  # the two halves of the timed runs, for the record (not a goal)
            parts["reserve"].append(reserved - start)
            parts["confirm"].append(clock() - reserved)

    def identify(_: int) -> None:
        found = till.identify(IdentifierInput(type="phone", value=phone(pick.randrange(count))))
        assert found.known

    results = {  # sales first, so quotes see an outbox with offline spending in it
        "raw_commit": raw_commit(data_dir, runs),
        "reserve_confirm": timed(runs, reserve_confirm),
        "quote": timed(runs * 2, quote),
        "identify": timed(runs * 2, identify),
    }
    results["raw_commit_after"] = raw_commit_again(data_dir, runs)
    return results | {name: sorted(samples) for name, samples in parts.items()}


def raw_commit_again(data_dir: Path, runs: int) -> list[int]:
    (data_dir / "raw.db").unlink()
    for suffix in ("-wal", "-shm"):
        (data_dir / f"raw.db{suffix}").unlink(missing_ok=True)
    return raw_commit(data_dir, runs)


def over_http(agent: AgentProcess, count: int, runs: int) -> dict[str, list[int]]:
    pick = random.Random(11)
    goods = json.loads(basket().model_dump_json())
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=agent.url, headers=headers, timeout=10) as client:

        def health(_: int) -> None:
            client.get("/health").raise_for_status()

        def sale(n: int) -> None:
            body = {
                "customer": {"type": "card", "value": card_number(pick.randrange(count))},
                "basket": goods,
                "redeem": {"points": 10},
            }
            client.post("/v1/quote", json=body).raise_for_status()
            cheque_id = f"http-{n}-{pick.random()}"
            client.post("/v1/reserve", json={"cheque_id": cheque_id, **body}).raise_for_status()
            done = {"cheque_id": cheque_id, "fiscal_document": "FD"}
            client.post("/v1/confirm", json=done).raise_for_status()

        def identify(_: int) -> None:
            body = {"type": "phone", "value": phone(pick.randrange(count))}
            client.post("/v1/identify", json=body).raise_for_status()

        return {
            "health": timed(runs * 2, health),
            "sale_http": timed(runs, sale),
            "identify_http": timed(runs * 2, identify),
            "health_after": timed(runs * 2, health),
        }


@contextlib.contextmanager
def checkpointing(till: Till, interval_s: float) -> Iterator[None]:
    """The agent's background WAL checkpoint job, for the in-process measurements."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            till.store.checkpoint()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 customers, 100 runs")
    parser.add_argument("--customers", type=int, default=None)
    args = parser.parse_args(argv)
    count = args.customers or (100_000 if args.quick else 1_000_000)
    runs = 100 if args.quick else 2000
    loop_before_ms = python_loop_ms()
    with tempfile.TemporaryDirectory(prefix="kopilka-bench-") as tmp:
        data_dir = Path(tmp) / "agent"
        began = time.monotonic()
        config = prepare(data_dir, count)
        load_s = time.monotonic() - began
        settings = load_settings(config)
        till = build_till(settings)
        freeze_startup_heap()  # as the agent does before it serves
        with checkpointing(till, settings.wal_checkpoint_interval_s):
            local = in_process(till, count, runs, data_dir)
        till.store.close()
        agent = AgentProcess(config)
        try:
            http = over_http(agent, count, runs)
            rss = rss_mb(agent.pid)
        finally:
            agent.stop()
    raw = sorted(local["raw_commit"] + local["raw_commit_after"])
    health = sorted(http["health"] + http["health_after"])
    result = {
        "customers": count,
        "rules": 50,
        "basket_lines": BASKET_LINES,
        "runs": runs,
        "load_s": round(load_s, 1),
        "quote_p50_ms": p50(local["quote"]),
        "quote_p99_ms": p99(local["quote"]),
        "reserve_confirm_p50_ms": p50(local["reserve_confirm"]),
        "reserve_confirm_p99_ms": p99(local["reserve_confirm"]),
        "reserve_p50_ms": p50(local["reserve"]),
        "reserve_p99_ms": p99(local["reserve"]),
        "confirm_p50_ms": p50(local["confirm"]),
        "confirm_p99_ms": p99(local["confirm"]),
        "raw_commit_p50_ms": p50(raw),
        "raw_commit_p99_ms": p99(raw),
        "sale_http_p50_ms": p50(http["sale_http"]),
        "sale_http_p99_ms": p99(http["sale_http"]),
        "health_http_p50_ms": p50(health),
        "health_http_p99_ms": p99(health),
        "identify_p50_ms": p50(local["identify"]),
        "identify_p99_ms": p99(local["identify"]),
        "identify_http_p50_ms": p50(http["identify_http"]),
        "identify_http_p99_ms": p99(http["identify_http"]),
        "rss_mb": rss,
        "python": platform.python_version(),
        "python_loop_ms": [loop_before_ms, python_loop_ms()],
    }
    goals = {
        "quote ≤ 1 ms": result["quote_p99_ms"] <= 1,
        "reserve+confirm ≤ 6× raw commit": result["reserve_confirm_p99_ms"]
        <= 6 * result["raw_commit_p99_ms"],
        "sale over HTTP ≤ 10 ms": result["sale_http_p99_ms"] <= 10,
        "identify ≤ 0.2 ms": result["identify_p99_ms"] <= 0.2,
        "identify over HTTP ≤ 1.5× /health": result["identify_http_p99_ms"]
        <= 1.5 * result["health_http_p99_ms"],
        "RSS ≤ 150 MB": result["rss_mb"] <= 150,
    }
    for name, met in goals.items():
        print(f"{'met   ' if met else 'MISSED'} {name}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
