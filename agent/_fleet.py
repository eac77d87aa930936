"""Real processes on loopback: central and till agents, started, waited for, stopped.

The main job (`kopilka-agent demo`) and the end-to-end tests run the product this way. Only
processes are started here: the agent package never imports central's code. On Linux each dies
with the process that started it, however that one ends.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

start_timeout_s = 30.0
stop_timeout_s = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _dying_with_this_process() -> Callable[[], None] | None:
    """For `Popen(preexec_fn=...)`: the child gets SIGKILL when this process dies, however it
    dies (SIGKILL included, when nothing here can stop it), and exits at once if this process
    died before the child could ask for that. Linux only (`PR_SET_PDEATHSIG`); elsewhere None.

    The signal follows the thread that started the child: start long-lived children from a
    thread that lives as long as they should (the main thread, here)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not after
    parent = os.getpid()

    def in_child() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return in_child


def _cli(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@dataclass
class Process:
    name: str
    argv: list[str]
    url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            preexec_fn=_dying_with_this_process(),
        )
        log.close()
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout_s: float = start_timeout_s) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout_s} s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)
            self.popen.wait(timeout=stop_timeout_s)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid


class Central:
    """`kopilka-central serve` on an SQLite file (or any --db URL), with an admin token."""

    def __init__(self, workdir: Path, port: int | None = None, db_url: str | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or f"sqlite:///{workdir / 'central.db'}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        subprocess.run(
            _cli("central.cli", "migrate", "--db", self.db_url), check=True, capture_output=True
        )
        token = subprocess.run(
            _cli("central.cli", "admin-token", "--db", self.db_url),
            check=True,
            capture_output=True,
            text=True,
        )
        self.admin_token = token.stdout.strip().splitlines()[-1]
        self.messages = workdir / "messages.jsonl"
        """Where central's confirmation codes go (one JSON line each), standing in for SMS."""
        self.process = Process(
            "central",
            _cli(
                "central.cli",
                "serve",
                "--db",
                self.db_url,
                "--port",
                str(self.port),
                "--message-gateway",
                f"file:{self.messages}",
            ),
            self.url,
            workdir / "central.log",
        )
        self.admin = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10
        )

    def start(self) -> Central:
        self.process.start()
        return self

    def close(self) -> None:
        self.process.kill()
        self.admin.close()

    def run_jobs(self) -> str:
        """Run central's processing jobs once (debts, recomputation, grants…), as `serve`'s
        scheduler does on its intervals."""
        done = subprocess.run(
            _cli("central.cli", "jobs", "--once", "--db", self.db_url),
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.admin.request(method, f"/admin{path}", json=body)
        if answer.status_code >= 300:
            raise RuntimeError(f"central {method} {path}: {answer.status_code} {answer.text}")
        return answer.json()


class Agent:
    """`kopilka-agent run` with its own data folder, config file and POS token."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        central_url: str | None,
        code: str | None,
        extra: dict[str, Any] | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.data_dir = workdir / name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = f"pos-token-{name}-0123456789"
        config = {
            "data_dir": str(self.data_dir),
            "listen_port": self.port,
            "api_token": self.token,
            "sync_interval_s": 0.5,
            "sync_jitter_s": 0.1,
            "http_timeout_s": 3.0,
            "hold_timeout_s": 1.0,
            "sync_backoff_s_max": 2.0,
            **({"central_url": central_url, "enroll_code": code} if central_url else {}),
            **(extra or {}),
        }
        self.config_path = self.data_dir / "agent.toml"
        self.config_path.write_text(_toml(config), encoding="utf-8")
        self.process = Process(
            name,
            _cli("agent.cli", "--config", str(self.config_path), "run"),
            self.url,
            workdir / f"{name}.log",
        )
        self.pos = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    def start(self) -> Agent:
        self.process.start()
        return self

    def close(self) -> None:
        self.process.kill()
        self.pos.close()

    def call(self, path: str, body: Any = None) -> Any:
        answer = self.pos.post(path, json=body) if body is not None else self.pos.get(path)
        if answer.status_code >= 300:
            raise RuntimeError(f"{self.name} {path}: {answer.status_code} {answer.text}")
        return answer.json()

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("/v1/status")
        return result

    def wait_synced(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Until the outbox is empty and a pull happened after it; the last status."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status()
            if status["online"] and status["outbox_depth"] == 0 and status["last_pull"]:
                time.sleep(1.2)  # one more pull after the last push
                return self.status()
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not sync in {timeout_s} s: {self.status()}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items())
        return "{ " + inner + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml(config: dict[str, Any]) -> str:
    """A flat TOML document (tables inline): enough for the agent's config."""
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in config.items())
