"""The loyalty block the customer sees: built from the quote and the balance, rendered for the
POS's paper widths (32, 42, 48 columns) and for the agent's own slip printer."""

from __future__ import annotations

import functools

from agent._models import BalanceView, ReceiptLines
from drivers import LoyaltySlip, NextTier, slip_lines
from protocol import AccountRef, CustomerState, Quote, RuleSet, effective_tier

receipt_slips_cached_max = 16


def _next_tier(rule_set: RuleSet, customer: CustomerState, spend_now: int) -> NextTier | None:
    spend = customer.rolling_spend + spend_now
    current = effective_tier(rule_set, customer, rolling_spend=spend)
    ranks = [tier.id for tier in rule_set.tiers]
    start = ranks.index(current) + 1 if current in ranks else 0
    for tier in rule_set.tiers[start:]:
        if tier.min_rolling_spend > spend:
            return NextTier(
                name=tier.name or tier.id, spend_missing_kopecks=tier.min_rolling_spend - spend
            )
    return None


def loyalty_slip(
    quote: Quote,
    account: AccountRef | None,
    customer: CustomerState | None,
    balance: BalanceView | None,
    rule_set: RuleSet,
    cheque_id: str,
) -> LoyaltySlip | None:
    """The slip of a sale, or None for an anonymous cheque (nothing to print)."""
    if account is None:
        return None
    granted = sum(grant.points for grant in quote.grants)
    card = account.number if account.type == "card" else None
    known = customer is not None and customer.customer_id is not None
    return LoyaltySlip(
        card_number=card,
        earned_points=quote.earn_points + granted,
        spent_points=quote.burn_points,
        balance_points=0 if balance is None else balance.balance,
        pending_points=0 if balance is None else max(balance.pending, 0),
        next_tier=_next_tier(rule_set, customer, quote.rolling_spend_delta)
        if known and customer is not None
        else None,
        message="\n".join(message.text for message in quote.messages) or None,
        cheque=cheque_id,
    )


@functools.lru_cache(maxsize=receipt_slips_cached_max)
def receipt_lines(slip: LoyaltySlip | None) -> ReceiptLines | None:
    """The slip for the POS's three paper widths (cached: a confirmed sale prints the slip its
    reservation already showed, balance projected)."""
    if slip is None:
        return None
    return ReceiptLines(
        columns_32=tuple(slip_lines(slip, columns=32)),
        columns_42=tuple(slip_lines(slip, columns=42)),
        columns_48=tuple(slip_lines(slip, columns=48)),
    )


def projected(balance: BalanceView | None, quote: Quote) -> BalanceView | None:
    """The balance as it will be once the reserved sale is confirmed (for the fiscal receipt,
    which the POS prints before it confirms)."""
    if balance is None:
        return None
    earned = quote.earn_points + sum(grant.points for grant in quote.grants)
    after = balance.balance - quote.burn_points + earned
    # earned points wait out the return window; grants are active at once
    pending = balance.pending + (quote.earn_points if quote.earn_activates_at is not None else 0)
    held = max(balance.held - quote.burn_points, 0)
    return BalanceView(
        balance=after,
        available=after - pending - held,
        pending=pending,
        held=held,
        local_unsynced=balance.local_unsynced - quote.burn_points + earned,
    )
