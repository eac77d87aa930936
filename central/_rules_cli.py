"""`kopilka-central rules ...`: HQ checks a rule set and previews quotes with it.

Every problem with an input file is reported as `FILE: field: problem` on stderr with exit
code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from protocol import (
    Basket,
    CustomerState,
    EvaluationError,
    Quote,
    RedeemRequest,
    RuleSet,
    RuleSetError,
    Store,
    canonical_json,
    evaluate,
    parse_rule_set,
    rule_set_warnings,
)

EXIT_BAD_INPUT = 2
PREVIEW_STORE = Store(store_id="hq-preview", name="HQ preview", timezone="Europe/Moscow")

Model = TypeVar("Model", bound=BaseModel)


class BadInput(Exception):
    """An input file or option that cannot be used; the message says which and why."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = commands.add_parser("rules", help="check rule sets and preview quotes")
    actions = rules.add_subparsers(dest="rules_command", required=True)
    check = actions.add_parser("check", help="validate a rule set file and print its hash")
    check.add_argument("file", help="rule set (TOML)")
    quote = actions.add_parser("quote", help="quote a basket with a rule set")
    quote.add_argument("--rules", required=True, help="rule set (TOML)")
    quote.add_argument("--basket", required=True, help="basket (JSON)")
    quote.add_argument("--customer", help="customer state (JSON); anonymous when left out")
    quote.add_argument("--store", help="store (JSON); a Moscow store when left out")
    quote.add_argument("--redeem", help="points to spend, or 'all'")
    quote.add_argument("--at", help="time of the sale, ISO 8601 with offset (default: now)")
    quote.add_argument("--explain", action="store_true", help="a readable table, not JSON")


def run(args: argparse.Namespace) -> int:
    try:
        if args.rules_command == "check":
            return _check(args.file)
        return _quote(args)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"{path}: cannot read: {error}") from None


def load_rules(path: str) -> RuleSet:
    try:
        return parse_rule_set(_read(path), source=path)
    except RuleSetError as error:
        raise BadInput(str(error)) from None


def load_json(model: type[Model], path: str) -> Model:
    text = _read(path)
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(f"{path}: not valid JSON: {error}") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        problems = []
        for item in error.errors()[:5]:
            field = ".".join(str(part) for part in item["loc"]) or "(top level)"
            problems.append(f"{path}: {field}: {item['msg']}")
        raise BadInput("\n".join(problems)) from None


def _check(path: str) -> int:
    rule_set = load_rules(path)
    print(f"{path}: ok")
    print(f"rule_set_id   {rule_set.rule_set_id}")
    print(f"effective     {rule_set.effective_from.isoformat()}")
    print(
        f"rules         {len(rule_set.earn)} earn, {len(rule_set.rewards)} rewards, "
        f"{len(rule_set.grants)} grants, {len(rule_set.messages)} messages, "
        f"{len(rule_set.tiers)} tiers, {len(rule_set.floors)} floors"
    )
    print(f"sha256        {rule_set.content_hash}")
    for warning in rule_set_warnings(rule_set):
        print(f"warning: {path}: {warning}", file=sys.stderr)
    return 0


def _redeem(value: str | None) -> RedeemRequest:
    if value is None:
        return RedeemRequest()
    if value == "all":
        return RedeemRequest(mode="all")
    if not value.isdigit():
        raise BadInput(f"--redeem: {value!r} is not a whole number of points or 'all'")
    try:
        return RedeemRequest(points=int(value))
    except ValidationError:
        raise BadInput(f"--redeem: {value} points is out of range") from None


