"""Properties of the evaluator, the allocation and refunds, over random inputs."""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol
from protocol import (
    Basket,
    BasketLine,
    CustomerState,
    Quote,
    RedeemRequest,
    Refund,
    RefundError,
    RuleSet,
    canonical_json,
    evaluate,
    parse_rule_set,
    refund_quote,
)
from protocol._allocation import allocate, fiscal_parts, floor_total, is_exact
from protocol._sale import line_total_of

from .rules_helpers import CUSTOMER, STORE
from .rules_strategies import HEADER, NOW, basket_lines, baskets, customers, rule_sets

EXAMPLES = int(os.environ.get("KOPILKA_PROPERTY_EXAMPLES", "100"))
"""Raise it for a longer hunt: KOPILKA_PROPERTY_EXAMPLES=5000 pytest tests/protocol."""
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
REDEEMS = st.sampled_from((RedeemRequest(), RedeemRequest(mode="all"), RedeemRequest(points=77)))


def _floats(node: Any) -> Iterator[Any]:
    if isinstance(node, float):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _floats(value)
    elif isinstance(node, list):
        for value in node:
            yield from _floats(value)


def check_quote(quote: Quote, basket: Basket, rule_set: RuleSet) -> None:
    """What every quote must satisfy, whatever the rules."""
    again = Quote.model_validate_json(quote.model_dump_json())
    assert again == quote
    assert not list(_floats(json.loads(canonical_json(quote))))
    assert quote.total == basket.paid
    assert quote.earn_points == sum(line.earn_points for line in quote.lines)
    assert quote.burn_points == sum(line.burn_points for line in quote.lines)
    explained_points = sum(item.points for item in quote.explanation if item.kind != "redeem")
    explained_points -= sum(grant.points for grant in quote.grants)
    assert explained_points == quote.earn_points
    assert sum(item.kopecks for item in quote.explanation) == quote.discount
    for item in quote.explanation:
        assert item.lines == () or sum(p for _, p, _ in item.lines) == item.points
        assert item.lines == () or sum(k for _, _, k in item.lines) == item.kopecks
    for line, quoted in zip(basket.lines, quote.lines, strict=True):
        assert quoted.line_id == line.line_id
        paid = line.paid - quoted.discount
        assert paid >= 0
        assert sum(part.total for part in quoted.fiscal) == paid
        assert sum(part.quantity_milli for part in quoted.fiscal) == line.quantity_milli
        for part in quoted.fiscal:
            if quoted.discount:
                assert line_total_of(part.quantity_milli, part.unit_price) == part.total
                floor = line.min_unit_price or 0
                assert part.unit_price >= floor, (part, floor)
        if quoted.discount and line.category == "bread":
            assert paid >= floor_total(line.quantity_milli, -(-line.unit_price // 2))
    if quote.burn_points:
        value = rule_set.redemption.kopecks_per_point
        burned = sum(
            -p for item in quote.explanation if item.kind == "redeem" for _, p, _ in item.lines
        )
        assert burned == quote.burn_points
        assert quote.burn_points * value <= quote.discount


@FAST
@given(rule_sets(), customers(), baskets(), REDEEMS)
def test_random_rules_give_consistent_quotes(
    rule_set: RuleSet, customer: CustomerState, basket: Basket, redeem: RedeemRequest
) -> None:
    quote = evaluate(rule_set, customer, basket, STORE, NOW, redeem)
    check_quote(quote, basket, rule_set)
    assert quote.burn_points <= max(0, min(customer.points_balance, customer.lots[0].points))
    # deterministic, byte for byte
    assert canonical_json(evaluate(rule_set, customer, basket, STORE, NOW, redeem)) == (
        canonical_json(quote)
    )


@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(0, 100),  # weight
            st.integers(0, 500_000),  # paid
            st.one_of(st.integers(1, 6).map(lambda n: n * 1000), st.integers(1, 3000)),
            st.integers(0, 100_000),  # floor
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 2_000_000),
)
def test_allocation_is_exact_printable_and_above_floors(
    lines: list[tuple[int, int, int, int]], total: int
) -> None:
    weights = [w for w, _, _, _ in lines]
    quantities = [q for _, _, q, _ in lines]
    floors = [f for _, _, _, f in lines]
    paid = [max(p, floor_total(q, f)) for (_, p, q, f) in lines]
    shares = allocate(total, weights, paid, quantities, floors)
    caps = [
        max(0, paid[i] - floor_total(quantities[i], floors[i])) if weights[i] else 0
        for i in range(len(lines))
    ]
    assert sum(shares) <= total
    exact_room = sum(cap for cap, q in zip(caps, quantities, strict=True) if is_exact(q))
    if all(is_exact(q) for q in quantities) or total <= exact_room:
        assert sum(shares) == min(total, sum(caps))
    for i, share in enumerate(shares):
        assert 0 <= share <= caps[i]
        if share:
            parts = fiscal_parts(quantities[i], paid[i] - share, floors[i])
            assert sum(total for _, _, total in parts) == paid[i] - share
            for quantity, price, part_total in parts:
                assert line_total_of(quantity, price) == part_total
                assert price >= floors[i]


