"""Manual till mode: a cashier's terminal for a store whose POS has no integration.

It talks to the running agent over the same local API a POS would use, so it sells exactly
as an integrated POS does. Commands: `id CARD-OR-QR`, `phone PHONE`, `add SKU QTY PRICE [CATEGORY]`
(quantity in units, `0.25` allowed; price in roubles, `89.90`; SKU and category in Latin
letters, digits and `._:-`), `drop LINE`, `redeem POINTS`, `quote`, `pay FISCAL-NO`, `void`,
`new`, `status`, `help`, `quit`. A mistake, or an agent that does not answer, is a line
starting with `!`, and the cheque stays as it was.
"""

from __future__ import annotations

import json
import sys
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

import httpx
from pydantic import ValidationError

from agent._config import AgentSettings
from agent._service import ensure_token
from protocol import BasketLine, RedeemRequest, describe_validation

HELP = __doc__.split("\n\n", 1)[1] if __doc__ else ""

quantity_units_max = Decimal(10**6)
"""The most of one line the till takes (the protocol's `quantity_milli` up to 10⁹)."""
amount_kopecks_max = 10**13
"""The most a price or a line may come to (the protocol's limit on any amount of money)."""


class AgentUnreachable(Exception):
    """The agent did not answer; the cheque being rung up stays as it is."""


def _minor(text: str, decimals: int, largest: Decimal) -> int:
    """`89.90` roubles → 8990 kopecks; `0.25` units → 250 thousandths. No floats; nothing but
    a finite number above 0, up to `largest`, with at most `decimals` decimals."""
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation as error:
        raise ValueError(f"{text!r} is not a number") from error
    if not value.is_finite():  # inf, NaN, sNaN: Decimal reads them, no till sells them
        raise ValueError(f"{text!r} is not a number")
    if not 0 < value <= largest:
        raise ValueError(f"{text!r}: must be more than 0 and at most {largest}")
    step = Decimal(1).scaleb(-decimals)
    if value != value.quantize(step):
        raise ValueError(f"{text!r}: at most {decimals} decimals")
    return int(value.scaleb(decimals))


def _sellable(model: type[BasketLine] | type[RedeemRequest], data: dict[str, Any]) -> None:
    """ValueError, in the agent's own words, for what the agent would refuse."""
    try:
        model.model_validate(data)
    except ValidationError as error:
        message, _ = describe_validation(error.errors())
        raise ValueError(message) from None


def _money(kopecks: int) -> str:
    return f"{kopecks // 100}.{kopecks % 100:02d}"


