"""Small builders for rule-set tests: a rule set from TOML text, a basket from tuples."""

from __future__ import annotations

from datetime import UTC, datetime

from protocol import Basket, BasketLine, CustomerState, RuleSet, Store, parse_rule_set
from protocol._sale import line_total_of

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday, 12:00 in Moscow
STORE = Store(store_id="msk-001", name="Москва", timezone="Europe/Moscow")
CUSTOMER = CustomerState(customer_id="c-1", points_balance=1000, consent_marketing=True)
HEADER = 'rule_set_id = "t"\neffective_from = 2026-01-01T00:00:00+03:00\n'


def rules(body: str) -> RuleSet:
    return parse_rule_set(HEADER + body, source="test.toml")


def line(
    line_id: str,
    unit_price: int,
    quantity_milli: int = 1000,
    *,
    sku: str | None = None,
    category: str | None = None,
    labels: tuple[str, ...] = (),
    pos_discount: int = 0,
    min_unit_price: int | None = None,
) -> BasketLine:
    return BasketLine(
        line_id=line_id,
        sku=sku or f"sku-{line_id}",
        category=category,
        labels=labels,
        quantity_milli=quantity_milli,
        unit_price=unit_price,
        total=line_total_of(quantity_milli, unit_price),
        pos_discount=pos_discount,
        min_unit_price=min_unit_price,
    )


def basket(*lines: BasketLine, promo_codes: tuple[str, ...] = ()) -> Basket:
    return Basket(lines=lines, promo_codes=promo_codes)
