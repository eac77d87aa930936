"""The agent as stores get it: built with PyInstaller, run from its folder, no Python around it.

Builds `dist/kopilka-agent/` (into a temporary folder) with `installer/build.sh`, starts it with a
configuration in a temporary directory, enrolls nothing (no central: the phone-hash key that
enrollment would deliver is put in the data folder by hand), makes a sale with a phone
identifier through the local API, prints the slip to a file printer, stops the agent, starts it
again and finds the sale.

Too slow for the main suite (a build takes minutes on a fresh machine): `installer/check.sh`
runs it, and CI runs that after the suite. The size and the time to a healthy `/health` on the
first start after the build go to `build/installer/report.json` (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers import view_escpos

ROOT = Path(__file__).resolve().parents[2]
NAME = "kopilka-agent"
BUILD_VENV = ROOT / "build" / "installer" / "venv"
REPORT = ROOT / "build" / "installer" / "report.json"
TOKEN = "installer-test-token-0123456789"
PHONE_KEY = "cd" * 32
PHONE = "8 (916) 123-45-67"
SIZE_GOAL_BYTES = 60 * 1000 * 1000
HEALTHY_GOAL_S = 1.5
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0

pytestmark = [
    pytest.mark.installer,
    pytest.mark.skipif(
        os.environ.get("KOPILKA_INSTALLER_TEST") != "1",
        reason="builds the PyInstaller binary, which takes minutes: run by installer/check.sh",
    ),
    pytest.mark.timeout(1800),
]


def _report(**values: Any) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    current.update(values)
    REPORT.write_text(json.dumps(current, indent=2) + "\n")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    REPORT.unlink(missing_ok=True)
    started = time.monotonic()
    subprocess.run(
        ["bash", str(ROOT / "installer" / "build.sh")],
        env={**os.environ, "KOPILKA_DIST_DIR": str(dist)},
        check=True,
        timeout=1500,
    )
    _report(build_s=round(time.monotonic() - started, 1))
    return dist / NAME


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def till(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | int]:
    folder = tmp_path_factory.mktemp("till")
    data = folder / "data"
    data.mkdir()
    (data / "phone-hash.key").write_text(PHONE_KEY)
    slip = folder / "slip.bin"
    slip.touch()  # a file printer writes to a device that exists, as /dev/usb/lp0 does
    port = _free_port()
    config = folder / "agent.toml"
    config.write_text(
        f"""
data_dir = "{data}"
listen_port = {port}
api_token = "{TOKEN}"
rules_file = "{ROOT / "examples" / "rules" / "base.toml"}"

[store]
store_id = "store-1"
name = "Магазин у дома"

