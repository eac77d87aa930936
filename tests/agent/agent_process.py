"""A real `kopilka-agent run` process on loopback, over a seeded SQLite file.

The till database is seeded before the process starts, as a pull would have left it: cached
customers, HQ's offline limits and a fresh pull time by this machine's boot clock. Used by the
process tests, the docs test and `bench/agent.py`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from agent._cache import put_customer
from agent._clock import SystemClock
from agent._config import load_settings
from agent._runtime import PHONE_KEY_FILE, build_till
from agent._store import set_meta
from protocol import (
    CardIdentifier,
    CustomerState,
    Lot,
    OfflineLimits,
    PhoneHasher,
    PhoneHashIdentifier,
)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "examples" / "rules" / "base.toml"
AGENT = Path(sys.executable).with_name("kopilka-agent")
TOKEN = "pos-token-" + "x" * 22
PHONE_KEY = "ab" * 32
CARD = "2770000000017"
PHONE = "+79161234567"
ALLOWANCE_CARD = "2770000000024"
"""A second customer whose points only the offline-allowance test spends."""
PHONE_ONLY = "+79165550303"
"""A third customer, identified by phone alone in the phone-only cap test."""
LIMITS = OfflineLimits(
    customer_points_per_till_max=500,
    till_points_budget_max=1_000_000,
    phone_only_points_max=100,
    data_age_max_s=3600,
    reservation_ttl_s=600,
)
start_timeout_s = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(data_dir: Path, port: int, extra: str = "", rules: Path | None = RULES) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / PHONE_KEY_FILE).write_text(PHONE_KEY)
    path = data_dir.parent / f"{data_dir.name}.toml"
    rules_line = "" if rules is None else f'rules_file = "{rules}"\n'
    path.write_text(
        f'data_dir = "{data_dir}"\nlisten_port = {port}\napi_token = "{TOKEN}"\n'
        + rules_line
        + extra,
        encoding="utf-8",
    )
    return path


def customer(customer_id: str, points: int) -> CustomerState:
    earned = SystemClock().wall()
    return CustomerState(
        customer_id=customer_id,
        consent_marketing=True,
        points_balance=points,
        lots=(
            Lot(lot_id=f"l-{customer_id}", points=points, earned_at=earned, activates_at=earned),
        ),
    )


def seed(config: Path) -> None:
    """Three cached customers, HQ's offline limits and a pull that happened just now."""
    clock = SystemClock()
    till = build_till(load_settings(config), clock=clock)
    hasher = PhoneHasher(bytes.fromhex(PHONE_KEY))
    try:
        with till.store.write() as db:
            put_customer(
                db,
                customer("c-1", 1000),
                (CardIdentifier(number=CARD), PhoneHashIdentifier(phone_hash=hasher(PHONE))),
                first_name="Анна",
                change_seq=1,
            )
            put_customer(
                db, customer("c-2", 5000), (CardIdentifier(number=ALLOWANCE_CARD),), change_seq=2
            )
            put_customer(
                db,
                customer("c-3", 5000),
                (PhoneHashIdentifier(phone_hash=hasher(PHONE_ONLY)),),
                change_seq=3,
            )
            mark_fresh(db, clock)
    finally:
        till.store.close()


def mark_fresh(db: object, clock: SystemClock) -> None:
    """Inside a write: HQ's offline limits and a successful pull right now."""
    set_meta(db, "offline_limits", LIMITS.model_dump_json())  # type: ignore[arg-type]
    set_meta(db, "last_pull_boot_id", clock.boot_id())  # type: ignore[arg-type]
    set_meta(db, "last_pull_boottime_s", str(clock.boottime_s()))  # type: ignore[arg-type]


class AgentProcess:
    """`kopilka-agent --config F run` in its own process group, stopped with SIGTERM."""

    def __init__(self, config: Path) -> None:
        settings = load_settings(config)
        self.config = config
        self.data_dir = settings.data_dir
        self.url = f"http://127.0.0.1:{settings.listen_port}"
        self.log = config.with_suffix(".log")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(AGENT), "--config", str(config), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log.read_text(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"agent did not start: {self.log.read_text(errors='replace')}")

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@contextlib.contextmanager
def running_agent(data_dir: Path, extra: str = "") -> Iterator[AgentProcess]:
    """A seeded agent on a free port; stopped on the way out."""
    config = write_config(data_dir, free_port(), extra)
    seed(config)
    agent = AgentProcess(config)
    try:
        yield agent
    finally:
        agent.stop()
