"""The evaluator builds its `Quote` without validating it again (`protocol._quote`): what it
builds must be exactly what validation would have made, and a quote beyond the wire
contract must still be refused."""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from protocol import Basket, CustomerState, Quote, RedeemRequest, Store, evaluate
from protocol._base import kopecks_max

from .rules_helpers import CUSTOMER, NOW, STORE, basket, line, rules
from .rules_strategies import baskets, customers, rule_sets

EXAMPLES = int(os.environ.get("KOPILKA_PROPERTY_EXAMPLES", "100"))
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
REDEEMS = st.sampled_from((RedeemRequest(), RedeemRequest(mode="all"), RedeemRequest(points=77)))
STORES = st.sampled_from(
    (STORE, Store(store_id="vvo-1", name="Владивосток", timezone="Asia/Vladivostok"))
)


def assert_same(built: Any, validated: Any, where: str = "quote") -> None:
    """Equal, and alike all the way down: the same types (no list for a tuple, no str for
    an enum, no bool or float for an int) and the same fields set."""
    assert type(built) is type(validated), where
    if isinstance(built, BaseModel):
        assert built.model_fields_set == validated.model_fields_set, where
        assert built.__pydantic_extra__ == validated.__pydantic_extra__ is None, where
        assert built.__pydantic_private__ == validated.__pydantic_private__, where
        assert list(built.__dict__) == list(type(built).model_fields), where
        for name in type(built).model_fields:
            assert_same(getattr(built, name), getattr(validated, name), f"{where}.{name}")
    elif isinstance(built, tuple):
        assert len(built) == len(validated), where
        for n, (a, b) in enumerate(zip(built, validated, strict=True)):
            assert_same(a, b, f"{where}[{n}]")
    else:
        assert built == validated, where


@FAST
@given(
    rule_sets(),
    customers(),
    baskets(max_size=10),
    REDEEMS,
    st.integers(0, 24 * 8),
    STORES,
)
def test_a_built_quote_is_what_validation_makes(
    rule_set: Any,
    customer: CustomerState,
    basket: Basket,
    redeem: RedeemRequest,
    hours: int,
    store: Store,
) -> None:
    now = NOW + timedelta(hours=hours)
    quote = evaluate(rule_set, customer, basket, store, now, redeem)
    validated = Quote.model_validate(quote.model_dump())
    assert quote == validated
    assert_same(quote, validated)
    assert Quote.model_validate_json(quote.model_dump_json()) == quote
    with pytest.raises(ValidationError):
        quote.total = 1  # type: ignore[misc]  # still frozen


def test_a_quote_with_grants_messages_and_counters_is_built_alike() -> None:
    rule_set = rules(
        "expiry_days = 30\n"
        '[[earn]]\nid = "base"\nkind = "per_money"\npoints = 1\n'
        '[[rewards]]\nid = "cup"\nkind = "stamps"\ncard = "cup"\nneeded = 2\n'
        '[[rewards]]\nid = "nth"\nkind = "every_nth"\nnth = 2\npercent_bp = 500\n'
        '[[grants]]\nid = "hello"\nkind = "welcome"\npoints = 50\n'
        '[[grants]]\nid = "bday"\nkind = "birthday"\npoints = 70\nwindow_days = 3\n'
        '[[grants]]\nid = "friend"\nkind = "referral"\npoints = 90\n'
        '[[messages]]\nid = "thanks"\nmarketing = false\ntext = { ru = "+{earn_points}" }\n'
    )
    customer = CUSTOMER.model_copy(
        update={
            "counters": {"stamps:cup": 2, "purchases": 1},
            "birthday": date(1990, 11, 24),
            "referred_by": "c-0",
        }
    )
    cheque = basket(line("1", 1000, 2000), line("2", 333, 3000), line("3", 1999, 1250))
    quote = evaluate(rule_set, customer, cheque, STORE, NOW, RedeemRequest(mode="all"))
    assert len(quote.grants) == 3
    assert quote.messages
    assert quote.counter_changes
    assert any(len(item.fiscal) == 2 for item in quote.lines)
    assert_same(quote, Quote.model_validate(quote.model_dump()))


def test_a_quote_beyond_the_bounds_is_refused_as_validation_refuses_it() -> None:
    """Validated inputs can still add up past the wire bounds; such a quote is refused with
    the `ValidationError` validation gives, never built."""
    price = kopecks_max // 2 + 1
    with pytest.raises(ValidationError, match="total"):
        evaluate(rules(""), CUSTOMER, basket(line("1", price), line("2", price)), STORE, NOW)
    generous = rules('[[earn]]\nid = "x"\nkind = "per_money"\npoints = 10000000\nper = 1\n')
    with pytest.raises(ValidationError, match="earn_points"):
        evaluate(generous, CUSTOMER, basket(line("1", 10**9)), STORE, NOW)
    welcome = rules('[[grants]]\nid = "hello"\nkind = "welcome"\npoints = 50\n')
    long_id = CUSTOMER.model_copy(update={"customer_id": "c" * 64})
    with pytest.raises(ValidationError, match="grant_key"):
        evaluate(welcome, long_id, basket(line("1", 100)), STORE, NOW)
    cards = "".join(
        f'[[rewards]]\nid = "card{n}"\nkind = "stamps"\ncard = "c{n}"\nneeded = 1000\n'
        for n in range(3)
    )
    many = Basket(lines=tuple(line(str(n), 100) for n in range(400)))
    with pytest.raises(ValidationError, match="counter_changes"):
        evaluate(rules(cards), CUSTOMER, many, STORE, NOW)
