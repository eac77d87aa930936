"""A rule set compiled once to plain data for the evaluator's inner loop.

Models are for the boundary; here every rule becomes a slotted record of ints, strings and
frozensets, rules are put in evaluation order (priority, then id), and which rules a line
matches is memoised per line signature (sku, category, labels). Rules with the same line
conditions share one filter (a "group"): a line is matched, and listed, once per group.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import lru_cache

from protocol._rules import (
    WEEKDAYS,
    Basis,
    EveryNth,
    Fixed,
    FreeProduct,
    Multiplier,
    Percent,
    PerMoney,
    PerOrder,
    PerUnit,
    RuleBase,
    RuleSet,
    Stamps,
    money_per_max,
)

POINT_EXACT = 10**8
"""Exact accruals are kept in 1e-8 of a point: every per-money and per-unit rate and every
permille multiplier is exact at this scale."""
if money_per_max * 1000 != POINT_EXACT:
    raise RuntimeError("the exact scale must cover every per-money rate and permille multiplier")
compiled_cache_max = 32
signatures_max = 50_000

Signature = tuple[str, str | None, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Rule:
    """One earn or reward rule, flattened."""

    id: str
    kind: str
    conditional: bool
    """Has cheque conditions (store, days, hours, dates, tiers, promo codes, ...)."""
    stop: bool
    min_amount: int
    min_quantity_milli: int
    full_price: bool
    favourites: bool
    # cheque conditions
    stores: frozenset[str]
    days: frozenset[int]
    minutes: tuple[int, int] | None
    dates_from: date | None
    dates_until: date | None
    tiers: frozenset[str]
    promo_codes: frozenset[str]
    segments: frozenset[str]
    campaigns: frozenset[str]
    # parameters of the kind
    points: int = 0
    exact_factor: int = 0
    multiplier_extra_permille: int = 0
    percent_bp: int = 0
    amount: int = 0
    free: int = 0
    every: int = 0
    nth: int = 0
    counter: str = ""
    needed: int = 0


@dataclass(frozen=True, slots=True)
class LineFilter:
    skus: frozenset[str]
    exclude_skus: frozenset[str]
    categories: frozenset[str]
    exclude_categories: frozenset[str]
    labels: frozenset[str]
    exclude_labels: frozenset[str]

    def matches(self, sku: str, category: str | None, labels: tuple[str, ...]) -> bool:
        if self.skus and sku not in self.skus:
            return False
        if sku in self.exclude_skus:
            return False
        if self.categories and category not in self.categories:
            return False
        if category is not None and category in self.exclude_categories:
            return False
        if self.labels and not self.labels.intersection(labels):
            return False
        return not self.exclude_labels.intersection(labels)


@dataclass(frozen=True, slots=True)
class LineMatch:
    """Which rule groups a line of this signature matches (indices into `earn_filters` and
    `reward_filters`; `earn_group` and `reward_group` say which group each rule is in)."""

    earn: tuple[int, ...]
    rewards: tuple[int, ...]
    redeemable: bool
    floors: tuple[tuple[int, int], ...]
    """(min_unit_price, min_unit_price_bp) of every floor that matches."""


@dataclass(slots=True)
class Compiled:
    rule_set: RuleSet
    content_hash: str
    earn: tuple[Rule, ...]
    earn_filters: tuple[LineFilter, ...]
    """The distinct line conditions of the earn rules, one per group."""
    earn_group: tuple[int, ...]
    """The group of each earn rule: an index into `earn_filters`."""
    rewards: tuple[Rule, ...]
    reward_filters: tuple[LineFilter, ...]
    reward_group: tuple[int, ...]
    redeem_filter: LineFilter
    floor_filters: tuple[tuple[LineFilter, int, int], ...]
    tiers: tuple[tuple[str, int], ...]
    signatures: dict[Signature, LineMatch]
    first_every_nth: Rule | None
    """The first every-Nth rule, which counts the customer's purchases."""

    def line_match(self, sku: str, category: str | None, labels: tuple[str, ...]) -> LineMatch:
        key = (sku, category, labels)
        found = self.signatures.get(key)
        if found is None:
            found = self._match(sku, category, labels)
            if len(self.signatures) >= signatures_max:
                self.signatures.clear()
            self.signatures[key] = found
        return found

    def _match(self, sku: str, category: str | None, labels: tuple[str, ...]) -> LineMatch:
        earn = tuple(
            index
            for index, line_filter in enumerate(self.earn_filters)
            if line_filter.matches(sku, category, labels)
        )
        rewards = tuple(
            index
            for index, line_filter in enumerate(self.reward_filters)
            if line_filter.matches(sku, category, labels)
        )
        excluded = self.redeem_filter
        redeemable = not (
            sku in excluded.skus
            or (category is not None and category in excluded.categories)
            or excluded.labels.intersection(labels)
        )
        floors = tuple(
            (price, share)
            for line_filter, price, share in self.floor_filters
            if line_filter.matches(sku, category, labels)
        )
        return LineMatch(earn, rewards, redeemable, floors)


