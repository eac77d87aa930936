"""docs/pos-api.md cannot drift: its bash and python examples run against a real agent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .agent_process import TOKEN, AgentProcess

DOC = Path(__file__).resolve().parents[2] / "docs" / "pos-api.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return [(match[1], match[2]) for match in BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


def test_the_doc_has_curl_and_python_examples() -> None:
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("bash") >= 4
    assert kinds.count("python") >= 2
    assert all("curl" in code for kind, code in blocks() if kind == "bash")


def test_every_example_runs_against_a_real_agent(agent: AgentProcess, tmp_path: Path) -> None:
    env = {**os.environ, "KOPILKA_URL": agent.url, "KOPILKA_TOKEN": TOKEN}
    for number, (kind, code) in enumerate(blocks(), start=1):
        if kind == "bash":
            command = ["bash", "-euo", "pipefail", "-c", code]
        else:
            script = tmp_path / f"example_{number}.py"
            script.write_text(code, encoding="utf-8")
            command = [sys.executable, str(script)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        # curl runs with --fail-with-body: any 4xx or 5xx answer fails the example
        assert done.returncode == 0, f"example {number} ({kind}):\n{code}\n{done.stderr}"
