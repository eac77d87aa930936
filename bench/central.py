"""Push ingest at central over HTTP, beside a raw executemany INSERT of the same rows.

    .venv/bin/python bench/central.py --quick      # under a minute
    .venv/bin/python bench/central.py              # the full run

For each backend (SQLite file; PostgreSQL when it answers at $KOPILKA_TEST_POSTGRES, default
postgresql://postgres@127.0.0.1:5432/test, in a database made for the run and dropped after):
a real `kopilka-central serve --workers 2` (`--pg-workers`, `--sqlite-workers`), 50 simulated
devices pushing their outboxes at once in batches (bodies prepared before the clock starts),
then the same ledger rows inserted with `executemany` through the same driver, one
transaction per batch, into a copy of the ledger table with the same indexes. The last line
is one JSON object; besides the rates it carries the server processes' CPU time per entry
(`server_cpu_us_per_entry`), steadier than wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpu_baseline import python_loop_ms  # noqa: E402  # bench/ is this script's own folder

from central import _tables as t  # noqa: E402
from central import make_engine, migrate  # noqa: E402
from central._clock import to_ms  # noqa: E402
from central._directory import enroll, issue_enrollment_code, put_store  # noqa: E402
from central._push import _ledger_row  # noqa: E402
from protocol import (  # noqa: E402
    CustomerAccount,
    EnrollRequest,
    EntryKind,
    LedgerEntry,
    PushItem,
    PushRequest,
    Store,
    UUIDv7Generator,
    canonical_json,
    sha256_hex,
)
from tests.central.servers import CentralProcess  # noqa: E402

devices_count = 50
customers_count = 2000
batch_entries = 500
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _setup(engine: sa.Engine) -> list[tuple[str, int, str]]:
    now_ms = to_ms(NOW)
    with engine.begin() as conn:
        put_store(conn, Store(store_id="bench", name="Bench"), now_ms)
        conn.execute(
            sa.insert(t.customers),
            [
                {
                    "customer_id": f"c{index}",
                    "status": "active",
                    "consent_marketing": False,
                    "consent_data": True,
                    "created_ms": now_ms,
                    "updated_ms": now_ms,
                }
                for index in range(customers_count)
            ],
        )
        tills = []
        for _ in range(devices_count):
            code, _ = issue_enrollment_code(conn, "bench", now_ms)
            done = enroll(conn, EnrollRequest(code=code), now_ms)
            tills.append((done.device_id, done.device_epoch, done.secret))
    return tills


def _outboxes(
    tills: list[tuple[str, int, str]], batches: int
) -> tuple[list[list[bytes]], list[dict[str, Any]]]:
    """Request bodies per device, and the ledger rows they carry (for the raw insert)."""
    rng = random.Random(7)
    make_id = UUIDv7Generator()
    bodies: list[list[bytes]] = []
    rows: list[dict[str, Any]] = []
    for device_id, epoch, _ in tills:
        mine = []
        seq = 1
        for _ in range(batches):
            items = []
            for _ in range(batch_entries):
                amount = rng.choice([5, 12, 40, -10])
                entry = LedgerEntry(
                    entry_id=make_id(),
                    device_id=device_id,
                    device_epoch=epoch,
                    device_seq=seq,
                    kind=EntryKind.earn if amount > 0 else EntryKind.burn,
                    account=CustomerAccount(customer_id=f"c{rng.randrange(customers_count)}"),
                    amount=amount,
                    cheque_id=f"pos-{seq}",
                    device_time=NOW,
                )
                payload = canonical_json(entry)
                digest = sha256_hex(payload)
                items.append(PushItem(seq=seq, payload=payload.decode(), payload_sha256=digest))
                rows.append(_ledger_row(entry, payload, digest, to_ms(NOW)))
                seq += 1
            request = PushRequest(
                device_id=device_id, device_epoch=epoch, items=tuple(items), device_time=NOW
            )
            mine.append(request.model_dump_json().encode())
        bodies.append(mine)
    return bodies, rows


async def _push_all(
    url: str, tills: list[tuple[str, int, str]], bodies: list[list[bytes]]
) -> float:
    limits = httpx.Limits(max_connections=devices_count, max_keepalive_connections=devices_count)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def device(secret: str, mine: list[bytes]) -> None:
            headers = {"Authorization": f"Bearer {secret}", "content-type": "application/json"}
            for body in mine:
                response = await client.post("/sync/push", content=body, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"push refused: {response.status_code} {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(device(s, m) for (_, _, s), m in zip(tills, bodies, strict=True)))
        return time.perf_counter() - started


def _raw_insert(engine: sa.Engine, rows: list[dict[str, Any]]) -> float:
    raw = t.ledger.to_metadata(sa.MetaData(), name="bench_raw_ledger")
    for index in raw.indexes:
        index.name = f"raw_{index.name}"
    for constraint in raw.constraints:
        if constraint.name:
            constraint.name = f"raw_{constraint.name}"
    raw.create(engine)
    names = list(rows[0])
    with engine.connect() as probe:
        mark = "?" if probe.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {raw.name} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))})"
    tuples = [tuple(row[name] for name in names) for row in rows]
    started = time.perf_counter()
    for start in range(0, len(tuples), batch_entries):
        with engine.begin() as conn:
            conn.exec_driver_sql(sql, tuples[start : start + batch_entries])
    return time.perf_counter() - started


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children so far, from /proc (0 where
    there is no /proc). Steadier than wall time on a shared machine."""
    ticks = 0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [pid, *map(int, children.read_text().split())] if children.exists() else [pid]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _check(engine: sa.Engine, total: int) -> None:
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(t.ledger)).scalar_one()
        ledger_sum = conn.execute(sa.select(sa.func.sum(t.ledger.c.amount))).scalar_one()
        account_sum = conn.execute(sa.select(sa.func.sum(t.accounts.c.balance))).scalar_one()
    if count != total or ledger_sum != account_sum:
        raise RuntimeError(f"ledger has {count} of {total}; sums {ledger_sum} vs {account_sum}")


