"""`kopilka-central jobs`: run the processing jobs once (`--once`) or on their intervals,
without the HTTP service; and `JobsProcess`, the jobs `serve` runs in a child process unless
told `--no-jobs`."""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import signal
import threading
from typing import Any

import sqlalchemy as sa

from central import _db, _jobs
from central._clock import system_clock
from central._process import die_with_parent

log = logging.getLogger("kopilka.central.jobs")

jobs_process_nice = 10
"""The jobs process runs at a lower priority than `serve`: recomputing thousands of cheques
that a till pushed after a week offline must not slow the push and pull it comes from."""
jobs_restart_delay_s = 5.0
jobs_stop_timeout_s = 15.0


def add_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    jobs = commands.add_parser("jobs", help="run the processing jobs (each under its lease)")
    jobs.add_argument("--db", default="sqlite:///var/central.db")
    jobs.add_argument("--once", action="store_true", help="run each job once, print, exit")
    jobs.add_argument(
        "--job", action="append", choices=sorted(_jobs.BY_NAME), help="only this job (repeat)"
    )
    jobs.add_argument("--holder", default=None, help="name in the lease table (default: host:pid)")
    jobs.add_argument(
        "--every-s",
        type=int,
        default=None,
        help="run the chosen jobs every N s (default: each own)",
    )


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
    intervals_s = None if args.every_s is None else {job.name: args.every_s for job in chosen}
    scheduler = _jobs.Scheduler(
        engine, system_clock, holder=holder, intervals_s=intervals_s, only=args.job
    )
    _until_stopped(scheduler)
    return 0


def _until_stopped(scheduler: _jobs.Scheduler) -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    scheduler.start()
    stop.wait()
    scheduler.shutdown()


def _jobs_process(parent_pid: int, db_url: str) -> None:
    """The child process: every job on its interval until SIGTERM."""
    die_with_parent(parent_pid)
    os.nice(jobs_process_nice)
    logging.basicConfig(level=logging.WARNING)
    _until_stopped(_jobs.Scheduler(_db.make_engine(db_url), system_clock))


class JobsProcess:
    """`serve`'s processing jobs in a child process of their own, at a lower priority, so that
    they neither hold the service's interpreter lock nor take its share of the cores; the
    jobs take their leases and, on SQLite, the file's writer lock for each write, as pushes
    do. Restarted `jobs_restart_delay_s` after it dies; killed with `serve`."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._stop = threading.Event()
        self._child: Any = None
        self._watch = threading.Thread(target=self._supervise, name="central-jobs", daemon=True)

    def start(self) -> JobsProcess:
        self._watch.start()
        return self

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else int(child.pid)

    def _supervise(self) -> None:
        context = multiprocessing.get_context("spawn")
        while not self._stop.is_set():
            self._child = context.Process(
                target=_jobs_process,
                args=(os.getpid(), self.db_url),
                name="central-jobs",
                daemon=True,
            )
            self._child.start()
            while self._child.is_alive() and not self._stop.wait(0.5):
                pass
            if not self._stop.is_set():
                log.warning("the jobs process exited (%s); restarting", self._child.exitcode)
                self._stop.wait(jobs_restart_delay_s)

    def stop(self) -> None:
        self._stop.set()
        self._watch.join()
        child = self._child
        if child is None or not child.is_alive():
            return
        child.terminate()  # SIGTERM: the scheduler finishes the job it runs
        child.join(jobs_stop_timeout_s)
        if child.is_alive():
            child.kill()
            child.join()
