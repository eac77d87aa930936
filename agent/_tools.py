"""`kopilka-agent status` and `kopilka-agent doctor`: what a store manager or support reads."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from agent._clock import SystemClock
from agent._config import AgentSettings
from agent._rulebook import RuleBook
from agent._runtime import chain_settings
from agent._service import status_report
from agent._store import read_only
from drivers import (
    FileTransport,
    PrinterConfig,
    PrinterState,
    PrinterStatus,
    SlipPrinter,
    check_slip,
    open_printer,
    open_reader,
)
from drivers import IdentityRules as DeviceRules

doctor_wait_s = 1.0
printer_print_s = 2.0
"""Beyond its transport's timeouts, how long a printer may take to print the check slip."""
printer_answer_s_max = 15.0
"""The longest the doctor waits for one printer, whatever its transport's timeout."""


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "unknown (never pulled since boot): spending offline is off"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _human(status: dict[str, Any]) -> str:
    online = "online" if status["online"] else "OFFLINE"
    lines = [
        f"Till {status['device_id']} (epoch {status['epoch']}), store {status['store']}",
        f"Central: {online}"
        + ("" if status["enrolled"] else " — not enrolled: sales are kept for later"),
        f"Last push: {status['last_push'] or 'never'}; last pull: {status['last_pull'] or 'never'}",
        f"Outbox: {status['outbox_depth']} record(s) waiting to be sent",
        f"Data age: {_age(status['data_age_s'])}",
        f"Rule set: {status['rule_set']['id']} ({status['rule_set']['hash'][:12]})",
        f"Customers cached: {status['customers_cached']}",
    ]
    if status["last_sync_error"]:
        lines.append(f"Last sync error: {status['last_sync_error']}")
    return "\n".join(lines)


def print_status(settings: AgentSettings, as_json: bool) -> int:
    """The till's state, read from its database without writing anything: it is the check
    before `uninstall --purge`, and it runs beside a busy agent without waiting for it."""
    store_info, _ = chain_settings(settings)
    with read_only(settings.db_path) as db:
        status = status_report(
            db, settings.data_dir, store_info.store_id, RuleBook(), SystemClock()
        )
    print(json.dumps(status, ensure_ascii=False, indent=2) if as_json else _human(status))
    return 0


def _ports() -> list[str]:
    from serial.tools import list_ports

    return [f"{port.device} ({port.description})" for port in list_ports.comports()]


def _check_readers(settings: AgentSettings) -> list[tuple[str, bool, str]]:
    rules = DeviceRules(card_ranges=settings.card_ranges, phone_region=settings.phone_region)
    results = []
    for config in settings.devices.readers:
        try:
            reader = open_reader(config, rules)
        except RuntimeError as error:  # a keyboard-wedge scanner without `evdev`
            results.append((f"reader {config.name}", False, str(error)))
            continue
        time.sleep(doctor_wait_s)
        status = getattr(reader, "status", lambda: None)()
        state = str(getattr(status, "state", "unknown"))
        reader.stop()
        results.append((f"reader {config.name}", state == "connected", state))
    return results


def _answer_wait_s(config: PrinterConfig) -> float:
    """How long a printer may take to take the doctor's job: its transport's timeout for the
    connection and each of the two status queries around the job, and a little to print."""
    timeout_s = float(getattr(config.transport, "timeout_s", 0.0))
    return min(3 * timeout_s + printer_print_s, printer_answer_s_max)


def _answered(printer: SlipPrinter, wait_s: float) -> bool:
    """Whether the job queued on `printer` went through at the worker's first try: False as
    soon as that try failed, or after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while not printer.wait_idle(timeout_s=0.1):
        if printer.status().failed_attempts or time.monotonic() >= deadline:
            return False
    return True


def _printer_said(config: PrinterConfig, status: PrinterStatus, test_slip: bool) -> str:
    """What the printer proved by taking the job: that it answered its paper sensor's query,
    or, where it cannot be asked, only that it could be opened and written to."""
    if isinstance(config.transport, FileTransport):
        said = "opened and written to; on a device file it cannot say whether it is on or has paper"
    elif not config.status_query:
        said = "connected; with status_query = false it is not asked whether it has paper"
    elif status.state == PrinterState.out_of_paper:
        said = "answers, but the roll ran out: put in a new roll"
    else:
        said = "answers" + (", paper near end" if status.paper_near_end else ", paper loaded")
    return said + ("; check slip printed" if test_slip else "")


def _check_printer(config: PrinterConfig, test_slip: bool) -> tuple[str, bool, str]:
    """Opens the printer and gives it a job: the check slip, or an empty one, which makes the
    worker connect and ask the paper sensor (`DLE EOT 4`) as before any slip, printing
    nothing. A printer is never `[ok]` before it has answered."""
    printer = open_printer(config)
    try:
        if test_slip:
            printer.print_slip(check_slip(config))
        else:
            printer.submit(b"")
        wait_s = _answer_wait_s(config)
        answered = _answered(printer, wait_s)
        status = printer.status()
    finally:
        printer.stop()
    if answered:
        paper = status.state != PrinterState.out_of_paper
        return (f"printer {config.name}", paper, _printer_said(config, status, test_slip))
    problem = status.last_error or f"no answer within {wait_s:.0f} s"
    return (f"printer {config.name}", False, f"{status.state}: {problem}")


def _check_printers(settings: AgentSettings, test_slip: bool) -> list[tuple[str, bool, str]]:
    return [_check_printer(config, test_slip) for config in settings.devices.printers]


def _check_central(settings: AgentSettings) -> list[tuple[str, bool, str]]:
    if settings.central_url is None:
        return [("central", False, "no central_url configured")]
    try:
        answer = httpx.get(f"{settings.central_url}/health", timeout=settings.http_timeout_s)
    except httpx.HTTPError as error:
        return [("central", False, f"unreachable: {error}")]
    return [("central", answer.status_code == 200, f"HTTP {answer.status_code}")]


def doctor(settings: AgentSettings, test_slip: bool) -> int:
    print("Serial ports:", ", ".join(_ports()) or "none found")
    checks = [
        *_check_readers(settings),
        *_check_printers(settings, test_slip),
        *_check_central(settings),
    ]
    for name, ok, detail in checks:
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1
