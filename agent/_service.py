"""The running agent: the till, its POS API, its devices and its background jobs together."""

from __future__ import annotations

import logging
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import sqlite_utils
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import APIRouter

from agent import _outbox
from agent._allowance import data_age_s
from agent._api import create_app
from agent._balances import pull_cursor
from agent._cache import customer_count
from agent._clock import Clock, SystemClock
from agent._config import AgentSettings
from agent._devices import Devices
from agent._errors import HoldRefused
from agent._rulebook import RuleBook
from agent._runtime import build_till, enrolled_settings
from agent._sales import Till
from protocol import HoldRequest, HoldResponse, freeze_startup_heap

if TYPE_CHECKING:
    from agent._sync import SyncClient
    from agent._syncprocess import SyncProcess

log = logging.getLogger("kopilka.agent")
TOKEN_FILE = "api-token"
enroll_backoff_s_max = 300.0


def ensure_token(settings: AgentSettings) -> str:
    """The POS token: from settings, else from `data_dir/api-token`, made once (mode 0600)."""
    if settings.api_token is not None:
        return settings.api_token
    path = settings.data_dir / TOKEN_FILE
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def till_status(till: Till) -> dict[str, Any]:
    """What `/v1/status` says (see `status_report`)."""
    with till.store.read() as db:
        store_id = till.settings.store.store_id
        return status_report(db, till.store.path.parent, store_id, till.rulebook, till.clock)


def status_report(
    db: sqlite_utils.Database, data_dir: Path, store_id: str, rulebook: RuleBook, clock: Clock
) -> dict[str, Any]:
    """What `status` and `/v1/status` say, from one snapshot of the till's database: sync
    state, outbox, data age, rules. Reads only, so `status` can use it on a read-only one."""
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    pulled_at = meta.get("last_pull_boottime_s")
    age = data_age_s(
        meta.get("last_pull_boot_id"),
        None if pulled_at is None else float(pulled_at),
        clock.boot_id(),
        clock.boottime_s(),
    )
    rule_set = rulebook.active(db, clock.wall())
    return {
        "device_id": meta.get("device_id"),
        "epoch": int(meta["device_epoch"]) if "device_epoch" in meta else None,
        "enrolled": (data_dir / "device.json").exists(),
        "online": meta.get("online") == "1",
        "last_push": meta.get("last_push_at"),
        "last_pull": meta.get("last_pull_at"),
        "last_sync_error": meta.get("last_sync_error"),
        "outbox_depth": _outbox.depth(db),
        "pull_cursor": pull_cursor(db),
        "data_age_s": None if age is None else int(age),
        "customers_cached": customer_count(db),
        "rule_set": {"id": rule_set.rule_set_id, "hash": rule_set.content_hash},
        "store": store_id,
    }