class ManualTill:
    def __init__(self, client: httpx.Client, out: TextIO) -> None:
        self.client = client
        self.out = out
        self.new()

    def new(self) -> None:
        self.customer: dict[str, str] | None = None
        self.lines: list[dict[str, Any]] = []
        self.redeem = 0
        self.cheque_id = f"manual-{uuid.uuid4().hex[:12]}"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The agent's answer; None (and said) when it refused; `AgentUnreachable` when it
        did not answer at all."""
        try:
            answer = self.client.get(path) if body is None else self.client.post(path, json=body)
        except httpx.HTTPError as error:
            raise AgentUnreachable(
                f"no answer from the agent at {self.client.base_url} ({error}): is it running? "
                f"The cheque is kept; try again"
            ) from error
        data: dict[str, Any] = answer.json()
        if answer.status_code != 200:
            self.say(f"! {data.get('message', answer.text)} [{data.get('code')}]")
            return None
        return data

    def basket(self) -> dict[str, Any]:
        return {"lines": self.lines}

    def sale(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "basket": self.basket(),
            "redeem": {"points": self.redeem},
        }

    def handle(self, line: str) -> bool:
        words = line.split()
        if not words:
            return True
        command, args = words[0].lower(), words[1:]
        action = getattr(self, f"do_{command}", None)
        if action is None:
            self.say(f"! unknown command {command!r}; try help")
            return True
        try:
            return bool(action(args) is not False)
        except (ValueError, IndexError, AgentUnreachable) as error:
            self.say(f"! {error}")
            return True

    def do_help(self, _: list[str]) -> None:
        self.say(HELP)

    def do_quit(self, _: list[str]) -> bool:
        return False

    def do_new(self, _: list[str]) -> None:
        self.new()
        self.say(f"new cheque {self.cheque_id}")

    def do_id(self, args: list[str]) -> None:
        """A card number or wallet code, typed or scanned."""
        self.identify("barcode", " ".join(args))

    def do_phone(self, args: list[str]) -> None:
        self.identify("phone", " ".join(args))

    def identify(self, kind: str, value: str) -> None:
        found = self.call("/v1/identify", {"type": kind, "value": value})
        if found is None:
            return
        self.customer = {"type": kind, "value": value}
        balance = found.get("balance") or {}
        who = found.get("first_name") or found.get("customer_id") or "unknown card: will earn"
        available = balance.get("available", 0)
        self.say(f"customer {who}: balance {balance.get('balance', 0)}, available {available}")

    def do_add(self, args: list[str]) -> None:
        if len(args) not in (3, 4):
            raise ValueError("usage: add SKU QTY PRICE [CATEGORY], e.g. add milk-1l 2 89.90 dairy")
        sku, quantity = args[0], _minor(args[1], 3, quantity_units_max)
        price = _minor(args[2], 2, Decimal(amount_kopecks_max) / 100)
        category = args[3] if len(args) > 3 else None
        total = (quantity * price + 500) // 1000
        if total > amount_kopecks_max:
            raise ValueError(f"{args[1]} x {args[2]} is more than one line may come to")
        line = {
            "line_id": str(len(self.lines) + 1),
            "sku": sku,
            "category": category,
            "quantity_milli": quantity,
            "unit_price": price,
            "total": total,
        }
        _sellable(BasketLine, line)  # as the agent will check it: a bad line never joins
        self.lines.append(line)
        self.say(f"line {len(self.lines)}: {sku} x {args[1]} = {_money(total)}")

    def do_drop(self, args: list[str]) -> None:
        """Take a line off the cheque; the lines after it move up."""
        if len(args) != 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= len(self.lines):
            raise ValueError(f"usage: drop LINE, a line number from 1 to {len(self.lines)}")
        gone = self.lines.pop(int(args[0]) - 1)
        for number, line in enumerate(self.lines, start=1):
            line["line_id"] = str(number)
        self.say(f"dropped {gone['sku']}; {len(self.lines)} lines left")

    def do_redeem(self, args: list[str]) -> None:
        if len(args) != 1 or not args[0].isdigit():
            raise ValueError("usage: redeem POINTS, a whole number of points (0 for none)")
        _sellable(RedeemRequest, {"points": int(args[0])})
        self.redeem = int(args[0])
        self.say(f"will ask to spend {self.redeem} points")

    def do_quote(self, _: list[str]) -> None:
        quote = self.call("/v1/quote", self.sale())
        if quote is not None:
            self.say(
                f"total {_money(quote['total'])}, discount {_money(quote['discount'])}, "
                f"to pay {_money(quote['payable'])}; earns {quote['earn_points']}, "
                f"spends {quote['burn_points']}"
            )

    def do_pay(self, args: list[str]) -> None:
        reserved = self.call("/v1/reserve", {"cheque_id": self.cheque_id, **self.sale()})
        if reserved is None:
            return
        if reserved.get("redeem_note"):
            self.say(f"note: {reserved['redeem_note']}")
        self.say(f"to pay {_money(reserved['quote']['payable'])}")
        fiscal = args[0] if args else self.cheque_id
        done = self.call("/v1/confirm", {"cheque_id": self.cheque_id, "fiscal_document": fiscal})
        if done is None:
            return
        for text in (done.get("receipt") or {}).get("columns_32", []):
            self.say(text)
        bonus = f" (+{done['granted_points']} bonus)" if done["granted_points"] else ""
        self.say(f"confirmed: +{done['earned_points']}{bonus} / -{done['spent_points']} points")
        self.new()

    def do_void(self, _: list[str]) -> None:
        if self.call("/v1/void", {"cheque_id": self.cheque_id}) is not None:
            self.say("voided")
        self.new()

    def do_status(self, _: list[str]) -> None:
        status = self.call("/v1/status")
        if status is not None:
            self.say(json.dumps(status, ensure_ascii=False, indent=1))


def manual_till(settings: AgentSettings, url: str | None, lines: TextIO = sys.stdin) -> int:
    base = url or f"http://{settings.listen_host}:{settings.listen_port}"
    headers = {"Authorization": f"Bearer {ensure_token(settings)}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        till = ManualTill(client, sys.stdout)
        till.say("Kopilka manual till. Type help for commands.")
        for line in lines:
            if not till.handle(line):
                break
    return 0
