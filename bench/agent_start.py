"""Start-up of the built agent: size on disk and time from start to a healthy `/health`.

    installer/build.sh                              # dist/kopilka-agent/
    .venv/bin/python bench/agent_start.py           # 10 starts
    .venv/bin/python bench/agent_start.py --quick   # 3 starts

Each start gets a fresh data folder (an empty till, as after installation) and a free port;
the clock runs from `Popen` until `/health` answers 200, and the agent's own CPU time (user +
system, from /proc) is read at that moment. Wall time on a busy machine measures the
neighbours; the CPU time is the agent's. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
NAME = "kopilka-agent"
START_TIMEOUT_S = 60.0
POLL_S = 0.01


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(bundle: Path, folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds from start to a healthy /health, for one fresh till."""
    port = _free_port()
    config = folder / "agent.toml"
    rules = ROOT / "examples" / "rules" / "base.toml"
    config.write_text(
        f'data_dir = "{folder / "data"}"\nlisten_port = {port}\n'
        f'api_token = "{"b" * 32}"\nrules_file = "{rules}"\n'
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [str(bundle / NAME), "--config", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.monotonic() - started < START_TIMEOUT_S:
            if process.poll() is not None:
                raise SystemExit(f"the agent exited with {process.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.monotonic() - started, _cpu_seconds(process.pid)
            except httpx.TransportError:
                pass
            time.sleep(POLL_S)
        raise SystemExit(f"no healthy /health within {START_TIMEOUT_S} s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def size_bytes(bundle: Path) -> int:
    """The files' sizes, each counted once (the build links some libraries to each other)."""
    return sum(
        path.lstat().st_size
        for path in bundle.rglob("*")
        if path.is_file() and not path.is_symlink()
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / NAME)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 starts")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else args.runs
    if not (args.bundle / NAME).exists():
        print(f"no build in {args.bundle}: run installer/build.sh first", file=sys.stderr)
        return 2
    walls, cpus = [], []
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="kopilka-start-") as folder:
            wall, cpu = start_once(args.bundle, Path(folder))
        walls.append(wall)
        cpus.append(cpu)
        print(f"start {run + 1}: healthy after {wall:.3f} s wall, {cpu:.2f} s CPU", flush=True)
    result = {
        "bench": "agent_start",
        "runs": runs,
        "size_mb": round(size_bytes(args.bundle) / 1e6, 1),
        "healthy_wall_s": {
            "min": round(min(walls), 3),
            "median": round(statistics.median(walls), 3),
        },
        "healthy_cpu_s": {"min": round(min(cpus), 2), "median": round(statistics.median(cpus), 2)},
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