class AgentService:
    def __init__(
        self,
        settings: AgentSettings,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.sync: SyncClient | None = None
        """Central's client: the sync job's in `thread` mode, only the holds' in `process`."""
        self.sync_process: SyncProcess | None = None
        self.enroll_after_s = 0.0
        self.enroll_failures = 0
        self.till = build_till(settings, clock=clock or SystemClock())
        self.token = ensure_token(settings)
        self.devices = Devices(settings.devices, self.till, settings.session_ttl_s)
        self.scheduler = BackgroundScheduler(daemon=True)
        self.app = create_app(
            self.till,
            self.token,
            self.status,
            settings.request_body_bytes_max,
            extra_routes=self._session_routes,
        )

    def status(self) -> dict[str, Any]:
        process = None if self.sync_process is None else self.sync_process.status()
        return {**till_status(self.till), "sync_process": process, **self.devices.status()}

    def _session_routes(self, router: APIRouter) -> None:
        @router.get("/session")
        def session() -> dict[str, Any]:
            """The customer last identified by this till's own scanner or card reader."""
            current = self.devices.session()
            if current is None:
                return {"identified": None}
            found, given = current.identification, current.given
            return {
                "device": current.device,
                "identified": None if found is None else found.model_dump(mode="json"),
                "customer": None if given is None else given.model_dump(mode="json"),
                "problem": current.problem,
            }

        @router.delete("/session")
        def clear_session() -> dict[str, Any]:
            """The cashier is done with this customer."""
            self.devices.clear_session()
            return {"identified": None}

    def _connect(self) -> None:
        """Enroll if configured to and not yet enrolled; then sync through the credential."""
        from agent._sync import SyncClient, SyncError, enroll, load_credential

        if self.sync is not None:
            return
        credential = load_credential(self.settings.data_dir)
        url, code = self.settings.central_url, self.settings.enroll_code
        if credential is None and url and code and time.monotonic() >= self.enroll_after_s:
            try:
                enroll(
                    self.till,
                    self.settings.data_dir,
                    url,
                    code,
                    transport=self.transport,
                    timeout_s=self.settings.http_timeout_s,
                )
            except (SyncError, httpx.HTTPError) as error:
                self.enroll_failures += 1
                delay_s = min(enroll_backoff_s_max, 2.0**self.enroll_failures)
                self.enroll_after_s = time.monotonic() + delay_s
                log.warning("enrollment failed, retrying in %.0f s: %s", delay_s, error)
                return
            credential = load_credential(self.settings.data_dir)
            self.till.settings = enrolled_settings(self.till.settings, self.settings)
            self.devices.restart_readers()  # they decode with the chain's card ranges now
        if credential is None:
            return
        self.sync = SyncClient(self.till, credential, self.settings, transport=self.transport)
        if self.settings.sync_runs_in == "thread":
            self.till.central_hold = self.sync.hold
            return
        from agent._syncprocess import SyncProcess

        self.sync_process = SyncProcess(self.settings, self.till.store, self.till.clock)
        self.till.central_hold = self._hold
        self.till.on_central_release = self.sync_process.wake_up

    def _hold(self, request: HoldRequest) -> HoldResponse | None:
        """A hold through this process's client; an answer from central also ends the sync
        process's backoff (`SyncClient.hold` ends only its own client's)."""
        assert self.sync is not None
        assert self.sync_process is not None
        try:
            answer = self.sync.hold(request)
        except HoldRefused:
            self.sync_process.wake_up()
            raise
        if answer is not None:
            self.sync_process.wake_up()
        return answer

    def sync_tick(self) -> None:
        """Enrolls when due; then syncs (`thread`), or keeps the sync process running."""
        self._connect()
        if self.sync_process is not None:
            self.sync_process.keep_running()
        elif self.sync is not None:
            self.sync.tick()

    def start_background(self) -> None:
        self.devices.start()
        self.scheduler.add_job(
            self.sync_tick,
            "interval",
            seconds=self.settings.sync_interval_s,
            jitter=self.settings.sync_jitter_s,
            id="sync",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.add_job(
            self._expire,
            "interval",
            seconds=self.settings.expiry_check_interval_s,
            id="expire-reservations",
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self._checkpoint,
            "interval",
            seconds=self.settings.wal_checkpoint_interval_s,
            id="wal-checkpoint",
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.start()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file, unless the sync process runs: it does then,
        at its lower priority (`checkpoint_every`)."""
        if self.sync_process is not None and self.sync_process.running():
            return
        self.till.store.checkpoint()

    def _expire(self) -> None:
        expired = self.till.expire_reservations()
        if expired:
            log.warning("reservations expired unconfirmed: %s", ", ".join(expired))

    def stop_background(self) -> None:
        self.scheduler.shutdown(wait=False)
        if self.sync_process is not None:
            self.sync_process.stop()
        self.devices.stop()

    def serve(self) -> None:
        """Run until stopped (SIGTERM/SIGINT); the POS API listens on loopback only."""
        self.start_background()
        freeze_startup_heap()
        try:
            uvicorn.run(
                self.app,
                host=self.settings.listen_host,
                port=self.settings.listen_port,
                log_level="warning",
                access_log=False,
                proxy_headers=False,  # loopback only: no proxy, no forwarded addresses to trust
            )
        finally:
            self.stop_background()
