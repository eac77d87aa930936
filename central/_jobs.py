"""Central's processing jobs: each under a database lease, each idempotent, each a plain
function of (engine, now) that tests call directly with their own clock.

`run(engine, job, now, holder)` takes the job's lease, runs it once, records what it did in
`job_state` (HQ reads it at `GET /admin/jobs`) and gives the lease back. Idempotence does not
rest on the lease: every unit of work claims its row (a lot, a cheque, a debt) with an
`UPDATE ... WHERE <not done yet>` in the same transaction as the entries it writes, and every
entry central writes for a job carries a unique key in `grants`. `Scheduler` runs every job
on an interval in a background thread (APScheduler 3) for `kopilka-central serve` and
`kopilka-central jobs`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from central import _changes, _debts, _holds, _lease, _lots, _recompute, _rolling
from central import _tables as t
from central._clock import Clock, to_ms

log = logging.getLogger("kopilka.central.jobs")

lease_ttl_ms_default = 10 * 60 * 1000
error_chars_max = 500

Work = Callable[[sa.Engine, datetime], tuple[int, "int | None"]]


@dataclass(frozen=True)
class Job:
    name: str
    work: Work
    interval_s: int
    what: str


JOBS: tuple[Job, ...] = (
    Job("debts", _debts.report, 30, "file a conflict for each overspend push recorded as debt"),
    Job("recompute", _recompute.recompute, 30, "recompute cheques with their stamped versions"),
    Job("refunds", _recompute.reconcile_refunds, 60, "reconcile refunds of foreign cheques"),
    Job("resolve", _lots.resolve, 60, "move entries on identifiers central now knows"),
    Job("activate", _lots.activate, 300, "activate points whose return window has passed"),
    Job("expire", _lots.expire, 3600, "expire lots after expiry + the maximum offline window"),
    Job("holds", _holds.expire, 60, "record expired online holds"),
    Job("rolling", _rolling.roll, 3600, "keep rolling spend to the rule set's window"),
    Job("prune", _changes.prune_old, 3600, "drop change-log rows past their retention"),
)
BY_NAME = {job.name: job for job in JOBS}


@dataclass(frozen=True)
class Outcome:
    job: str
    ran: bool
    items: int = 0
    lag_ms: int | None = None
    error: str | None = None


def holder_name() -> str:
    """This process, for the lease table: host, pid and a random suffix."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run(
    engine: sa.Engine,
    job: Job,
    now: datetime,
    holder: str,
    lease_ttl_ms: int = lease_ttl_ms_default,
) -> Outcome:
    """Run `job` once if its lease is free; `ran=False` when another process holds it."""
    now_ms = to_ms(now)
    if not _lease.take(engine, job.name, holder, now_ms, lease_ttl_ms):
        return Outcome(job.name, ran=False)
    try:
        _record(engine, job.name, holder, now_ms, started=True)
        try:
            items, lag_ms = job.work(engine, now)
        except Exception as error:  # recorded for HQ; the next run retries
            message = f"{type(error).__name__}: {error}"[:error_chars_max]
            log.exception("job %s failed", job.name)
            _record(engine, job.name, holder, now_ms, error=message)
            return Outcome(job.name, ran=True, error=message)
        _record(engine, job.name, holder, now_ms, items=items, lag_ms=lag_ms)
        return Outcome(job.name, ran=True, items=items, lag_ms=lag_ms)
    finally:
        _lease.release(engine, job.name, holder)


def run_all(engine: sa.Engine, now: datetime, holder: str) -> list[Outcome]:
    return [run(engine, job, now, holder) for job in JOBS]


def _record(
    engine: sa.Engine,
    name: str,
    holder: str,
    now_ms: int,
    *,
    started: bool = False,
    items: int = 0,
    lag_ms: int | None = None,
    error: str | None = None,
) -> None:
    with engine.begin() as conn:
        exists = conn.execute(
            sa.select(t.job_state.c.name).where(t.job_state.c.name == name)
        ).first()
        if exists is None:
            conn.execute(
                sa.insert(t.job_state).values(name=name, runs=0, items_last=0, items_total=0)
            )
        where = t.job_state.c.name == name
        values: dict[str, Any]
        if started:
            values = {
                "runs": t.job_state.c.runs + 1,
                "last_holder": holder,
                "last_started_ms": now_ms,
            }
        elif error is not None:
            values = {"last_finished_ms": now_ms, "last_error": error}
        else:
            values = {
                "last_finished_ms": now_ms,
                "last_ok_ms": now_ms,
                "last_error": None,
                "items_last": items,
                "items_total": t.job_state.c.items_total + items,
                "lag_ms": lag_ms,
            }
        conn.execute(sa.update(t.job_state).where(where).values(values))


def states(conn: sa.Connection, now_ms: int) -> list[dict[str, Any]]:
    """Each job with its last run, its lag and who holds its lease now."""
    rows = {row.name: row for row in conn.execute(sa.select(t.job_state))}
    out = []
    for job in JOBS:
        row = rows.get(job.name)
        state = dict(row._mapping) if row is not None else {"name": job.name, "runs": 0}
        state.update(
            what=job.what,
            interval_s=job.interval_s,
            lease_holder=_lease.holder_of(conn, job.name, now_ms),
        )
        out.append(state)
    return out


class Scheduler:
    """Every job on its interval in a background thread; each run takes the job's lease, so
    several central processes can all run a Scheduler."""

    def __init__(
        self,
        engine: sa.Engine,
        clock: Clock,
        holder: str | None = None,
        intervals_s: dict[str, int] | None = None,
        only: Collection[str] | None = None,
    ) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.engine = engine
        self.clock = clock
        self.holder = holder or holder_name()
        self._scheduler = BackgroundScheduler(timezone="UTC")
        for job in JOBS if only is None else [BY_NAME[name] for name in only]:
            every = (intervals_s or {}).get(job.name, job.interval_s)
            self._scheduler.add_job(
                self._tick,
                "interval",
                seconds=every,
                args=[job.name],
                id=job.name,
                max_instances=1,
                coalesce=True,
                next_run_time=self.clock(),
            )

    def _tick(self, name: str) -> None:
        outcome = run(self.engine, BY_NAME[name], self.clock(), self.holder)
        if outcome.ran:
            log.info("job %s: %s items, lag %s ms", name, outcome.items, outcome.lag_ms)

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=True)
