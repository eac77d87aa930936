"""`kopilka-agent status`, `till` and `doctor` as a store manager runs them, on a real agent."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from drivers import NetworkPrinterEmulator

from .agent_process import AGENT, CARD, TOKEN, AgentProcess, free_port, seed, write_config


def run(
    config: Path, *args: str, stdin: str = "", timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
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


def test_status_of_a_data_folder_that_is_not_there_creates_nothing(tmp_path: Path) -> None:
    """The check before `uninstall --purge`: a wrong data_dir must not look like an empty
    outbox."""
    data_dir = tmp_path / "gone"
    config = tmp_path / "agent.toml"
    config.write_text(f'data_dir = "{data_dir}"\napi_token = "{TOKEN}"\n', encoding="utf-8")
    done = run(config, "status", "--json")
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    assert "there is no till database" in done.stderr
    assert not data_dir.exists()


def test_status_answers_while_a_writer_holds_the_database(tmp_path: Path) -> None:
    """`status` only reads: it takes no write lock, so a long transaction of the agent's does
    not hold it up, and the rules_file it is configured with is not installed again."""
    config = write_config(tmp_path / "till", free_port())
    seed(config)
    writer = sqlite3.connect(tmp_path / "till" / "till.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        done = run(config, "status", "--json", timeout_s=20)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["customers_cached"] == 3
    assert status["outbox_depth"] == 0
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


def _at_the_till(agent: AgentProcess, typed: list[str]) -> str:
    """What manual till mode prints for the lines `typed` (then `quit`)."""
    done = run(agent.config, "till", stdin="\n".join([*typed, "quit"]) + "\n")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_manual_till_refuses_numbers_that_are_not_prices(agent: AgentProcess) -> None:
    script = [
        "add milk 1 inf",
        "add milk 1 sNaN",
        "add milk NaN 1",
        "add milk 1e400 1",
        "add milk 1 89.901",
        "add milk-1l 2 89.90 dairy",
        "quote",
    ]
    out = _at_the_till(agent, script)
    assert "! 'inf' is not a number" in out
    assert "! 'sNaN' is not a number" in out
    assert "! 'NaN' is not a number" in out
    assert "! '1e400': must be more than 0 and at most 1000000" in out
    assert "! '89.901': at most 2 decimals" in out
    assert "line 1: milk-1l x 2 = 179.80" in out  # none of the bad lines was added
    assert "total 179.80" in out


def test_manual_till_keeps_lines_the_agent_would_refuse_off_the_cheque(agent: AgentProcess) -> None:
    """A SKU in Cyrillic, points below zero, a command short of its arguments: refused as
    typed, and the cheque stays one the agent sells; a line typed wrong can be dropped."""
    script = [
        "add молоко 1 89.90",
        "add milk 1 10 молочка",
        "add milk",
        "redeem -5",
        "redeem",
        "add milk-1l 2 89.90 dairy",
        "add bread 1 45.00",
        "drop 1",
        "drop 7",
        "quote",
    ]
    out = _at_the_till(agent, script)
    assert out.count("! sku: String should match pattern") == 1, out
    assert "! category: String should match pattern" in out
    assert "! usage: add SKU QTY PRICE [CATEGORY]" in out
    assert out.count("! usage: redeem POINTS") == 2
    assert "dropped milk-1l; 1 lines left" in out
    assert "! usage: drop LINE, a line number from 1 to 1" in out
    assert "total 45.00" in out
    assert "list index out of range" not in out


def test_manual_till_keeps_the_cheque_until_the_agent_answers(tmp_path: Path) -> None:
    """The agent is down while the cashier rings up: each call says so, and once it is up the
    same cheque, lines and customer, is paid."""
    config = write_config(tmp_path / "late", free_port())
    seed(config)
    till = subprocess.Popen(
        [str(AGENT), "--config", str(config), "till"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert till.stdin is not None
    assert till.stdout is not None
    try:
        till.stdin.write(f"add milk-1l 2 89.90 dairy\nid {CARD}\nadd bread 1 45\nquote\npay\n")
        till.stdin.flush()
        said = [till.stdout.readline() for _ in range(6)]  # greeting, line 1, !, line 2, !, !
        agent = AgentProcess(config)
        try:
            out, err = till.communicate(f"id {CARD}\npay FN-LATE-1\nquit\n", timeout=60)
        finally:
            agent.stop()
    finally:
        if till.poll() is None:
            till.kill()
            till.wait()
    assert till.returncode == 0, err
    assert "Traceback" not in err
    assert said[1].startswith("line 1: milk-1l x 2 = 179.80")
    assert said[2].startswith("! no answer from the agent at http://127.0.0.1:")
    assert "is it running? The cheque is kept" in said[2]
    assert said[3].startswith("line 2: bread x 1 = 45.00")
    assert said[4].startswith("! no answer from the agent")
    assert said[5].startswith("! no answer from the agent")
    assert "customer Анна" in out
    assert "confirmed: +" in out


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


def network_printer(name: str, port: int) -> str:
    return (
        f'[[devices.printers]]\nname = "{name}"\n'
        f'transport = {{ kind = "network", host = "127.0.0.1", port = {port}, timeout_s = 1.0 }}\n'
    )


def test_doctor_fails_printers_that_do_not_answer(tmp_path: Path) -> None:
    """Nothing listening, no device file, no USB library: never `[ok]`, always the reason."""
    extra = (
        network_printer("net", free_port())
        + '[[devices.printers]]\nname = "lp"\n'
        + f'transport = {{ kind = "file", path = "{tmp_path / "lp0"}" }}\n'
        + '[[devices.printers]]\nname = "usb"\n'
        + 'transport = { kind = "usb", vendor_id = 0x04b8, product_id = 0x0202 }\n'
    )
    config = write_config(tmp_path / "doctor", free_port(), extra)
    done = run(config, "doctor")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[FAIL] printer net: offline: ConnectionRefusedError" in done.stdout
    assert "[FAIL] printer lp: offline: FileNotFoundError" in done.stdout
    assert "[FAIL] printer usb: offline: " in done.stdout
    assert "[ok] printer" not in done.stdout
    assert not (tmp_path / "lp0").exists()


def test_doctor_fails_a_scanner_that_is_not_there(tmp_path: Path) -> None:
    """A reader whose port does not exist is `disconnected`: a `[FAIL]` (it said `[ok]`, as
    "disconnected" contains "connected")."""
    port = tmp_path / "no-such-scanner"
    extra = f'[[devices.readers]]\nkind = "scanner"\nname = "scanner"\nport = "{port}"\n'
    config = write_config(tmp_path / "doctor", free_port(), extra)
    done = run(config, "doctor")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[FAIL] reader scanner: disconnected" in done.stdout


def test_doctor_fails_a_wedge_scanner_without_evdev(tmp_path: Path) -> None:
    """The optional `evdev` package is not installed here: a `[FAIL]` line with the reason,
    not a traceback."""
    extra = (
        '[[devices.readers]]\nkind = "keyboard_wedge"\nname = "wedge"\ndevice = "/dev/input/x"\n'
    )
    config = write_config(tmp_path / "doctor", free_port(), extra)
    done = run(config, "doctor")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[FAIL] reader wedge:" in done.stdout
    assert "evdev" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("test_slip", [False, True])
def test_doctor_asks_each_printer_and_prints_the_check_slip_on_request(
    tmp_path: Path, test_slip: bool
) -> None:
    with NetworkPrinterEmulator() as front, NetworkPrinterEmulator() as back:
        back.paper_out = True
        extra = network_printer("front", front.port) + network_printer("back", back.port)
        config = write_config(tmp_path / "doctor", free_port(), extra)
        done = run(config, "doctor", *(["--test-slip"] if test_slip else []))
        paper = front.view()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[ok] printer front: answers, paper loaded" in done.stdout
    assert "[FAIL] printer back: out_of_paper: the printer is out of paper" in done.stdout
    if not test_slip:
        assert paper.lines == []  # asked its paper sensor, printed nothing
        return
    printed = paper.render(48)
    assert "check slip printed" in done.stdout
    assert "Проверка принтера" in printed  # docs/devices.md: drivers.check_slip
    assert "АБВГДЕЁЖЗИЙКЛМНОП РСТУФХЦЧШЩЪЫЬЭЮЯ" in printed
    assert "абвгдеёжзийклмноп рстуфхцчшщъыьэюя" in printed
    assert '"Ёлка" - 100 руб. №1' in printed
    assert "1234567890" * 4 + "12345678" in printed  # a ruler as wide as the 48 columns
    assert paper.qr_codes == ["https://kopilka.example/test"]


def test_doctor_fails_a_printer_whose_roll_ran_out_with_the_check_slip(tmp_path: Path) -> None:
    """The printer has paper when asked before the slip and none after it: the slip came
    out, and the next one would not; doctor says so, where it said `paper loaded`."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def printer() -> None:  # answers DLE EOT 4: paper before the slip, roll end after it
        conn, _ = server.accept()
        received, answered = b"", 0
        while chunk := conn.recv(65536):
            received += chunk
            while received.count(b"\x10\x04\x04") > answered:
                conn.sendall(b"\x12" if answered == 0 else b"\x72")
                answered += 1
        conn.close()

    thread = threading.Thread(target=printer, daemon=True)
    thread.start()
    config = write_config(tmp_path / "doctor", free_port(), network_printer("front", port))
    done = run(config, "doctor", "--test-slip")
    server.close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[FAIL] printer front: answers, but the roll ran out: put in a new roll" in done.stdout
