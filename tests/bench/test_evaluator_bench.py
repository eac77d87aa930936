"""The evaluator benchmark still runs and ends with its JSON line (a few runs only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_and_reports() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "evaluator.py"), "--runs", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"eval_p50_ms", "eval_p99_ms", "parse_p99_ms"} <= set(result)
    assert result["rules"] == 50
    assert result["lines"] == 30
