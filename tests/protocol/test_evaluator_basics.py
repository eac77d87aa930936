"""First hand-checked quotes: base earning, a percent reward, points spent, a refund."""

from __future__ import annotations

from protocol import EVALUATOR_VERSION, RedeemRequest, evaluate, refund_quote

from .rules_helpers import CUSTOMER, NOW, STORE, basket, line, rules


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