def _moment(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"--at: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise BadInput(f"--at: {value!r} needs a time zone offset, e.g. +03:00")
    return moment


def _quote(args: argparse.Namespace) -> int:
    rule_set = load_rules(args.rules)
    basket = load_json(Basket, args.basket)
    customer = load_json(CustomerState, args.customer) if args.customer else CustomerState()
    store = load_json(Store, args.store) if args.store else PREVIEW_STORE
    redeem = _redeem(args.redeem)
    moment = _moment(args.at)
    try:
        quote = evaluate(rule_set, customer, basket, store, moment, redeem)
    except EvaluationError as error:
        raise BadInput(f"cannot quote: {error}") from None
    if args.explain:
        print(explain(quote, basket, rule_set))
    else:
        print(json.dumps(json.loads(canonical_json(quote)), indent=2, ensure_ascii=False))
    return 0


def money(kopecks: int) -> str:
    """`12345` → `123.45` (integers only)."""
    sign = "-" if kopecks < 0 else ""
    roubles, rest = divmod(abs(kopecks), 100)
    return f"{sign}{roubles}.{rest:02d}"


def quantity(milli: int) -> str:
    units, rest = divmod(milli, 1000)
    return f"{units}.{rest:03d}"


def explain(quote: Quote, basket: Basket, rule_set: RuleSet) -> str:
    """The quote as a table a person can check by hand."""
    out = [
        f"rule set {quote.rule_set_id} (sha256 {quote.rule_set_hash[:12]}…), "
        f"evaluator {quote.evaluator_version}",
        "",
        f"{'line':<6}{'sku':<18}{'qty':>9}{'price':>10}{'total':>11}"
        f"{'discount':>10}{'to pay':>11}{'earn':>7}{'spend':>7}",
    ]
    by_id = {line.line_id: line for line in quote.lines}
    for line in basket.lines:
        quoted = by_id[line.line_id]
        paid = sum(part.total for part in quoted.fiscal)
        out.append(
            f"{line.line_id:<6}{line.sku[:17]:<18}{quantity(line.quantity_milli):>9}"
            f"{money(line.unit_price):>10}{money(line.total - line.pos_discount):>11}"
            f"{money(quoted.discount):>10}{money(paid):>11}{quoted.earn_points:>7}"
            f"{quoted.burn_points:>7}"
        )
        if len(quoted.fiscal) > 1:
            for part in quoted.fiscal:
                out.append(
                    f"{'':<6}{'  fiscal':<18}{quantity(part.quantity_milli):>9}"
                    f"{money(part.unit_price):>10}{'':>11}{'':>10}{money(part.total):>11}"
                )
    out += [
        "",
        f"total {money(quote.total)}  discount {money(quote.discount)}  "
        f"to pay {money(quote.payable)}  tier {quote.tier or '-'}",
        f"points earned {quote.earn_points}"
        + (
            f" (active from {quote.earn_activates_at.isoformat()})"
            if quote.earn_activates_at
            else ""
        )
        + (f", expire {quote.earn_expires_at.isoformat()}" if quote.earn_expires_at else ""),
        f"points spent {quote.burn_points} of {quote.redeem_requested} asked"
        + (f" (limited by {quote.redeem_limited_by})" if quote.redeem_limited_by else ""),
        "",
        "why:",
    ]
    for item in quote.explanation:
        amounts = []
        if item.points:
            amounts.append(f"{item.points:+d} points")
        if item.kopecks:
            amounts.append(f"-{money(item.kopecks)} money")
        shares = ", ".join(
            f"{line_id}: "
            + " ".join(([f"{points:+d}p"] if points else []) + ([f"-{money(k)}"] if k else []))
            for line_id, points, k in item.lines
        )
        out.append(
            f"  {item.rule_id:<22}{item.kind:<16}{' '.join(amounts):<28}"
            + (f"lines {shares}" if shares else "")
        )
    for grant in quote.grants:
        out.append(
            f"grant {grant.kind} {grant.points:+d} points to {grant.customer_id} "
            f"(key {grant.grant_key})"
        )
    for change in quote.counter_changes:
        where = f" line {change.line_id}" if change.line_id else ""
        out.append(f"counter {change.counter} {change.delta:+d} ({change.rule_id}{where})")
    for message in quote.messages:
        out.append(f"receipt [{message.rule_id}] {message.text}")
    return "\n".join(out)
