"""`kopilka-agent status`, `till` and `doctor` as a store manager runs them, on a real agent."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .agent_process import AGENT, CARD, AgentProcess, free_port, write_config


def run(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_for_people_and_for_programs(agent: AgentProcess) -> None:
    human = run(agent.config, "status")
    assert human.returncode == 0, human.stderr
    assert "Central: OFFLINE" in human.stdout
    assert "not enrolled" in human.stdout
    assert "Outbox:" in human.stdout
    assert "Rule set: base-2026" in human.stdout
    machine = run(agent.config, "status", "--json")
    assert machine.returncode == 0, machine.stderr
    status = json.loads(machine.stdout)
    assert status["online"] is False
    assert status["customers_cached"] >= 2
    assert status["data_age_s"] is not None
    assert status["rule_set"]["id"] == "base-2026"


def test_manual_till_sells_through_the_running_agent(agent: AgentProcess) -> None:
    script = "\n".join(
        [
            f"id {CARD}",
            "add milk-1l 2 89.90 dairy",
            "add apples 1,25 129.90 fruit",
            "redeem 10",
            "quote",
            "pay FN-MANUAL-1",
            "frobnicate",
            "quit",
        ]
    )
    done = run(agent.config, "till", stdin=script + "\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "customer Анна" in out
    assert "line 2: apples x 1,25 = 162.38" in out
    assert "to pay" in out
    assert "confirmed: +" in out
    assert "/ -10 points" in out
    assert "unknown command 'frobnicate'" in out
    receipt = [line for line in out.splitlines() if "277000" in line or "Баланс" in line]
    assert receipt, out  # the loyalty block as it is printed, 32 columns
    assert all(len(line) <= 32 for line in receipt)


def test_manual_till_says_what_went_wrong(agent: AgentProcess) -> None:
    done = run(agent.config, "till", stdin="id 4111111111111111\nadd milk x 1\npay\nquit\n")
    assert done.returncode == 0
    assert "[card_" in done.stdout  # a bank card, with the code and a sentence
    assert "'x' is not a number" in done.stdout
    assert "[invalid_request]" in done.stdout  # paying for an empty basket


@pytest.mark.parametrize(
    ("central", "code", "says"),
    [
        (None, 1, "[FAIL] central: no central_url configured"),
        ("{agent}", 0, "[ok] central: HTTP 200"),
    ],
)
def test_doctor_exit_codes_without_devices(
    agent: AgentProcess, tmp_path: Path, central: str | None, code: int, says: str
) -> None:
    extra = ""
    if central is not None:
        url = central.format(agent=agent.url)  # the agent answers /health as central would
        extra = f'central_url = "{url}"\nhttp_timeout_s = 2\n'
    config = write_config(tmp_path / "doctor", free_port(), extra)
    done = run(config, "doctor")
    assert done.returncode == code, done.stdout + done.stderr
    assert "Serial ports:" in done.stdout
    assert says in done.stdout
    assert "reader" not in done.stdout
    assert "printer" not in done.stdout
