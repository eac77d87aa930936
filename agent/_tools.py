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
from drivers import IdentityRules as DeviceRules
from drivers import LoyaltySlip, open_printer, open_reader

doctor_wait_s = 1.0


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
        reader = open_reader(config, rules)
        time.sleep(doctor_wait_s)
        status = getattr(reader, "status", lambda: None)()
        state = str(getattr(status, "state", "unknown"))
        reader.stop()
        results.append((f"reader {config.name}", "connected" in state, state))
    return results


def _check_printers(settings: AgentSettings, test_slip: bool) -> list[tuple[str, bool, str]]:
    results = []
    for config in settings.devices.printers:
        printer = open_printer(config)
        if test_slip:
            printer.print_slip(LoyaltySlip(title="Kopilka: проверка", message="Тестовый чек"))
            printer.wait_idle(timeout_s=5)
        status = printer.status()
        printer.stop()
        ok = status.last_error is None
        results.append((f"printer {config.name}", ok, f"{status.state} {status.last_error or ''}"))
    return results


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