def _minutes(hours: str | None) -> tuple[int, int] | None:
    if hours is None:
        return None
    start, end = hours.split("-")
    return (_minute(start), _minute(end))


def _minute(clock: str) -> int:
    hour, minute = clock.split(":")
    return int(hour) * 60 + int(minute)


def _filter(rule: RuleBase) -> LineFilter:
    return LineFilter(
        frozenset(rule.skus),
        frozenset(rule.exclude_skus),
        frozenset(rule.categories),
        frozenset(rule.exclude_categories),
        frozenset(rule.labels),
        frozenset(rule.exclude_labels),
    )


def _rule(rule: RuleBase) -> Rule:
    params: dict[str, int | str] = {}
    full_price = False
    if isinstance(rule, PerMoney):
        params = {"points": rule.points, "exact_factor": POINT_EXACT // rule.per}
        full_price = rule.basis is Basis.full
    elif isinstance(rule, PerUnit):
        params = {"points": rule.points, "exact_factor": POINT_EXACT // 1000}
    elif isinstance(rule, PerOrder):
        params = {"points": rule.points}
        full_price = rule.basis is Basis.full
    elif isinstance(rule, Multiplier):
        params = {"multiplier_extra_permille": rule.multiplier_permille - 1000}
    elif isinstance(rule, Percent):
        params = {"percent_bp": rule.percent_bp}
    elif isinstance(rule, Fixed):
        params = {"amount": rule.amount}
    elif isinstance(rule, FreeProduct):
        params = {"free": rule.free, "every": rule.every}
    elif isinstance(rule, EveryNth):
        params = {"nth": rule.nth, "percent_bp": rule.percent_bp}
    elif isinstance(rule, Stamps):
        params = {"counter": f"stamps:{rule.card}", "needed": rule.needed}
    kind: str = rule.kind  # type: ignore[attr-defined]
    conditional = bool(
        rule.stores
        or rule.days
        or rule.hours
        or rule.dates_from
        or rule.dates_until
        or rule.tiers
        or rule.promo_codes
        or rule.segments
        or rule.campaigns
    )
    return Rule(
        id=rule.id,
        kind=kind,
        conditional=conditional,
        stop=rule.stop,
        min_amount=rule.min_amount,
        min_quantity_milli=rule.min_quantity_milli,
        full_price=full_price,
        favourites=rule.favourites,
        stores=frozenset(rule.stores),
        days=frozenset(WEEKDAYS.index(day) for day in rule.days),
        minutes=_minutes(rule.hours),
        dates_from=rule.dates_from,
        dates_until=rule.dates_until,
        tiers=frozenset(rule.tiers),
        promo_codes=frozenset(rule.promo_codes),
        segments=frozenset(rule.segments),
        campaigns=frozenset(rule.campaigns),
        **params,  # type: ignore[arg-type]
    )


def _ordered(rules: tuple[RuleBase, ...]) -> list[RuleBase]:
    return sorted(rules, key=lambda rule: (-rule.priority, rule.id))


def _grouped(rules: list[RuleBase]) -> tuple[tuple[LineFilter, ...], tuple[int, ...]]:
    """The distinct line conditions of `rules`, and the index of each rule's among them."""
    distinct: dict[LineFilter, int] = {}
    group = tuple(distinct.setdefault(_filter(rule), len(distinct)) for rule in rules)
    return tuple(distinct), group


_cache: dict[str, Compiled] = {}
_by_object: dict[int, Compiled] = {}


def compiled(rule_set: RuleSet) -> Compiled:
    """The compiled form of `rule_set`, made once per content hash (and found again by
    object identity first, which is cheaper than reading the hash)."""
    found = _by_object.get(id(rule_set))
    if found is not None and found.rule_set is rule_set:
        return found
    key = rule_set.content_hash
    found = _cache.get(key)
    if found is not None:
        _remember(rule_set, found)
        return found
    earn = _ordered(rule_set.earn)
    rewards = _ordered(rule_set.rewards)
    earn_filters, earn_group = _grouped(earn)
    reward_filters, reward_group = _grouped(rewards)
    redemption = rule_set.redemption
    result = Compiled(
        rule_set=rule_set,
        content_hash=key,
        earn=tuple(_rule(rule) for rule in earn),
        earn_filters=earn_filters,
        earn_group=earn_group,
        rewards=tuple(_rule(rule) for rule in rewards),
        reward_filters=reward_filters,
        reward_group=reward_group,
        redeem_filter=LineFilter(
            frozenset(redemption.exclude_skus),
            frozenset(),
            frozenset(redemption.exclude_categories),
            frozenset(),
            frozenset(redemption.exclude_labels),
            frozenset(),
        ),
        floor_filters=tuple(
            (
                LineFilter(
                    frozenset(floor.skus),
                    frozenset(),
                    frozenset(floor.categories),
                    frozenset(),
                    frozenset(floor.labels),
                    frozenset(),
                ),
                floor.min_unit_price,
                floor.min_unit_price_bp,
            )
            for floor in rule_set.floors
        ),
        tiers=tuple((tier.id, tier.min_rolling_spend) for tier in rule_set.tiers),
        signatures={},
        first_every_nth=None,
    )
    result.first_every_nth = next(
        (rule for rule in result.rewards if rule.kind == "every_nth"), None
    )
    if len(_cache) >= compiled_cache_max:
        _cache.clear()
    _cache[key] = result
    _remember(rule_set, result)
    return result


def _remember(rule_set: RuleSet, found: Compiled) -> None:
    if len(_by_object) >= compiled_cache_max:
        _by_object.clear()
    if found.rule_set is not rule_set:
        found = replace(found, rule_set=rule_set)
    _by_object[id(rule_set)] = found


@lru_cache(maxsize=64)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def cheque_applies(rule: Rule, facts: ChequeFacts) -> bool:
    """Do the cheque-level conditions of `rule` hold for this cheque?"""
    if rule.stores and facts.store_id not in rule.stores:
        return False
    if rule.days and facts.weekday not in rule.days:
        return False
    if rule.minutes is not None:
        start, end = rule.minutes
        minute = facts.minute
        inside = start <= minute < end if start <= end else (minute >= start or minute < end)
        if not inside:
            return False
    if rule.dates_from is not None and facts.date < rule.dates_from:
        return False
    if rule.dates_until is not None and facts.date > rule.dates_until:
        return False
    if rule.tiers and facts.tier not in rule.tiers:
        return False
    if rule.promo_codes and rule.promo_codes.isdisjoint(facts.promo_codes):
        return False
    if rule.segments and rule.segments.isdisjoint(facts.segments):
        return False
    return not (rule.campaigns and rule.campaigns.isdisjoint(facts.campaigns))


@dataclass(frozen=True, slots=True)
class ChequeFacts:
    store_id: str
    local: datetime
    date: date
    weekday: int
    minute: int
    tier: str | None
    promo_codes: frozenset[str]
    segments: frozenset[str]
    campaigns: frozenset[str]
