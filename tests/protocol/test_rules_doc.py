"""Every example in docs/rules.md is executed here, so the doc cannot drift."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from protocol import (
    Basket,
    CustomerState,
    RedeemRequest,
    RuleSetError,
    Store,
    canonical_json,
    evaluate,
    parse_rule_set,
    refund_quote,
)
from protocol._sale import line_total_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
HEADER = 'rule_set_id = "example"\neffective_from = 2026-01-01T00:00:00+03:00\n'
AT = "2026-11-25T12:00:00+03:00"
STORE = Store(store_id="msk-001", name="Москва", timezone="Europe/Moscow")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, str, str]]:
    """(toml, kind of the block after it, that block) for every toml block of the doc."""
    blocks = [(m.group(1), m.group(2), m.start()) for m in FENCE.finditer(DOC.read_text())]
    found = []
    for index, (lang, body, start) in enumerate(blocks):
        if lang != "toml":
            continue
        after = blocks[index + 1] if index + 1 < len(blocks) else ("", "", 0)
        line = DOC.read_text()[:start].count("\n") + 1
        found.append((f"line {line}", body, *after[:2]))
    return found


EXAMPLES = examples()


def test_python_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DOC.parents[1])
    blocks = [m.group(2) for m in FENCE.finditer(DOC.read_text()) if m.group(1) == "python"]
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})


def test_the_doc_has_examples_of_every_kind() -> None:
    text = DOC.read_text()
    for kind in (
        "per_money",
        "per_unit",
        "per_order",
        "multiplier",
        "percent",
        "fixed",
        "free_product",
        "every_nth",
        "stamps",
        "welcome",
        "birthday",
        "referral",
    ):
        assert f'kind = "{kind}"' in text, kind
    assert sum(1 for _, _, after, _ in EXAMPLES if after == "json") >= 20


def subset(expected: Any, actual: Any, path: str = "") -> None:
    """Every key the doc expects is in the result with that value; lists match in length."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            subset(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), path
        assert len(expected) == len(actual), f"{path}: {len(expected)} != {len(actual)}: {actual}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            subset(want, got, f"{path}[{index}]")
    else:
        assert expected == actual, f"{path}: doc says {expected!r}, evaluator gives {actual!r}"


def basket_of(data: Any) -> Basket:
    if isinstance(data, list):
        data = {"lines": data}
    lines = []
    for line in data["lines"]:
        line = dict(line)
        line.setdefault("total", line_total_of(line["quantity_milli"], line["unit_price"]))
        lines.append(line)
    return Basket.model_validate({**data, "lines": lines})


def plain(model: Any) -> Any:
    return json.loads(canonical_json(model))


@pytest.mark.parametrize(
    ("where", "toml", "kind", "block"), EXAMPLES, ids=[example[0] for example in EXAMPLES]
)
def test_doc_example(where: str, toml: str, kind: str, block: str) -> None:
    if kind == "error":
        with pytest.raises(RuleSetError) as error:
            parse_rule_set(HEADER + toml, source="rules.toml")
        assert str(error.value) == block.strip()
        return
    rule_set = parse_rule_set(HEADER + toml, source="rules.toml")
    if kind != "json":
        return
    case = json.loads(block)
    basket = basket_of(case["basket"])
    customer = CustomerState.model_validate(case.get("customer", {"customer_id": "c-1"}))
    redeem = case.get("redeem", 0)
    request = RedeemRequest(mode="all") if redeem == "all" else RedeemRequest(points=redeem)
    now = datetime.fromisoformat(case.get("at", AT))
    quote = evaluate(rule_set, customer, basket, STORE, now, request)
    subset(case["expect"], plain(quote), "quote")
    earlier = []
    for step in case.get("refunds", []):
        refund = refund_quote(quote, basket, step["returned"], earlier)
        subset(step["expect"], plain(refund), "refund")
        earlier.append(refund)
