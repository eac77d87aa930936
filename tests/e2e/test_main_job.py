"""The README's first command: with --demo the scripted offline story reports the debt;
without, it serves until stopped, and stopping it stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ..procfs import alive, children, descendants

ROOT = Path(__file__).resolve().parents[2]


def _first_command() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start\n\n```sh\n(.*?)```", readme, re.S)
    assert block is not None, "README has a Quick start block"
    commands = block.group(1).strip().splitlines()
    assert len(commands) == 2
    first = commands[0].split()
    assert first[:2] == ["python3", "dev.py"]
    return first


@pytest.mark.slow
def test_readme_main_job_story_reports_the_debt(tmp_path: Path) -> None:
    first = _first_command()
    done = subprocess.run(
        [sys.executable, *first[1:], "--demo", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "identified Анна" in out
    assert "Программа лояльности" in out  # the slip printed on the emulated printer
    sold = re.search(r"\+(\d+) points, \+(\d+) welcome bonus", out)
    synced = re.search(r"till B sees Anna's balance: (\d+) points", out)
    assert sold is not None, out
    assert synced is not None, out
    assert int(synced.group(1)) == int(sold.group(1)) + int(sold.group(2)) > int(sold.group(1))
    debt = re.search(r"debt: (\d+) points", out)
    assert debt is not None, out
    assert int(debt.group(1)) > 0, out
    assert '"kind": "overspend"' in out
    balance = re.search(r"balance at central: (-?\d+) points", out)
    assert balance is not None
    assert f"till-a now shows {balance.group(1)} points" in out
    assert f"till-b now shows {balance.group(1)} points" in out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize(
    ("stop", "target"),
    [
        # `kill` or `timeout`: the main job stops them as on Ctrl-C (they used to stay behind,
        # and a till left running kept reading its scanner's pty)
        pytest.param(signal.SIGTERM, "job", id="sigterm"),
        # nothing in a SIGKILLed process can stop anything: each child dies with its parent
        pytest.param(signal.SIGKILL, "job", id="sigkill"),
        # the main job itself killed under dev.py: its processes still go with it
        pytest.param(signal.SIGKILL, "main job", id="sigkill-under-dev-py"),
    ],
)
def test_stopping_the_main_job_stops_every_process_it_started(
    tmp_path: Path, stop: signal.Signals, target: str
) -> None:
    first = _first_command()
    started: set[int] = set()
    with subprocess.Popen(
        [sys.executable, *first[1:], "--workdir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as job:
        try:
            said, serving = _serving(job)
            started |= serving
            if stop == signal.SIGTERM:
                _scan_as_the_tip_says(said)
            victim = job.pid if target == "job" else min(children(job.pid))
            os.kill(victim, stop)
            job.wait(timeout=60)  # SIGTERM: a stop asked for, as with Ctrl-C
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(map(alive, started)):
                time.sleep(0.1)
            assert not [pid for pid in started if alive(pid)], "processes left running"
        finally:  # whatever is left, so that no later test meets it
            for pid in started | descendants(job.pid):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            job.kill()


def _scan_as_the_tip_says(said: str) -> None:
    """The main job's tip for the scanner of till A, followed: the card shows in the till's
    session (the tip used to name the pty's till end, which sent the bytes nowhere)."""
    tip = re.search(r"scanner of till-a: printf '(\d+)\\n' > (\S+)", said)
    till = re.search(r"till-a:\s+(http://\S+)/docs\s+\(POS token: (\S+)\)", said)
    assert tip is not None, said
    assert till is not None, said
    url, headers = till.group(1), {"Authorization": f"Bearer {till.group(2)}"}
    card = {"type": "card", "value": tip.group(1)}
    deadline = time.monotonic() + 30
    while not httpx.post(f"{url}/v1/identify", json=card, headers=headers).json()["known"]:
        assert time.monotonic() < deadline, "till A never pulled the card's customer"
        time.sleep(0.1)
    with open(tip.group(2), "w") as scans:  # a named pipe, as printf would
        scans.write(f"{tip.group(1)}\n")
    while True:
        session = httpx.get(f"{url}/v1/session", headers=headers, timeout=5).json()
        if session.get("identified"):
            break
        assert time.monotonic() < deadline, session
        time.sleep(0.1)
    assert session["identified"]["known"]
    assert session["customer"] == card


def _serving(job: subprocess.Popen[str]) -> tuple[str, set[int]]:
    """Once the main job says it serves: what it said, and every process under `job`
    (dev.py), among them at least the main job, central and two tills."""
    assert job.stdout is not None
    said = []
    for line in job.stdout:
        said.append(line)
        if "Ctrl-C stops everything" in line:
            break
    else:
        pytest.fail("".join(said))
    started = descendants(job.pid)
    assert len(started) >= 4, started
    assert len(children(job.pid)) == 1, "dev.py runs the main job as its one child"
    return "".join(said), started
