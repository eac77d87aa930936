"""`kopilka-central jobs`: run the processing jobs once (`--once`) or on their intervals,
without the HTTP service; and the scheduler `serve` starts unless told `--no-jobs`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from typing import Any

import sqlalchemy as sa

from central import _jobs
from central._clock import system_clock


def add_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    jobs = commands.add_parser("jobs", help="run the processing jobs (each under its lease)")
    jobs.add_argument("--db", default="sqlite:///var/central.db")
    jobs.add_argument("--once", action="store_true", help="run each job once, print, exit")
    jobs.add_argument(
        "--job", action="append", choices=sorted(_jobs.BY_NAME), help="only this job (repeat)"
    )
    jobs.add_argument("--holder", default=None, help="name in the lease table (default: host:pid)")


def start_scheduler(engine: sa.Engine) -> _jobs.Scheduler:
    scheduler = _jobs.Scheduler(engine, system_clock)
    scheduler.start()
    return scheduler


def run(engine: sa.Engine, args: Any) -> int:
    holder = args.holder or _jobs.holder_name()
    chosen = [_jobs.BY_NAME[name] for name in args.job] if args.job else list(_jobs.JOBS)
    if args.once:
        failed = False
        for job in chosen:
            outcome = _jobs.run(engine, job, system_clock(), holder)
            failed = failed or outcome.error is not None
            print(json.dumps({**outcome.__dict__, "holder": holder}), flush=True)
        return 1 if failed else 0
    logging.basicConfig(level=logging.INFO)
    scheduler = _jobs.Scheduler(engine, system_clock, holder=holder)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    scheduler.start()
    stop.wait()
    scheduler.shutdown()
    return 0
