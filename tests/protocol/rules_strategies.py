"""Hypothesis strategies: baskets, customers and random rule sets written as TOML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from protocol import Basket, BasketLine, CustomerState, Lot, RuleSet, parse_rule_set
from protocol._sale import line_total_of

CATEGORIES = ("dairy", "bread", "fruit", "tobacco", "meat")
SKUS = tuple(f"sku-{n}" for n in range(8))
HEADER = 'rule_set_id = "random"\neffective_from = 2026-01-01T00:00:00+03:00\n'
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@st.composite
def basket_lines(draw: st.DrawFn, *, min_size: int = 1, max_size: int = 8) -> list[BasketLine]:
    count = draw(st.integers(min_size, max_size))
    lines = []
    for n in range(count):
        weighed = draw(st.booleans()) and draw(st.booleans())
        quantity = draw(st.integers(1, 3000)) if weighed else 1000 * draw(st.integers(1, 6))
        price = draw(st.integers(0, 200_000))
        total = line_total_of(quantity, price)
        lines.append(
            BasketLine(
                line_id=str(n + 1),
                sku=draw(st.sampled_from(SKUS)),
                category=draw(st.sampled_from(CATEGORIES)),
                labels=draw(st.sampled_from(((), ("local",), ("promo", "local")))),
                quantity_milli=quantity,
                unit_price=price,
                total=total,
                pos_discount=draw(st.integers(0, total // 10)),
                min_unit_price=draw(st.sampled_from((None, None, price // 2))),
            )
        )
    return lines


def baskets(**kwargs: int) -> st.SearchStrategy[Basket]:
    return st.builds(
        lambda lines, promos: Basket(lines=tuple(lines), promo_codes=promos),
        basket_lines(**kwargs),
        st.sampled_from(((), ("AUTUMN",))),
    )


@st.composite
def customers(draw: st.DrawFn) -> CustomerState:
    active = draw(st.integers(0, 5000))
    pending = draw(st.integers(0, 500))
    return CustomerState(
        customer_id=draw(st.sampled_from((None, "c-1", "c-1", "c-1"))),
        consent_marketing=draw(st.booleans()),
        favourite_categories=draw(st.sampled_from(((), ("fruit",), ("dairy", "meat")))),
        points_balance=active + pending,
        lots=(
            Lot(lot_id="a", points=active, earned_at=NOW, activates_at=NOW - timedelta(days=1)),
            Lot(lot_id="p", points=pending, earned_at=NOW, activates_at=NOW + timedelta(days=9)),
        ),
        counters={
            "purchases": draw(st.integers(0, 30)),
            "stamps:cup": draw(st.integers(0, 8)),
        },
        rolling_spend=draw(st.integers(0, 5_000_000)),
        birthday=draw(st.sampled_from((None, datetime(1990, 11, 24).date()))),
    )


def _condition(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return f'categories = ["{draw(st.sampled_from(CATEGORIES))}"]\n'
    if choice == 1:
        return f'exclude_categories = ["{draw(st.sampled_from(CATEGORIES))}"]\n'
    if choice == 2:
        return f'skus = ["{draw(st.sampled_from(SKUS))}", "{draw(st.sampled_from(SKUS))}"]\n'
    if choice == 3:
        return 'labels = ["local"]\n'
    if choice == 4:
        return 'promo_codes = ["AUTUMN"]\n'
    if choice == 5:
        return 'tiers = ["gold"]\n'
    return ""


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    """A random but valid rule set of every kind of rule."""
    parts = [
        HEADER,
        f'rounding = "{draw(st.sampled_from(("floor", "half_up")))}"\n',
        "pending_days = 14\nexpiry_days = 365\n",
        '[[tiers]]\nid = "silver"\nmin_rolling_spend = 0\n',
        '[[tiers]]\nid = "gold"\nmin_rolling_spend = 3000000\n',
        "[redemption]\n",
        f"kopecks_per_point = {draw(st.sampled_from((1, 50, 100)))}\n",
        f"max_share_bp = {draw(st.integers(0, 10_000))}\n",
        f"min_payable = {draw(st.integers(0, 1000))}\n",
        'exclude_categories = ["tobacco"]\n',
        '[[floors]]\nid = "bread"\ncategories = ["bread"]\nmin_unit_price_bp = 5000\n',
    ]
    earn_kinds = ("per_money", "per_unit", "per_order", "multiplier")
    for n in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(earn_kinds))
        body = f'[[earn]]\nid = "e{n}"\nkind = "{kind}"\npriority = {draw(st.integers(-2, 2))}\n'
        if kind == "per_money":
            per = draw(st.sampled_from((100, 1000, 200, 3125)))
            body += f"points = {draw(st.integers(0, 5))}\nper = {per}\n"
            body += f'basis = "{draw(st.sampled_from(("paid", "full")))}"\n'
        elif kind in ("per_unit", "per_order"):
            body += f"points = {draw(st.integers(0, 50))}\n"
        else:
            body += f"multiplier_permille = {draw(st.integers(1000, 3000))}\n"
            body += f"favourites = {draw(st.sampled_from(('true', 'false')))}\n"
        body += f"min_amount = {draw(st.sampled_from((0, 0, 10_000)))}\n"
        body += f"stop = {draw(st.sampled_from(('true', 'false', 'false')))}\n"
        parts.append(body + _condition(draw))
    reward_kinds = ("percent", "fixed", "free_product", "every_nth", "stamps")
    for n in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(reward_kinds))
        body = f'[[rewards]]\nid = "r{n}"\nkind = "{kind}"\n'
        if kind == "percent":
            body += f"percent_bp = {draw(st.integers(0, 10_000))}\n"
        elif kind == "fixed":
            body += f"amount = {draw(st.integers(0, 100_000))}\n"
        elif kind == "free_product":
            body += f"every = {draw(st.integers(0, 4))}\nfree = {draw(st.integers(1, 2))}\n"
        elif kind == "every_nth":
            body += f"nth = {draw(st.integers(2, 5))}\npercent_bp = {draw(st.integers(0, 5000))}\n"
        else:
            body += f'card = "cup"\nneeded = {draw(st.integers(1, 6))}\n'
        body += f"stop = {draw(st.sampled_from(('true', 'false')))}\n"
        parts.append(body + _condition(draw))
    parts.append('[[grants]]\nid = "welcome"\nkind = "welcome"\npoints = 100\n')
    parts.append('[[grants]]\nid = "birthday"\nkind = "birthday"\npoints = 100\nwindow_days = 3\n')
    return parse_rule_set("".join(parts), source="random.toml")
