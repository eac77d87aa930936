"""Hand-checked quotes: statuses, grants, time zones, limits, fiscal lines, refunds."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    EVALUATOR_VERSION,
    Basket,
    CustomerState,
    CustomerStatus,
    EvaluationError,
    Lot,
    Quote,
    RedeemRequest,
    RefundError,
    Store,
    effective_tier,
    evaluate,
    refund_quote,
    spendable_points,
)
from protocol._sale import line_total_of

from .rules_helpers import CUSTOMER, NOW, STORE, basket, line, rules

ROOT = Path(__file__).resolve().parents[2]


def test_one_point_per_rouble_on_paid_money() -> None:
    rule_set = rules('[[earn]]\nid = "base"\nkind = "per_money"\npoints = 1\nper = 100\n')
    quote = evaluate(rule_set, CUSTOMER, basket(line("1", 12345)), STORE, NOW)
    assert quote.earn_points == 123  # 123.45 roubles, rounded down
    assert quote.evaluator_version == EVALUATOR_VERSION
    assert quote.rule_set_hash == rule_set.content_hash
    assert [(e.rule_id, e.points) for e in quote.explanation] == [("base", 123)]


def test_percent_then_points_then_earn_on_what_is_left() -> None:
    rule_set = rules(
        '[[earn]]\nid = "base"\nkind = "per_money"\npoints = 1\n'
        '[[rewards]]\nid = "ten"\nkind = "percent"\npercent_bp = 1000\n'
    )
    quote = evaluate(
        rule_set,
        CUSTOMER,
        basket(line("1", 10000), line("2", 5000, 3000)),
        STORE,
        NOW,
        RedeemRequest(points=50),
    )
    # 250.00 total, 10 % = 25.00 off, 50 points = 50.00 off, 175.00 left earns 175 points
    assert quote.total == 25000
    assert quote.discount == 2500 + 5000
    assert quote.payable == 17500
    assert quote.burn_points == 50
    assert quote.earn_points == 175
    for quote_line in quote.lines:
        assert sum(part.total for part in quote_line.fiscal) == (
            {"1": 10000, "2": 15000}[quote_line.line_id] - quote_line.discount
        )


def test_refund_receipt_returns_units_at_the_prices_sold() -> None:
    rule_set = rules('[[rewards]]\nid = "minus-1"\nkind = "fixed"\namount = 100\n')
    sale = basket(line("1", 3333, 3000))
    quote = evaluate(rule_set, CUSTOMER, sale, STORE, NOW)
    sold = [(p.quantity_milli, p.unit_price) for p in quote.lines[0].fiscal]
    assert sold == [(1000, 3299), (2000, 3300)]
    first = refund_quote(quote, sale, {"1": 1000})
    rest = refund_quote(quote, sale, {"1": 2000}, [first])
    assert [(p.quantity_milli, p.unit_price) for p in first.lines[0].fiscal] == [(1000, 3299)]
    assert [(p.quantity_milli, p.unit_price) for p in rest.lines[0].fiscal] == [(2000, 3300)]
    assert (first.money, rest.money) == (3299, 6600)


def test_full_refund_reverses_everything() -> None:
    rule_set = rules('[[earn]]\nid = "base"\nkind = "per_money"\npoints = 1\n')
    sale = basket(line("1", 9999, 3000))
    quote = evaluate(rule_set, CUSTOMER, sale, STORE, NOW, RedeemRequest(points=10))
    first = refund_quote(quote, sale, {"1": 1000})
    second = refund_quote(quote, sale, {"1": 2000}, [first])
    assert first.money + second.money == quote.payable
    assert first.earn_points + second.earn_points == quote.earn_points
    assert first.burn_points + second.burn_points == quote.burn_points == 10
    assert second.complete


BASE = '[[earn]]\nid = "base"\nkind = "per_money"\npoints = 1\n'
GRANTS = (
    '[[grants]]\nid = "welcome"\nkind = "welcome"\npoints = 100\n'
    '[[grants]]\nid = "birthday"\nkind = "birthday"\npoints = 300\nwindow_days = 7\n'
)


def test_blocked_customer_earns_spends_and_gets_nothing() -> None:
    blocked = CUSTOMER.model_copy(update={"status": CustomerStatus.blocked})
    quote = evaluate(
        rules(BASE + GRANTS), blocked, basket(line("1", 10000)), STORE, NOW, RedeemRequest(points=5)
    )
    assert (quote.earn_points, quote.burn_points, quote.grants) == (0, 0, ())
    assert quote.redeem_limited_by is not None


def test_provisional_customer_earns_but_cannot_spend() -> None:
    provisional = CUSTOMER.model_copy(update={"status": CustomerStatus.provisional})
    quote = evaluate(
        rules(BASE), provisional, basket(line("1", 10000)), STORE, NOW, RedeemRequest(points=5)
    )
    assert quote.earn_points == 100
    assert quote.burn_points == 0
    assert quote.redeem_limited_by == (
        "only an identified, confirmed, active customer can spend points"
    )


def test_anonymous_cheque_earns_to_the_identifier_but_moves_no_counters() -> None:
    rule_set = rules(
        BASE
        + GRANTS
        + '[[rewards]]\nid = "nth"\nkind = "every_nth"\nnth = 2\npercent_bp = 100\n'
        + '[[messages]]\nid = "m"\ntext = { ru = "реклама" }\n'
        + '[[messages]]\nid = "s"\nmarketing = false\ntext = { ru = "+{earn_points}" }\n'
    )
    quote = evaluate(rule_set, CustomerState(), basket(line("1", 10000)), STORE, NOW)
    assert quote.earn_points == 100
    assert quote.counter_changes == quote.grants == ()
    assert quote.rolling_spend_delta == 0
    assert [m.text for m in quote.messages] == ["+100"]


def test_grants_are_not_offered_twice_and_birthday_window_crosses_new_year() -> None:
    customer = CUSTOMER.model_copy(
        update={
            "birthday": date(1990, 12, 30),
            "grants_received": ("welcome:c-1", "birthday:c-1:2025"),
        }
    )
    january = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    quote = evaluate(rules(BASE + GRANTS), customer, basket(line("1", 100)), STORE, january)
    assert quote.grants == ()
    fresh = customer.model_copy(update={"grants_received": ()})
    quote = evaluate(rules(BASE + GRANTS), fresh, basket(line("1", 100)), STORE, january)
    assert [g.grant_key for g in quote.grants] == ["welcome:c-1", "birthday:c-1:2025"]


def test_leap_day_birthday_is_kept_on_the_28th() -> None:
    customer = CUSTOMER.model_copy(update={"birthday": date(2000, 2, 29)})
    on_28th = datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    quote = evaluate(rules(GRANTS), customer, basket(line("1", 100)), STORE, on_28th)
    assert "birthday:c-1:2026" in [g.grant_key for g in quote.grants]


def test_hours_wrap_midnight_in_the_store_time_zone() -> None:
    night = rules('[[earn]]\nid = "night"\nkind = "per_money"\npoints = 1\nhours = "22:00-06:00"\n')
    vladivostok = Store(store_id="vvo", name="Владивосток", timezone="Asia/Vladivostok")
    at_23_vvo = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)  # 23:00 in Vladivostok, 16:00 Moscow
    assert evaluate(night, CUSTOMER, basket(line("1", 1000)), vladivostok, at_23_vvo).earn_points
    assert not evaluate(night, CUSTOMER, basket(line("1", 1000)), STORE, at_23_vvo).earn_points


def test_stop_in_rewards_keeps_later_rewards_off_those_lines() -> None:
    rule_set = rules(
        '[[rewards]]\nid = "a"\nkind = "percent"\npercent_bp = 1000\npriority = 1\nstop = true\n'
        'categories = ["dairy"]\n'
        '[[rewards]]\nid = "b"\nkind = "percent"\npercent_bp = 2000\n'
    )
    quote = evaluate(
        rule_set,
        CUSTOMER,
        basket(line("1", 10000, category="dairy"), line("2", 10000)),
        STORE,
        NOW,
    )
    assert [q.discount for q in quote.lines] == [1000, 2000]


def test_half_up_rounding_and_a_manual_tier() -> None:
    rule_set = rules(
        'rounding = "half_up"\n'
        '[[tiers]]\nid = "silver"\nmin_rolling_spend = 0\n'
        '[[tiers]]\nid = "gold"\nmin_rolling_spend = 100000000\n'
        '[[earn]]\nid = "gold-rate"\nkind = "per_money"\npoints = 1\ntiers = ["gold"]\n'
    )
    gold_by_hand = CUSTOMER.model_copy(update={"tier": "gold"})
    assert effective_tier(rule_set, gold_by_hand) == "gold"
    assert effective_tier(rule_set, CUSTOMER) == "silver"
    quote = evaluate(rule_set, gold_by_hand, basket(line("1", 150)), STORE, NOW)
    assert quote.earn_points == 2  # 1.5 rounds half up


def test_spendable_points_skip_pending_expired_and_debt() -> None:
    lots = (
        Lot(lot_id="a", points=100, earned_at=NOW, activates_at=NOW - timedelta(days=1)),
        Lot(lot_id="p", points=50, earned_at=NOW, activates_at=NOW + timedelta(seconds=1)),
        Lot(
            lot_id="e",
            points=70,
            earned_at=NOW,
            activates_at=NOW - timedelta(days=9),
            expires_at=NOW,
        ),
    )
    customer = CUSTOMER.model_copy(update={"points_balance": 220, "lots": lots})
    assert spendable_points(customer, NOW) == 100
    assert spendable_points(customer.model_copy(update={"points_balance": 80}), NOW) == 80
    assert spendable_points(customer.model_copy(update={"points_balance": -5}), NOW) == 0
    assert spendable_points(CUSTOMER.model_copy(update={"points_balance": 30}), NOW) == 30
    # a till's own balance (central's plus its entries) caps the same lots
    assert spendable_points(customer, NOW, balance=80) == 80
    assert spendable_points(customer, NOW, balance=500) == 100
    assert spendable_points(customer, NOW, balance=-5) == 0


def test_min_payable_limits_points() -> None:
    rule_set = rules("[redemption]\nmin_payable = 5050\n")
    quote = evaluate(
        rule_set, CUSTOMER, basket(line("1", 10000)), STORE, NOW, RedeemRequest(mode="all")
    )
    assert quote.burn_points == 49  # 100.00 - 50.50 = 49.50 → 49 whole points
    assert quote.redeem_limited_by == "minimum left to pay in money"


def test_weighed_line_prints_a_reachable_total() -> None:
    rule_set = rules('[[rewards]]\nid = "f"\nkind = "fixed"\namount = 1001\n')
    sale = basket(line("1", 99900, 1500), line("2", 1000, 2000))
    quote = evaluate(rule_set, CUSTOMER, sale, STORE, NOW)
    assert quote.discount == 1001
    for quoted, sold in zip(quote.lines, sale.lines, strict=True):
        for part in quoted.fiscal:
            assert part.total == line_total_of(part.quantity_milli, part.unit_price)
        assert sum(part.total for part in quoted.fiscal) == sold.total - quoted.discount
    assert len(quote.lines[0].fiscal) == 1  # a weighed line is never split


def test_naive_clock_and_other_currency_are_refused() -> None:
    with pytest.raises(EvaluationError, match="timezone-aware"):
        evaluate(rules(BASE), CUSTOMER, basket(line("1", 1)), STORE, datetime(2026, 1, 1))
    kzt = Basket(currency="KZT", lines=(line("1", 1),))
    with pytest.raises(EvaluationError, match="KZT"):
        evaluate(rules(BASE), CUSTOMER, kzt, STORE, NOW)


def test_refund_reverses_stamps_by_line_and_purchases_at_the_end() -> None:
    rule_set = rules(
        '[[rewards]]\nid = "card"\nkind = "stamps"\ncard = "cup"\nneeded = 6\nskus = ["cup"]\n'
        '[[rewards]]\nid = "nth"\nkind = "every_nth"\nnth = 10\npercent_bp = 500\n'
    )
    sale = basket(line("1", 15000, 3000, sku="cup"), line("2", 5000))
    quote = evaluate(rule_set, CUSTOMER, sale, STORE, NOW)
    stamps = [(c.counter, c.delta, c.line_id) for c in quote.counter_changes]
    assert stamps == [("stamps:cup", 3, "1"), ("purchases", 1, None)]
    first = refund_quote(quote, sale, {"1": 1000})
    assert [(c.counter, c.delta) for c in first.counter_changes] == [("stamps:cup", -1)]
    second = refund_quote(quote, sale, {"1": 2000, "2": 1000}, [first])
    assert sorted((c.counter, c.delta) for c in second.counter_changes) == [
        ("purchases", -1),
        ("stamps:cup", -2),
    ]
    with pytest.raises(RefundError, match="only 0 of 3000 are left"):
        refund_quote(quote, sale, {"1": 1000}, [first, second])
    with pytest.raises(RefundError, match="return whole units"):
        refund_quote(quote, sale, {"1": 500})
    with pytest.raises(RefundError, match="not on the original cheque"):
        refund_quote(quote, sale, {"9": 1})
    changed = basket(line("1", 15001, 3000, sku="cup"), line("2", 5000))
    with pytest.raises(RefundError, match="not the line quoted"):
        refund_quote(quote, changed, {"1": 1})
    other = evaluate(rule_set, CUSTOMER, basket(line("1", 15000, 3000, sku="cup")), STORE, NOW)
    with pytest.raises(RefundError, match="another sale"):
        refund_quote(quote, sale, {"1": 1000}, [refund_quote(other, other_basket(), {"1": 1000})])


def other_basket() -> Basket:
    return basket(line("1", 15000, 3000, sku="cup"))


def test_same_quote_bytes_in_processes_with_other_hash_seeds() -> None:
    """Central recomputes a till's quote in another process: set order must not leak."""
    script = (
        "import sys; from pathlib import Path; from datetime import datetime\n"
        "from protocol import *\n"
        "rules = parse_rule_set(Path('examples/rules/base.toml').read_text())\n"
        "basket = Basket.model_validate_json(Path('examples/basket.json').read_text())\n"
        "customer = CustomerState.model_validate_json(Path('examples/customer.json').read_text())\n"
        "store = Store.model_validate_json(Path('examples/store.json').read_text())\n"
        "now = datetime.fromisoformat('2026-11-25T12:00:00+03:00')\n"
        "quote = evaluate(rules, customer, basket, store, now, RedeemRequest(mode='all'))\n"
        "sys.stdout.write(canonical_json(quote).decode())\n"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=60,
            check=True,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1


def test_granted_points_expire_like_earned_ones() -> None:
    quote = evaluate(
        rules("expiry_days = 30\n" + GRANTS), CUSTOMER, basket(line("1", 100)), STORE, NOW
    )
    (welcome,) = quote.grants
    assert welcome.grant_key == "welcome:c-1"
    assert welcome.expires_at == NOW + timedelta(days=30)


# --- weighed goods only -------------------------------------------------------------------
# A weighed line prints only some totals (about a kopeck apart per kilogram): near the
# proportional split, two weighed lines may print no pair of totals that adds up to the
# discount, and what could not be placed was lost, or the points refused altogether.


def _prints(quote: Quote) -> bool:  # every fiscal line multiplies out
    return all(
        part.total == line_total_of(part.quantity_milli, part.unit_price)
        for sold in quote.lines
        for part in sold.fiscal
    )


def test_a_fixed_discount_on_weighed_lines_is_given_whole() -> None:
    minus_100 = rules('[[rewards]]\nid = "minus-100"\nkind = "fixed"\namount = 10000\n')
    apples, pears = line("1", 12990, 1234), line("2", 12990, 1500)
    quote = evaluate(minus_100, CUSTOMER, basket(apples, pears), STORE, NOW, RedeemRequest())
    assert quote.discount == 10000  # it was 99.99
    assert _prints(quote)


@pytest.mark.parametrize(
    ("lines", "asked", "spent"),
    [
        # 1.00 RUB prints on 2.345 kg of cheese and 1.75 kg of ham only as 1.00 off the ham
        (((2345, 37141), (1750, 43308)), 1, 1),
        (((2345, 37141), (1750, 43308)), 1431, 1431),
        # "redeem all", half the cheque at most: 147 points of 295.15 RUB (it spent none)
        (((1234, 12990), (1500, 8990)), None, 147),
    ],
)
def test_points_pay_for_weighed_lines_as_far_as_they_can_print(
    lines: tuple[tuple[int, int], ...], asked: int | None, spent: int
) -> None:
    half = "max_share_bp = 5000\n" if asked is None else ""
    by_rouble = rules(f"[redemption]\nkopecks_per_point = 100\n{half}")
    goods = basket(*(line(str(n), price, quantity) for n, (quantity, price) in enumerate(lines)))
    rich = CUSTOMER.model_copy(update={"points_balance": 100_000})
    request = RedeemRequest(mode="all") if asked is None else RedeemRequest(points=asked)
    quote = evaluate(by_rouble, rich, goods, STORE, NOW, request)
    assert quote.burn_points == spent, quote.redeem_limited_by
    assert sum(sold.discount for sold in quote.lines) == spent * 100
    assert _prints(quote)


@given(
    st.integers(0, 300_000_000),
    st.integers(0, 300_000_000),
    st.sampled_from([None, "silver", "gold", "platinum"]),
)
def test_a_tier_for_a_rolling_spend_is_the_tier_of_a_state_with_it(
    spend: int, held: int, assigned: str | None
) -> None:
    rule_set = rules(
        '[[tiers]]\nid = "silver"\nmin_rolling_spend = 0\n'
        '[[tiers]]\nid = "gold"\nmin_rolling_spend = 100000000\n'
        '[[tiers]]\nid = "platinum"\nmin_rolling_spend = 200000000\n'
    )
    customer = CUSTOMER.model_copy(update={"tier": assigned, "rolling_spend": held})
    with_spend = customer.model_copy(update={"rolling_spend": spend})
    assert effective_tier(rule_set, customer, rolling_spend=spend) == effective_tier(
        rule_set, with_spend
    )