def run_backend(name: str, url: str, batches: int, log: Path, workers: int = 1) -> dict[str, float]:
    engine = make_engine(url)
    migrate(engine)
    tills = _setup(engine)
    started = time.perf_counter()
    bodies, rows = _outboxes(tills, batches)
    print(
        f"{name}: {len(rows)} entries prepared in {time.perf_counter() - started:.1f} s", flush=True
    )
    server = CentralProcess(url, log, workers=workers).start()
    try:
        assert server.process is not None
        cpu_before_s = _cpu_s(server.process.pid)
        elapsed = asyncio.run(_push_all(server.url, tills, bodies))
        cpu_s = _cpu_s(server.process.pid) - cpu_before_s
    finally:
        server.stop()
    _check(engine, len(rows))
    raw_elapsed = _raw_insert(engine, rows)
    engine.dispose()
    result: dict[str, float] = {
        "entries": len(rows),
        "entries_per_s": round(len(rows) / elapsed),
        "raw_rows_per_s": round(len(rows) / raw_elapsed),
    }
    result["share_of_raw"] = round(result["entries_per_s"] / result["raw_rows_per_s"], 3)
    result["server_cpu_us_per_entry"] = round(cpu_s / len(rows) * 1e6)
    print(f"{name}: {json.dumps(result)}", flush=True)
    return result


def _postgres_database() -> tuple[str, str, str] | None:
    import psycopg

    admin = os.environ.get("KOPILKA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"kopilka_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'create database "{name}"')
    except psycopg.Error as error:
        print(f"postgresql: skipped ({error})", flush=True)
        return None
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return admin, name, f"{base}/{name}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--pg-workers", type=int, default=2, help="central processes on PG")
    parser.add_argument("--sqlite-workers", type=int, default=2, help="central processes on SQLite")
    args = parser.parse_args(argv)
    global batch_entries
    batches = 1 if args.quick else 6
    if args.quick:
        batch_entries = 300
    results: dict[str, Any] = {}
    loop_before_ms = python_loop_ms()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/central.db"
        results["sqlite"] = run_backend(
            "sqlite", url, batches, Path(folder) / "sqlite.log", args.sqlite_workers
        )
        made = _postgres_database()
        if made is None:
            results["postgresql"] = None
        else:
            import psycopg

            admin, name, pg_url = made
            try:
                results["postgresql"] = run_backend(
                    "postgresql", pg_url, batches, Path(folder) / "pg.log", args.pg_workers
                )
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'drop database if exists "{name}" with (force)')
    results["python_loop_ms"] = [loop_before_ms, python_loop_ms()]
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
