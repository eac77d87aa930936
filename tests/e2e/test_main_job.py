"""The README's first command, with --demo: the scripted offline story reports the debt."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_readme_main_job_story_reports_the_debt(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start\n\n```sh\n(.*?)```", readme, re.S)
    assert block is not None, "README has a Quick start block"
    commands = block.group(1).strip().splitlines()
    assert len(commands) == 2
    first = commands[0].split()
    assert first[:2] == ["python3", "dev.py"]
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