@FAST
@given(
    quantity=st.integers(1, 999),
    paid=st.integers(0, 500_000),
    floor=st.integers(0, 100_000),
)
def test_a_weighed_line_prints_what_was_paid_even_below_its_floor(
    quantity: int, paid: int, floor: int
) -> None:
    """A weighed line (under a kilo: every total has a price) prints `paid`, at a price not
    below its floor when the floor allows `paid`; when the POS's own discount took it below
    the floor, at the price that prints `paid` (the floor's price printed more than the
    line's total: a fiscal line the fiscal printer refuses)."""
    ((printed_quantity, price, total),) = fiscal_parts(quantity, paid, floor)
    assert (printed_quantity, total) == (quantity, paid)
    assert line_total_of(quantity, price) == paid
    if floor_total(quantity, floor) <= paid:
        assert price >= floor


SPLIT_RULES = parse_rule_set(
    HEADER
    + """
[redemption]
max_share_bp = 5000
exclude_skus = ["excluded"]
[[earn]]
id = "base"
kind = "per_money"
points = 3
per = 200
basis = "full"
exclude_skus = ["excluded"]
[[earn]]
id = "units"
kind = "per_unit"
points = 7
categories = ["dairy"]
[[earn]]
id = "double"
kind = "multiplier"
multiplier_permille = 2500
categories = ["dairy"]
priority = -1
[[earn]]
id = "order"
kind = "per_order"
points = 40
min_amount = 50000
basis = "full"
exclude_skus = ["excluded"]
[[rewards]]
id = "ten"
kind = "percent"
percent_bp = 1000
exclude_skus = ["excluded"]
[[rewards]]
id = "fixed"
kind = "fixed"
amount = 1234
exclude_skus = ["excluded"]
"""
)


@FAST
@given(basket_lines(max_size=5), st.data())
def test_splitting_a_line_changes_neither_points_nor_discount(
    lines: list[BasketLine], data: st.DataObject
) -> None:
    whole = [
        line for line in lines if line.quantity_milli >= 2000 and line.quantity_milli % 1000 == 0
    ]
    if not whole:
        return
    target = data.draw(st.sampled_from(whole))
    units = target.quantity_milli // 1000
    first = data.draw(st.integers(1, units - 1))
    parts = []
    for index, quantity in enumerate((first * 1000, (units - first) * 1000)):
        parts.append(
            target.model_copy(
                update={
                    "line_id": f"{target.line_id}s{index}",
                    "quantity_milli": quantity,
                    "total": line_total_of(quantity, target.unit_price),
                    "pos_discount": 0,
                    "min_unit_price": None,
                }
            )
        )
    clean = [line.model_copy(update={"pos_discount": 0, "min_unit_price": None}) for line in lines]
    original = Basket(lines=tuple(clean))
    split = Basket(
        lines=tuple(
            part for line in clean for part in (parts if line.line_id == target.line_id else [line])
        )
    )
    redeem = RedeemRequest(points=data.draw(st.integers(0, 500)))
    customer = CUSTOMER.model_copy(update={"points_balance": 500})
    before = evaluate(SPLIT_RULES, customer, original, STORE, NOW, redeem)
    after = evaluate(SPLIT_RULES, customer, split, STORE, NOW, redeem)
    assert after.earn_points == before.earn_points
    assert after.discount == before.discount
    assert after.burn_points == before.burn_points
    assert after.payable == before.payable


