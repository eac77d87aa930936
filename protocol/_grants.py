"""What a cheque gives beyond its lines: one-time grants and targeted receipt messages."""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any

from protocol._rules import RuleSet
from protocol._sale import CustomerState, CustomerStatus, receipt_messages_max


def birthday_year(birthday: date, today: date, window_days: int) -> int | None:
    """The year of the birthday whose window (`window_days` from the day) holds `today`;
    29 February is kept on the 28th in other years."""
    for year in (today.year, today.year - 1):
        leap_day = (birthday.month, birthday.day) == (2, 29) and not calendar.isleap(year)
        start = date(year, 2, 28) if leap_day else birthday.replace(year=year)
        if 0 <= (today - start).days < window_days:
            return year
    return None


def one_time_grants(
    rule_set: RuleSet, customer: CustomerState, known: bool, today: date, paid: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The grants this cheque earns (as `GrantAward` data) and their explanation items.

    Keys are unique at central: `welcome:<customer>`, `birthday:<customer>:<year>`,
    `referral:<referred customer>` (paid to the referrer). A key in `grants_received` is not
    offered again. `today` is the store's date, `paid` what the cheque costs after discounts.
    A provisional customer (signed up at a till, not yet confirmed by central) gets none: the
    till's id for them is not central's, so no key of theirs would be unique there.
    """
    if not known or customer.customer_id is None or customer.status is not CustomerStatus.active:
        return [], []
    received = set(customer.grants_received)
    awards = []
    explanation = []
    for grant in rule_set.grants:
        if paid < grant.min_amount:
            continue
        key = None
        beneficiary = customer.customer_id
        if grant.kind == "welcome":
            key = f"welcome:{customer.customer_id}"
        elif grant.kind == "referral" and customer.referred_by is not None:
            key = f"referral:{customer.customer_id}"
            beneficiary = customer.referred_by
        elif grant.kind == "birthday" and customer.birthday is not None:
            year = birthday_year(customer.birthday, today, grant.window_days)
            key = None if year is None else f"birthday:{customer.customer_id}:{year}"
        if key is None or key in received:
            continue
        received.add(key)
        awards.append(
            {
                "kind": grant.kind,
                "grant_key": key,
                "points": grant.points,
                "rule_id": grant.id,
                "customer_id": beneficiary,
            }
        )
        explanation.append(
            {"rule_id": grant.id, "kind": f"grant:{grant.kind}", "points": grant.points}
        )
    return awards, explanation


def receipt_messages(
    rule_set: RuleSet,
    customer: CustomerState,
    known: bool,
    earned: int,
    burned: int,
    tier: str | None,
) -> list[dict[str, Any]]:
    """The messages to print, in priority order: targeting must hold, and a marketing
    message needs an identified customer who consented to marketing."""
    consent = known and customer.consent_marketing
    found = []
    for message in sorted(rule_set.messages, key=lambda m: (-m.priority, m.id)):
        if message.marketing and not consent:
            continue
        if message.tiers and tier not in message.tiers:
            continue
        if message.segments and not set(message.segments) & set(customer.segments):
            continue
        if message.campaigns and not set(message.campaigns) & set(customer.campaigns):
            continue
        if earned < message.min_earn_points:
            continue
        text = message.text.get(customer.language) or message.text.get(rule_set.default_language)
        if text is None:
            continue
        for name, value in (
            ("{earn_points}", earned),
            ("{burn_points}", burned),
            ("{balance}", customer.points_balance - burned),
            ("{tier}", tier or ""),
        ):
            text = text.replace(name, str(value))
        found.append({"rule_id": message.id, "text": text[:500]})
        if len(found) == receipt_messages_max:
            break
    return found