[[devices.printers]]
name = "slip"
transport = {{ kind = "file", path = "{slip}" }}
status_query = false
""",
        encoding="utf-8",
    )
    return {"config": config, "data": data, "slip": slip, "port": port}


class Agent:
    """The built agent in its own process, as systemd would run it."""

    def __init__(self, bundle: Path, config: Path, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = config.with_name(f"agent-{time.monotonic_ns()}.log")
        self.started = time.monotonic()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(bundle / NAME), "--config", str(config), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
            )
        self.healthy_s = self._wait_healthy()
        self.healthy_cpu_s = _cpu_seconds(self.process.pid)
        self.client = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def _wait_healthy(self) -> float:
        deadline = self.started + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"agent exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base}/health", timeout=0.5).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        pytest.fail(f"no healthy /health within {START_TIMEOUT_S} s:\n{self.output()}")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(path, json=body)
        assert response.status_code == 200, (path, response.status_code, response.text)
        answer: dict[str, Any] = response.json()
        return answer

    def stop(self) -> None:
        """SIGTERM, as systemd stops it. uvicorn shuts down gracefully, then re-raises the
        signal, so the process ends by SIGTERM (a clean stop for systemd) or with 0."""
        self.client.close()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=STOP_TIMEOUT_S)
        assert code in (0, -signal.SIGTERM), f"exit {code}:\n{self.output()}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.client.close()
        if agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait()


def _basket() -> dict[str, Any]:
    return json.loads((ROOT / "examples" / "basket.json").read_text(encoding="utf-8"))


def _wait_for_slip(path: Path) -> bytes:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            time.sleep(0.2)  # the worker writes one slip in one go; let it finish
            return path.read_bytes()
        time.sleep(0.05)
    pytest.fail(f"no slip in {path}")


def test_sale_by_phone_survives_a_restart(
    bundle: Path, till: dict[str, Any], agents: list[Agent]
) -> None:
    first = Agent(bundle, till["config"], till["port"])
    agents.append(first)
    _report(
        first_start_healthy_s=round(first.healthy_s, 3),
        first_start_healthy_cpu_s=round(first.healthy_cpu_s, 2),
        load_average_1min=os.getloadavg()[0],
    )
    # The wall-clock goal is recorded, not asserted: the machine is shared, and with other work
    # on both cores the wall time says more about the neighbours than about the agent. The CPU
    # the agent spent getting there is its own; three times the goal in CPU is a fault.
    assert first.healthy_cpu_s <= HEALTHY_GOAL_S * 3, first.output()

    customer = {"type": "phone", "value": PHONE}
    identified = first.post("/v1/identify", customer)
    assert identified["known"] is False  # nobody enrolled: the sale accrues to the phone

    reserved = first.post(
        "/v1/reserve", {"cheque_id": "installer-1", "customer": customer, "basket": _basket()}
    )
    assert reserved["state"] == "reserved"
    confirmed = first.post(
        "/v1/confirm", {"cheque_id": "installer-1", "fiscal_document": "FD-0001"}
    )
    assert confirmed["state"] == "confirmed"
    assert confirmed["earned_points"] > 0

    slip = view_escpos(_wait_for_slip(till["slip"]))
    assert slip.texts, "the slip has no text"
    assert any(str(confirmed["earned_points"]) in line for line in slip.texts), slip.texts

    first.stop()

    second = Agent(bundle, till["config"], till["port"])
    agents.append(second)
    again = second.post("/v1/confirm", {"cheque_id": "installer-1", "fiscal_document": "FD-0001"})
    assert again["state"] == "confirmed"
    assert again["earned_points"] == confirmed["earned_points"]
    second.stop()

    with sqlite3.connect(till["data"] / "till.db") as db:
        cheques = db.execute("SELECT cheque_id FROM cheques").fetchall()
    assert cheques == [("installer-1",)]


def test_bundle_is_small_complete_and_without_central(bundle: Path) -> None:
    size = int(
        subprocess.run(
            ["du", "-sb", str(bundle)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    _report(size_bytes=size, size_mb=round(size / 1e6, 1))
    assert size <= SIZE_GOAL_BYTES

    version = subprocess.run(
        [str(bundle / NAME), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith("kopilka-agent ")
    assert "(protocol " in version

    listing = subprocess.run(
        [str(BUILD_VENV / "bin" / "pyi-archive_viewer"), "-l", "-r", "-b", str(bundle / NAME)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    modules = {line.strip() for line in listing.splitlines()}
    assert {"agent.cli", "drivers", "protocol", "phonenumbers.data.region_RU"} <= modules
    for absent in (
        "central",
        "sqlalchemy",
        "alembic",
        "psycopg",
        "phonenumbers.geodata",
        "phonenumbers.carrierdata",
        "phonenumbers.tzdata",
    ):
        found = [name for name in modules if name == absent or name.startswith(absent + ".")]
        assert not found, found[:5]
    escpos = bundle / "_internal" / "escpos"
    pickles = list(escpos.glob("*.capabilities.pickle"))
    assert len(pickles) == 1
    assert pickles[0].stat().st_mtime >= (escpos / "capabilities.json").stat().st_mtime


def test_installed_copy_keeps_the_escpos_pickle_usable_and_runs(
    bundle: Path, tmp_path: Path
) -> None:
    """install.sh copies the build with its file times: the pickle stays newer than the JSON,
    so the installed agent does not fall back to parsing the printer database at each start."""
    root = tmp_path / "root"
    subprocess.run(
        [
            "bash",
            str(ROOT / "installer" / "linux" / "install.sh"),
            "--root",
            str(root),
            "--bundle",
            str(bundle),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    installed = root / "opt" / NAME / "current"
    escpos = installed / "_internal" / "escpos"
    (pickled,) = escpos.glob("*.capabilities.pickle")
    assert pickled.stat().st_mtime >= (escpos / "capabilities.json").stat().st_mtime
    version = subprocess.run(
        [str(installed / NAME), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith("kopilka-agent ")
