#!/usr/bin/env python3
"""Kopilka's two commands, for a fresh machine with nothing but Python 3.11.

    python3 dev.py run    # the main job: central on SQLite, two tills with emulated devices
                          # (add --demo for the scripted offline story)
    python3 dev.py test   # every check: ruff, mypy, the whole pytest suite

Each creates `.venv` from `pyproject.toml` on first use and reuses it while
`pyproject.toml` is unchanged (a stamp file holds its hash).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "kopilka-stamp"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTEST_NO_TESTS_EXIT = 5


def _wanted_stamp() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{sys.version_info[:2]} {digest}"


def _bootstrap() -> None:
    if STAMP.exists() and STAMP.read_text() == _wanted_stamp():
        return
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing kopilka and its dev tools into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True, cwd=ROOT)
    STAMP.write_text(_wanted_stamp())


def _dies_with_us() -> Callable[[], None] | None:
    """Popen's `preexec_fn` on Linux: the child gets SIGKILL if this process is killed (even
    by SIGKILL, which it cannot pass on), and so do the main job's processes in turn."""
    if not sys.platform.startswith("linux"):
        return None
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def in_child() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # killed before the child could ask
            os._exit(1)

    return in_child


def _run(argv: list[str]) -> int:
    print("$", " ".join(argv), flush=True)
    child = subprocess.Popen(argv, cwd=ROOT, preexec_fn=_dies_with_us())
    # SIGTERM (kill, timeout) reaches this process alone: pass it on, so that the main job
    # stops its processes as it does on Ctrl-C, which reaches the child by itself.
    previous = signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    try:
        return child.wait()
    except KeyboardInterrupt:
        return child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _test(extra: list[str]) -> int:
    steps = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy")],
    ]
    for step in steps:
        code = _run(step)
        if code != 0:
            return code
    workers = ["-n", "2"] if "-n" not in extra else []
    code = _run([str(BIN / "pytest"), *workers, *extra])
    if code == PYTEST_NO_TESTS_EXIT:
        print("dev.py: pytest ran no tests, which counts as a failure", flush=True)
        return 1
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__)
        return 2
    _bootstrap()
    if argv[0] == "test":
        return _test(argv[1:])
    return _run([str(BIN / "kopilka-agent"), "fleet", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
