"""The main job until the agent and central services exist: example customers are
identified with the protocol's checks, and an example ledger is folded into balances."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from protocol import (
    Basket,
    CardRange,
    CustomerAccount,
    CustomerState,
    EntryKind,
    IdentifierRejected,
    LedgerEntry,
    RedeemRequest,
    Store,
    UUIDv7Generator,
    canonical_json,
    evaluate,
    normalize_phone,
    parse_card,
    parse_rule_set,
    refund_quote,
    sha256_hex,
)

CHAIN_CARDS = (CardRange(name="chain", first="2770000000000", last="2770009999999", check="ean"),)
EXAMPLE_SALES = ((1, 320), (2, 150), (1, -200), (2, 75))  # (customer index, points)
EXAMPLE_SALE_AT = datetime.fromisoformat("2026-11-25T12:00:00+03:00")


def _identify(row: dict[str, str]) -> list[str]:
    problems = []
    try:
        normalize_phone(row["phone"])
    except IdentifierRejected as rejected:
        problems.append(f"phone {row['phone']!r}: {rejected.reason}")
    try:
        parse_card(row["card"], CHAIN_CARDS)
    except IdentifierRejected as rejected:
        problems.append(f"card {row['card']!r}: {rejected.reason}")
    return problems


def run(examples: str | None) -> int:
    folder = Path(examples) if examples else Path(__file__).resolve().parents[1] / "examples"
    with (folder / "customers.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    print("Identifying example customers:")
    accepted = []
    for row in rows:
        problems = _identify(row)
        verdict = "; ".join(problems) or "ok"
        print(f"  {row['customer_id']} {row['name']:<6} {verdict}")
        if not problems:
            accepted.append(row["customer_id"])
    make_id = UUIDv7Generator()
    balances: dict[str, int] = defaultdict(int)
    print("\nLedger of till-demo (epoch 1):")
    for seq, (index, points) in enumerate(EXAMPLE_SALES, start=1):
        customer = accepted[(index - 1) % len(accepted)]
        entry = LedgerEntry(
            entry_id=make_id(),
            device_id="till-demo",
            device_epoch=1,
            device_seq=seq,
            kind=EntryKind.earn if points > 0 else EntryKind.burn,
            account=CustomerAccount(customer_id=customer),
            amount=points,
            device_time=datetime.now(UTC),
        )
        balances[customer] += entry.amount
        digest = sha256_hex(canonical_json(entry))[:12]
        print(f"  seq {seq} {entry.kind:<5} {points:>5} -> {customer}  sha256 {digest}…")
    print("\nBalances (fold of the ledger):")
    for customer, balance in sorted(balances.items()):
        print(f"  {customer}: {balance} points")
    _quote_example(folder)
    return 0


def _quote_example(folder: Path) -> None:
    """Quote the example basket with the example rule set, then refund part of it."""
    rule_set = parse_rule_set((folder / "rules" / "base.toml").read_text(encoding="utf-8"))
    basket = Basket.model_validate_json((folder / "basket.json").read_text(encoding="utf-8"))
    customer = CustomerState.model_validate_json(
        (folder / "customer.json").read_text(encoding="utf-8")
    )
    store = Store.model_validate_json((folder / "store.json").read_text(encoding="utf-8"))
    quote = evaluate(rule_set, customer, basket, store, EXAMPLE_SALE_AT, RedeemRequest(mode="all"))
    print(f"\nQuote of examples/basket.json with rule set {rule_set.rule_set_id} ", end="")
    print(f"(sha256 {rule_set.content_hash[:12]}…):")
    print(f"  total {quote.total} kopecks, discount {quote.discount}, to pay {quote.payable}")
    print(f"  points: earned {quote.earn_points}, spent {quote.burn_points}", end="")
    print(f" (limited by {quote.redeem_limited_by})" if quote.redeem_limited_by else "")
    for item in quote.explanation:
        print(
            f"    {item.rule_id:<18} {item.kind:<16} {item.points:>+6} points {item.kopecks:>7} kop"
        )
    first = basket.lines[0]
    refund = refund_quote(quote, basket, {first.line_id: first.quantity_milli})
    print(f"  refund of line {first.line_id}: {refund.money} kopecks back, ", end="")
    print(
        f"{refund.earn_points} earned points reversed, {refund.burn_points} spent points returned"
    )