@FAST
@given(basket_lines(max_size=5), st.integers(1, 5), st.integers(1, 100_000), st.data())
def test_an_excluded_sku_changes_nothing_else(
    lines: list[BasketLine], units: int, price: int, data: st.DataObject
) -> None:
    extra = BasketLine(
        line_id="x",
        sku="excluded",
        quantity_milli=units * 1000,
        unit_price=price,
        total=units * price,
    )
    redeem = RedeemRequest(points=data.draw(st.integers(0, 500)))
    customer = CUSTOMER.model_copy(update={"points_balance": 500})
    without = evaluate(SPLIT_RULES, customer, Basket(lines=tuple(lines)), STORE, NOW, redeem)
    with_it = evaluate(SPLIT_RULES, customer, Basket(lines=(*lines, extra)), STORE, NOW, redeem)
    assert with_it.earn_points == without.earn_points
    assert with_it.discount == without.discount
    assert with_it.burn_points == without.burn_points
    assert with_it.lines[:-1] == without.lines
    assert with_it.lines[-1].discount == with_it.lines[-1].earn_points == 0
    assert with_it.explanation == without.explanation


@FAST
@given(rule_sets(), customers(), baskets(max_size=4), REDEEMS, st.data())
def test_partial_refunds_add_up_to_the_full_refund(
    rule_set: RuleSet,
    customer: CustomerState,
    basket: Basket,
    redeem: RedeemRequest,
    data: st.DataObject,
) -> None:
    quote = evaluate(rule_set, customer, basket, STORE, NOW, redeem)
    left = {line.line_id: line.quantity_milli for line in basket.lines}
    step = {line.line_id: 1000 if line.quantity_milli % 1000 == 0 else 1 for line in basket.lines}
    refunds: list[Refund] = []
    for round_ in range(6):
        returned = {}
        for line_id, quantity in left.items():
            if quantity and (round_ == 5 or data.draw(st.booleans())):
                units = data.draw(st.integers(1, quantity // step[line_id]))
                returned[line_id] = quantity if round_ == 5 else units * step[line_id]
        if not returned:
            continue
        if data.draw(st.booleans()):
            line_id = next(iter(returned))
            with pytest.raises(RefundError, match="left to return"):
                refund_quote(quote, basket, {line_id: left[line_id] + step[line_id]}, refunds)
        refund = refund_quote(quote, basket, returned, refunds)
        for line in refund.lines:
            assert sum(part.total for part in line.fiscal) == line.money
            assert sum(part.quantity_milli for part in line.fiscal) == line.quantity_milli
        refunds.append(refund)
        for line_id, quantity in returned.items():
            left[line_id] -= quantity
        assert sum(r.money for r in refunds) <= quote.payable
        assert sum(r.earn_points for r in refunds) <= quote.earn_points
        assert sum(r.burn_points for r in refunds) <= quote.burn_points
    assert refunds[-1].complete
    assert not any(r.complete for r in refunds[:-1])
    assert sum(r.money for r in refunds) == quote.payable
    assert sum(r.discount for r in refunds) == quote.discount
    assert sum(r.earn_points for r in refunds) == quote.earn_points
    assert sum(r.burn_points for r in refunds) == quote.burn_points
    assert sum(r.rolling_spend_reversed for r in refunds) == quote.rolling_spend_delta
    counters: dict[str, int] = {}
    for change in quote.counter_changes:
        counters[change.counter] = counters.get(change.counter, 0) + change.delta
    for refund in refunds:
        for change in refund.counter_changes:
            counters[change.counter] += change.delta
    assert set(counters.values()) <= {0}
    for quoted in quote.lines:  # every unit went back at a price the sale printed it at
        sold_at = sorted((p.unit_price, p.quantity_milli) for p in quoted.fiscal)
        back: dict[int, int] = {}
        for refund in refunds:
            for line in refund.lines:
                if line.line_id == quoted.line_id:
                    for part in line.fiscal:
                        back[part.unit_price] = back.get(part.unit_price, 0) + part.quantity_milli
        if quoted.fiscal[0].quantity_milli % 1000 == 0:
            assert sorted(back.items()) == sold_at
    with pytest.raises(RefundError):
        refund_quote(quote, basket, {basket.lines[0].line_id: 1}, refunds)


INTEGER_MODULES = (
    "_allocation",
    "_compiled",
    "_evaluator",
    "_grants",
    "_quote",
    "_refund",
    "_rules",
)


@pytest.mark.parametrize("module", INTEGER_MODULES)
def test_evaluator_code_has_no_float_arithmetic(module: str) -> None:
    """No true division, no float literal, no float() anywhere money or points are computed."""
    source = (Path(protocol.__file__).parent / f"{module}.py").read_text()
    for node in ast.walk(ast.parse(source)):
        assert not (isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div))
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float))
        assert not (isinstance(node, ast.Name) and node.id in {"float", "round", "Decimal"})
