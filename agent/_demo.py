"""The main job: central on SQLite and two tills with emulated devices, enrolled and syncing.

`kopilka-agent demo` starts them and keeps them running (Ctrl-C stops all); `--story` plays
the scripted story instead: a sale scanned on an emulated scanner, the network cut, both tills
spending the same points offline, the network back, and what HQ then sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agent._fleet import Agent, Central
from drivers import NetworkPrinterEmulator, PtyDevice, view_escpos
from protocol import parse_rule_set

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "examples" / "rules" / "base.toml"
CARD = "2770000000017"
ANNA = {"type": "card", "value": CARD}
LIMITS = {
    "customer_points_per_till_max": 500,
    "till_points_budget_max": 5000,
    "phone_only_points_max": 200,
    "data_age_max_s": 3600,
    "offline_window_days": 30,
    "reservation_ttl_s": 600,
}


def _say(text: str = "") -> None:
    print(text, flush=True)


def _line(line_id: str, sku: str, category: str, quantity_milli: int, price: int) -> dict[str, Any]:
    total = (quantity_milli * price + 500) // 1000
    return {
        "line_id": line_id,
        "sku": sku,
        "category": category,
        "quantity_milli": quantity_milli,
        "unit_price": price,
        "total": total,
    }


def setup_central(central: Central) -> str:
    """HQ's morning: rules, card range, a store, limits, one customer; an enrollment code."""
    rules = parse_rule_set(RULES.read_text(encoding="utf-8"), source=str(RULES))
    document = rules.model_dump(mode="json") | {"pending_days": 0}  # demo: points usable at once
    gift_cards = {
        "id": "no-points-gift-cards",
        "kind": "per_money",
        "points": 0,
        "per": 100,
        "categories": ["gift"],
        "priority": 1000,
        "stop": True,
    }
    # the story's numbers must not depend on when it runs: no earn rule of certain weekdays or
    # hours (the example's "happy-morning" doubled A-1's points on weekday mornings, and the
    # two offline spends then fitted in the balance: no debt to show)
    timeless = [rule for rule in document["earn"] if not rule.get("days") and not rule.get("hours")]
    document["earn"] = [gift_cards, *timeless]
    central.call(
        "POST",
        "/rule-sets",
        {
            "rule_set_id": "demo-2026",
            "effective_from": "2026-01-01T00:00:00+03:00",
            "document": document | {"rule_set_id": "demo-2026"},
        },
    )
    central.call(
        "PUT",
        "/chain",
        {
            "card_ranges": [
                {
                    "name": "chain",
                    "first": "2770000000000",
                    "last": "2770009999999",
                    "check": "ean",
                },
            ]
        },
    )
    central.call(
        "POST",
        "/stores",
        {
            "store_id": "msk-1",
            "name": "Москва, Тверская 1",
            "timezone": "Europe/Moscow",
        },
    )
    central.call("PUT", "/offline-limits", LIMITS)
    central.call(
        "POST",
        "/customers",
        {
            "customer_id": "c-anna",
            "first_name": "Анна",
            "consent_data": True,
            "consent_marketing": True,
            "phones": ["+79161234567"],
            "identifiers": [{"type": "card", "number": CARD}],
        },
    )
    return str(central.call("POST", "/stores/msk-1/enrollment-codes")["code"])


def start_tills(
    workdir: Path,
    central: Central,
    scanner: PtyDevice,
    printer: NetworkPrinterEmulator,
    running: contextlib.ExitStack,
) -> tuple[Agent, Agent]:
    devices = {
        "readers": [{"kind": "scanner", "name": "scanner-1", "port": scanner.path}],
        "printers": [
            {
                "name": "slips",
                "paper_mm": 58,
                "status_query": False,
                "transport": {"kind": "network", "host": "127.0.0.1", "port": printer.port},
            }
        ],
    }
    till_a = Agent(workdir, "till-a", central.url, setup_code(central), {"devices": devices})
    till_b = Agent(workdir, "till-b", central.url, setup_code(central))
    for till in (till_a, till_b):
        running.callback(_stop, till)
        till.start()
    return till_a, till_b


def _started_central(workdir: Path, running: contextlib.ExitStack) -> Central:
    central = Central(workdir / "central")
    running.callback(_stop, central)
    return central.start()


def _stop(process: Agent | Central) -> None:
    process.process.stop()
    process.close()


def setup_code(central: Central) -> str:
    return str(central.call("POST", "/stores/msk-1/enrollment-codes")["code"])


