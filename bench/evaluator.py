"""The evaluator's latency: a 30-line basket against a 50-rule set.

    python bench/evaluator.py            # 10,000 runs
    python bench/evaluator.py --quick    # 1,000 runs, well under a minute

Beside it, in the same run, the cost of only parsing the same basket from JSON with the
protocol models, as a yardstick. The last line of output is one JSON object: wall-clock
percentiles (`eval_p50_ms`, `eval_p99_ms`, `parse_p99_ms`), the evaluator's own CPU time
per run (`eval_cpu_*`), which a busy machine's preemptions do not inflate, and how many
times the garbage collector ran during the timed runs (`gc_collections`, per generation).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol import (
    Basket,
    BasketLine,
    CustomerState,
    Lot,
    RedeemRequest,
    RuleSet,
    Store,
    evaluate,
    parse_rule_set,
)
from protocol._sale import line_total_of

CATEGORIES = ("dairy", "bread", "meat", "fish", "fruit", "veg", "drinks", "snacks", "tobacco")
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
PENDING_UNTIL = datetime(2026, 12, 9, tzinfo=UTC)


def rule_set_50() -> RuleSet:
    """50 rules of every kind, most of them conditional, as a real chain might run."""
    parts = [
        'rule_set_id = "bench"\neffective_from = 2026-01-01T00:00:00+03:00\n',
        "pending_days = 14\nexpiry_days = 365\n",
        '[[tiers]]\nid = "silver"\nmin_rolling_spend = 0\n',
        '[[tiers]]\nid = "gold"\nmin_rolling_spend = 3000000\n',
        "[redemption]\nmax_share_bp = 5000\nmin_payable = 100\n",
        'exclude_categories = ["tobacco"]\n',
        '[[floors]]\nid = "bread-floor"\ncategories = ["bread"]\nmin_unit_price_bp = 5000\n',
        '[[earn]]\nid = "base"\nkind = "per_money"\npoints = 1\nexclude_categories = ["tobacco"]\n',
        '[[earn]]\nid = "gold-rate"\nkind = "per_money"\npoints = 1\nper = 200\ntiers = ["gold"]\n',
        '[[earn]]\nid = "fav"\nkind = "multiplier"\nmultiplier_permille = 1500\n'
        "favourites = true\npriority = -10\n",
        '[[earn]]\nid = "no-tobacco"\nkind = "per_money"\npoints = 0\npriority = 10\n'
        'categories = ["tobacco"]\nstop = true\n',
        '[[earn]]\nid = "order"\nkind = "per_order"\npoints = 50\nmin_amount = 300000\n',
    ]
    for n in range(20):
        category = CATEGORIES[n % 8]
        parts.append(
            f'[[earn]]\nid = "mult-{n}"\nkind = "multiplier"\nmultiplier_permille = 2000\n'
            f'categories = ["{category}"]\npriority = -10\n'
            f'days = ["{("mon", "tue", "wed", "thu", "fri", "sat", "sun")[n % 7]}"]\n'
        )
    for n in range(10):
        parts.append(
            f'[[earn]]\nid = "sku-bonus-{n}"\nkind = "per_unit"\npoints = 5\n'
            f'skus = ["sku-{n * 3}", "sku-{n * 3 + 1}"]\nhours = "08:00-22:00"\n'
        )
    for n in range(6):
        parts.append(
            f'[[rewards]]\nid = "promo-{n}"\nkind = "percent"\npercent_bp = {500 + n * 100}\n'
            f'promo_codes = ["PROMO{n}"]\ncategories = ["{CATEGORIES[n]}"]\n'
        )
    parts.append('[[rewards]]\nid = "fixed"\nkind = "fixed"\namount = 10000\nmin_amount = 200000\n')
    parts.append('[[rewards]]\nid = "free"\nkind = "free_product"\nevery = 3\nskus = ["sku-5"]\n')
    parts.append('[[rewards]]\nid = "nth"\nkind = "every_nth"\nnth = 5\npercent_bp = 300\n')
    parts.append('[[rewards]]\nid = "stamps"\nkind = "stamps"\ncard = "c"\nneeded = 6\n')
    parts.append('skus = ["sku-7"]\n')
    for n in range(3):
        parts.append(
            f'[[grants]]\nid = "g-{n}"\nkind = "{("welcome", "birthday", "referral")[n]}"\n'
            "points = 100\n"
        )
    parts.append(
        '[[messages]]\nid = "earned"\nmarketing = false\n'
        'text = { ru = "Начислено {earn_points}" }\n'
    )
    rule_set = parse_rule_set("".join(parts), source="bench")
    rules = len(rule_set.earn) + len(rule_set.rewards) + len(rule_set.floors)
    rules += len(rule_set.grants) + len(rule_set.messages)
    assert rules == 50, rules
    return rule_set


def basket_30() -> Basket:
    lines = []
    for n in range(30):
        quantity = 1000 * (1 + n % 3) if n % 5 else 350 + 17 * n
        price = 4990 + 1371 * n
        lines.append(
            BasketLine(
                line_id=str(n + 1),
                sku=f"sku-{n}",
                name=f"Товар {n}",
                category=CATEGORIES[n % len(CATEGORIES)],
                labels=("local",) if n % 4 == 0 else (),
                quantity_milli=quantity,
                unit_price=price,
                total=line_total_of(quantity, price),
                pos_discount=100 if n % 7 == 0 else 0,
            )
        )
    return Basket(lines=tuple(lines), promo_codes=("PROMO1", "PROMO3"))


def customer() -> CustomerState:
    earned = datetime(2026, 1, 10, tzinfo=UTC)
    return CustomerState(
        customer_id="c-bench",
        tier="silver",
        consent_marketing=True,
        favourite_categories=("fish", "fruit"),
        points_balance=5000,
        lots=(
            Lot(lot_id="l1", points=3000, earned_at=earned, activates_at=earned),
            Lot(
                lot_id="l2",
                points=2000,
                earned_at=NOW,
                activates_at=datetime(2026, 12, 9, tzinfo=UTC),
            ),
        ),
        counters={"purchases": 3, "stamps:c": 6},
        rolling_spend=1_000_000,
        grants_received=("welcome:c-bench",),
    )


def percentile(sorted_values: list[int], share: float) -> float:
    index = min(len(sorted_values) - 1, int(share * len(sorted_values)))
    return sorted_values[index] / 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 runs instead of 10,000")
    parser.add_argument("--runs", type=int, default=None, help="how many runs to time")
    args = parser.parse_args(argv)
    runs = args.runs or (1000 if args.quick else 10_000)
    rule_set = rule_set_50()
    basket = basket_30()
    state = customer()
    store = Store(store_id="msk-001", name="bench", timezone="Europe/Moscow")
    redeem = RedeemRequest(mode="all")
    basket_json = basket.model_dump_json()
    quote = evaluate(rule_set, state, basket, store, NOW, redeem)  # compile once, warm up
    for _ in range(min(200, runs)):
        evaluate(rule_set, state, basket, store, NOW, redeem)
        Basket.model_validate_json(basket_json)
    evals: list[int] = []
    parses: list[int] = []
    cpu_evals: list[int] = []
    clock = time.perf_counter_ns
    cpu = time.thread_time_ns
    collections = [generation["collections"] for generation in gc.get_stats()]
    for _ in range(runs):
        cpu_start = cpu()
        start = clock()
        evaluate(rule_set, state, basket, store, NOW, redeem)
        middle = clock()
        cpu_evals.append(cpu() - cpu_start)
        Basket.model_validate_json(basket_json)
        end = clock()
        evals.append(middle - start)
        parses.append(end - middle)
    collections = [
        generation["collections"] - before
        for generation, before in zip(gc.get_stats(), collections, strict=True)
    ]
    evals.sort()
    parses.sort()
    cpu_evals.sort()
    result = {
        "runs": runs,
        "lines": len(basket.lines),
        "rules": 50,
        "eval_p50_ms": round(percentile(evals, 0.50), 4),
        "eval_p99_ms": round(percentile(evals, 0.99), 4),
        "eval_cpu_p50_ms": round(percentile(cpu_evals, 0.50), 4),
        "eval_cpu_p99_ms": round(percentile(cpu_evals, 0.99), 4),
        "parse_p50_ms": round(percentile(parses, 0.50), 4),
        "parse_p99_ms": round(percentile(parses, 0.99), 4),
        "earn_points": quote.earn_points,
        "burn_points": quote.burn_points,
        "explanation_items": len(quote.explanation),
        "gc_collections": collections,
        "python": platform.python_version(),
        "load_1m": round(os.getloadavg()[0], 2),
    }
    print(
        f"evaluate: p50 {result['eval_p50_ms']} ms, p99 {result['eval_p99_ms']} ms; "
        f"parse basket JSON: p50 {result['parse_p50_ms']} ms, p99 {result['parse_p99_ms']} ms "
        f"({runs} runs, {len(basket.lines)} lines, 50 rules)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
