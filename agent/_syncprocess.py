"""The sync job in a process of its own, supervised by the agent's POS process.

Parsing and applying a pull's pages is Python work. In the POS process it would hold the GIL
that the POS API's threads wait for, and a till back from a week offline spends seconds on it.
In a child process it competes for a core only, and at a lower CPU priority
(`sync_process_nice`) it gives way to the POS there too. The two processes share nothing but
the till's SQLite file (WAL: readers never wait, and writers take turns through `busy_timeout`)
and a file, `sync-wake` beside it, by which a hold's answer (or a void of a cheque central
held points for) ends the sync's wait and its backoff (a file needs no semaphore, which
multiprocessing's resource tracker would report as leaked at every stop). The sync's status
(online, last push and pull, the last error in words) is in the
database's `meta` table. While the child runs, it also checkpoints the WAL (it writes most of
it); the POS process does only while no child runs.

The child is started with `spawn` (the one start method on Windows, and the only safe one in a
process that already runs threads); it stops as soon as its parent is gone, whatever killed it.
The parent restarts a child that died, after a pause that grows while it keeps dying, and says
so in `last_sync_error`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import sqlite3
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import TYPE_CHECKING

from agent._clock import Clock
from agent._config import AgentSettings
from agent._store import TillStore, set_meta

if TYPE_CHECKING:
    from agent._sync import SyncClient, SyncReport

log = logging.getLogger("kopilka.agent.sync")
WAKE_FILE = "sync-wake"
restart_delay_s_max = 300.0
"""Longest pause before a child that keeps dying is started again."""
stable_run_s = 300.0
"""A child that ran this long before it died is restarted at once, not after a pause."""
stop_timeout_s = 10.0


def checkpoint_every(store: TillStore, interval_s: float) -> None:
    """Copy the WAL into the database file every `interval_s`, for the life of the process:
    the sync process writes most of the log (a week's catch-up rewrites the cached customers
    page after page), so it copies it too, at its own lower priority, where the POS process's
    copy would take a core at the POS's priority in the middle of the POS's requests. A
    failure is logged and tried again at the next turn (the log only grows meanwhile; SQLite
    copies it past `wal_autocheckpoint_pages` itself)."""
    while True:
        time.sleep(interval_s)
        try:
            store.checkpoint()
        except sqlite3.Error as error:
            log.warning("WAL checkpoint failed, trying again in %.0f s: %s", interval_s, error)


def _exit_when_gone(parent_sentinel: int) -> None:
    """Ends this process the moment the parent's sentinel fires: the parent exited or was
    killed. A sync cut short is safe: each write is one SQLite transaction, as after SIGKILL."""
    wait([parent_sentinel])
    os._exit(0)


def sync_process_main(settings: AgentSettings) -> None:
    """The child: syncs every `sync_interval_s` (plus up to `sync_jitter_s`) until its parent
    is gone."""
    from agent._runtime import build_till
    from agent._sync import SyncClient, load_credential

    parent = multiprocessing.parent_process()
    if parent is None:
        raise RuntimeError("the sync process runs only as the agent's child")
    watcher = threading.Thread(
        target=_exit_when_gone, args=(parent.sentinel,), name="parent-watch", daemon=True
    )
    watcher.start()
    if settings.sync_process_nice and hasattr(os, "nice"):  # POSIX; Windows keeps its class
        os.nice(settings.sync_process_nice)
    credential = load_credential(settings.data_dir)
    if credential is None:
        raise RuntimeError(f"no device credential in {settings.data_dir}")
    till = build_till(settings.model_copy(update={"rules_file": None}))
    client = SyncClient(till, credential, settings)
    threading.Thread(
        target=checkpoint_every,
        args=(till.store, settings.wal_checkpoint_interval_s),
        name="wal-checkpoint",
        daemon=True,
    ).start()
    rng = random.Random()
    wake = settings.data_dir / WAKE_FILE
    while True:
        sync_step(client, wake)
        wait_for_turn(wake, settings.sync_interval_s + rng.uniform(0, settings.sync_jitter_s))


wake_poll_s = 0.25
"""How often the child looks for the wake file while it waits for its next turn."""


def wait_for_turn(wake: Path, seconds: float) -> None:
    """Until the next sync is due, or sooner when the POS process made `wake` (central
    answered a hold; a cheque central held points for was voided: push it now, so that
    central releases the points for the next sale rather than a sync interval later)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not wake.exists():
        time.sleep(min(wake_poll_s, max(deadline - time.monotonic(), 0)))


def sync_step(client: SyncClient, wake: Path) -> SyncReport | None:
    """One turn of the child's loop: the `wake` file made since the last (central answered a
    hold in the POS process) ends the backoff, then `tick` syncs unless still backing off."""
    try:
        wake.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:  # Windows: the POS process has it open this instant
        log.info("sync-wake left for the next turn: %s", error)
    else:
        client.next_attempt_s = 0.0
    return client.tick()


class SyncProcess:
    """The parent's side: starts the child, restarts it when it died, stops it."""

    def __init__(self, settings: AgentSettings, store: TillStore, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.context = multiprocessing.get_context("spawn")
        self.wake = settings.data_dir / WAKE_FILE
        self.process: SpawnProcess | None = None
        self.started_s = 0.0
        self.start_after_s = 0.0
        self.deaths_in_a_row = 0
        self.restarts = 0
        self.stopped = False
        self.lock = threading.Lock()

    def running(self) -> bool:
        """Whether the child is alive now (and so checkpoints the WAL itself). Under the lock:
        `keep_running` and `stop` close a process object once it is no longer `self.process`."""
        with self.lock:
            process = self.process
            return process is not None and process.is_alive()

    def status(self) -> dict[str, int | None]:
        process = self.process
        return {"pid": None if process is None else process.pid, "restarts": self.restarts}

    def wake_up(self) -> None:
        """Central answered: the child's next tick syncs, backoff or not."""
        try:
            self.wake.touch()
        except OSError as error:  # the sale goes on; the sync waits out its backoff
            log.warning("cannot wake the sync process: %s", error)

    def keep_running(self) -> None:
        """Starts the child, or restarts it if it died (the agent's sync job, each interval)."""
        with self.lock:
            now = self.clock.boottime_s()
            if self.stopped:
                return
            if self.process is not None:
                if self.process.is_alive():
                    return
                died, self.process = self.process, None  # `status` never sees it closed
                self._died(died, now)
            if now < self.start_after_s:
                return
            process = self.context.Process(
                target=sync_process_main,
                args=(self.settings,),
                name="kopilka-sync",
                daemon=True,
            )
            process.start()
            self.process, self.started_s = process, now

    def _died(self, process: SpawnProcess, now: float) -> None:
        code = process.exitcode
        process.close()
        self.restarts += 1
        self.deaths_in_a_row = (
            1 if now - self.started_s >= stable_run_s else self.deaths_in_a_row + 1
        )
        delay_s = (
            0.0
            if self.deaths_in_a_row == 1
            else min(restart_delay_s_max, 2.0**self.deaths_in_a_row)
        )
        self.start_after_s = now + delay_s
        problem = f"the sync process stopped (exit code {code}); restarting it in {delay_s:.0f} s"
        log.error(problem)
        with self.store.write() as db:
            set_meta(db, "online", "0")
            set_meta(db, "last_sync_error", problem)

    def stop(self) -> None:
        with self.lock:
            process, self.process, self.stopped = self.process, None, True
        if process is None:
            return
        process.terminate()
        process.join(stop_timeout_s)
        if process.is_alive():
            process.kill()
            process.join(stop_timeout_s)
        process.close()