def wait_for(check: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


scan_attempts_max = 3
scan_wait_s = 20.0


def scan(till: Agent, scanner: PtyDevice, card: str) -> dict[str, Any]:
    """Scan `card` at `till`'s scanner as a cashier would: once the till's reader has the port
    open, and again only if the reader opened the port anew meanwhile (opening a serial port
    discards what was waiting in it). A refused or unanswered scan is an error that says what
    the till's scanner reports."""
    for attempt in range(scan_attempts_max):
        if attempt:
            _say("   (the scanner reconnected before the till read the card: scanned again)")
        reader = wait_for(lambda: _connected(till), f"{till.name}'s scanner")
        scanner.write(f"{card}\r".encode())
        found = _customer_on_screen(till, reader["connects"])
        if found is not None:
            return found
    raise RuntimeError(f"{till.name} lost the scan {scan_attempts_max} times: {_reader(till)}")


def _customer_on_screen(till: Agent, connects: int) -> dict[str, Any] | None:
    """The customer the till's session shows; None if the reader reconnected first."""
    deadline = time.monotonic() + scan_wait_s
    while time.monotonic() < deadline:
        session: dict[str, Any] = till.call("/v1/session")
        if session.get("identified"):
            return dict(session["identified"])
        if session.get("problem"):
            raise RuntimeError(f"{till.name} refused the scan: {session['problem']}")
        if _reader(till)["connects"] != connects:
            return None
        time.sleep(0.1)
    raise RuntimeError(f"{till.name} saw no scan in {scan_wait_s:.0f} s: {_reader(till)}")


def _reader(till: Agent) -> dict[str, Any]:
    """The till's first reader, as its status reports it."""
    found: dict[str, Any] = till.status()["readers"][0]
    return found


def _connected(till: Agent) -> dict[str, Any] | None:
    found = _reader(till)
    return found if found["state"] == "connected" else None


def balance(till: Agent) -> dict[str, Any]:
    found: dict[str, Any] = till.call("/v1/identify", ANNA)["balance"]
    return found


def sell(till: Agent, cheque: str, lines: list[dict[str, Any]], redeem: int = 0) -> dict[str, Any]:
    body = {
        "cheque_id": cheque,
        "customer": ANNA,
        "basket": {"lines": lines},
        "redeem": {"points": redeem},
    }
    reserved = till.call("/v1/reserve", body)
    confirmed: dict[str, Any] = till.call(
        "/v1/confirm", {"cheque_id": cheque, "fiscal_document": f"FD-{cheque}"}
    )
    confirmed["reserved"] = reserved
    return confirmed


def story(workdir: Path) -> dict[str, Any]:
    """The scripted story; returns what HQ and the tills saw at the end."""
    with contextlib.ExitStack() as running:  # stops every process started, however it ends
        central = _started_central(workdir, running)
        setup_central(central)
        scanner = running.enter_context(PtyDevice())
        printer = running.enter_context(NetworkPrinterEmulator())
        till_a, till_b = start_tills(workdir, central, scanner, printer, running)
        return _play(central, till_a, till_b, scanner, printer)


def _play(
    central: Central,
    till_a: Agent,
    till_b: Agent,
    scanner: PtyDevice,
    printer: NetworkPrinterEmulator,
) -> dict[str, Any]:
    for till in (till_a, till_b):
        wait_for(
            lambda till=till: till.status()["enrolled"] and till.status()["online"],
            f"{till.name} to enroll",
        )
    _say("1. Anna's card is scanned at till A (emulated serial scanner).")
    session = scan(till_a, scanner, CARD)
    _say(f"   till A identified {session['first_name']} ({session['customer_id']})")
    done = sell(till_a, "A-1", [_line("1", "coffee-beans", "grocery", 1000, 50000)])
    _say(
        f"   she buys coffee for 500.00: +{done['earned_points']} points,"
        f" +{done['granted_points']} welcome bonus"
    )
    _say("   loyalty slip printed on the emulated 58 mm printer:")
    slip = wait_for(lambda: printer.received, "the slip")
    for text in view_escpos(slip).render(columns=32).splitlines():
        _say(f"   | {text}")
    till_a.wait_synced()
    till_b.wait_synced()
    before = balance(till_b)
    _say(f"2. Both tills synced; till B sees Anna's balance: {before['balance']} points.")
    _say("3. The network is cut (central stops answering).")
    central.process.stop()
    for till in (till_a, till_b):
        wait_for(lambda till=till: not till.status()["online"], f"{till.name} offline")
    spend = before["balance"] - 100
    spend_a = min(spend, LIMITS["customer_points_per_till_max"])
    gift = [_line("1", "gift-card-1000", "gift", 1000, 100000)]  # gift cards earn nothing
    at_a = sell(till_a, "A-2", gift, redeem=spend_a)
    at_b = sell(till_b, "B-1", gift, redeem=spend_a)
    _say(f"   offline, till A lets Anna spend {at_a['spent_points']} points,")
    _say(f"   offline, till B lets her spend {at_b['spent_points']} points as well")
    _say(f"   ({before['balance']} were there: each till kept within its offline allowance).")
    _say("4. The network is back.")
    central.process.start()
    for till in (till_a, till_b):
        till.wait_synced(timeout_s=60)
    return _hq_view(central, till_a, till_b)


def _hq_view(central: Central, till_a: Agent, till_b: Agent) -> dict[str, Any]:
    views = {till.name: balance(till) for till in (till_a, till_b)}
    central.run_jobs()  # what the scheduler in `serve` does on its intervals
    conflicts = central.call("GET", "/conflicts/open")
    hq = _customer_at_hq(central)
    _say("5. What HQ sees:")
    _say(f"   Anna's balance at central: {hq['balance']} points")
    _say(f"   debt: {hq['debt']} points (two tills spent the same points offline)")
    for conflict in conflicts:
        what = {k: conflict.get(k) for k in ("kind", "account_key", "detail") if k in conflict}
        _say(f"   conflict: {json.dumps(what, ensure_ascii=False, default=str)[:200]}")
    for name, view in views.items():
        _say(f"   {name} now shows {view['balance']} points, as central does")
    return {"central": hq, "tills": views, "conflicts": conflicts}


def _customer_at_hq(central: Central) -> dict[str, Any]:
    found: dict[str, Any] = central.call("GET", "/customers/c-anna")
    return {"balance": int(found["balances"].get("points", 0)), "debt": int(found["debt"])}


def serve(workdir: Path) -> None:
    """Run central and two tills until Ctrl-C, saying where to point a POS or a browser."""
    with contextlib.ExitStack() as running:  # stops every process started, however it ends
        central = _started_central(workdir, running)
        setup_central(central)
        scanner = running.enter_context(PtyDevice(workdir / "scanner-a"))
        printer = running.enter_context(NetworkPrinterEmulator())
        till_a, till_b = start_tills(workdir, central, scanner, printer, running)
        _say(f"central:  {central.url}/docs   (admin token: {central.admin_token})")
        for till in (till_a, till_b):
            _say(f"{till.name}:   {till.url}/docs   (POS token: {till.token})")
        scans = _relay_scans(workdir / "scan-a", scanner)
        _say(f"scanner of till-a: printf '{CARD}\\n' > {scans}   (then GET /v1/session)")
        _say(f"codes central texts to customers' phones land in {central.messages}")
        _say("Ctrl-C stops everything.")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            _say("stopping")


def _relay_scans(fifo: Path, scanner: PtyDevice) -> Path:
    """A named pipe whose lines are scanned at `scanner`, for a person at the main job: the
    pty's own path is the till's end, and bytes written there go back to the emulator."""
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)

    def relay() -> None:
        while True:
            with fifo.open("rb") as lines:  # waits for a writer; ends when it closes
                for line in lines:
                    if line.strip():
                        scanner.write(line.strip() + b"\r")

    threading.Thread(target=relay, name="scan-relay", daemon=True).start()
    return fifo


def main(play_story: bool, workdir: Path | None) -> int:
    folder = workdir or Path(tempfile.mkdtemp(prefix="kopilka-demo-"))
    _say(f"Kopilka main job in {folder}")
    _stop_as_on_ctrl_c()
    try:
        if play_story:
            story(folder)
        else:
            serve(folder)
    except KeyboardInterrupt:
        _say("stopped")
        return 130
    return 0


def _stop_as_on_ctrl_c() -> None:
    """SIGTERM (`kill`, `timeout`, a service manager) and SIGHUP (the terminal closed) stop the
    main job as Ctrl-C does, with its processes. A till left running would go on reading its
    scanner's pseudo-terminal, whose number the next main job's scanner may be given."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for name in ("SIGTERM", "SIGHUP"):  # Windows has no SIGHUP
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), interrupt)
