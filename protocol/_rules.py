"""The rule-set language: what HQ writes (TOML), as frozen models, with readable errors.

A rule set is data that travels: immutable once published, named by the SHA-256 of its
canonical JSON (`RuleSet.content_hash`), so the same rules written differently in TOML (key
order, inline tables, defaults spelled out or left out) have the same hash. Every rate is an
integer: points per `per` kopecks, multipliers in permille, percentages in basis points.
`docs/rules.md` is the reference, with an executed example for every kind of rule.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, Field, PrivateAttr, ValidationError, model_validator

from protocol._base import (
    Currency,
    Id,
    NonNegKopecks,
    StrictBool,
    Text,
    WireModel,
)
from protocol._canonical import content_hash

rules_max = 500
ids_per_condition_max = 200
money_per_max = 100_000
"""`per` of a per-money rule must divide this, so every accrual is exact in integers."""
permille_max = 100_000
basis_points_max = 10_000
points_rule_max = 10**7
days_max = 3650

Points = Annotated[int, Field(strict=True, ge=0, le=points_rule_max)]
Permille = Annotated[int, Field(strict=True, ge=0, le=permille_max)]
BasisPoints = Annotated[int, Field(strict=True, ge=0, le=basis_points_max)]
Days = Annotated[int, Field(strict=True, ge=0, le=days_max)]
Quantity = Annotated[int, Field(strict=True, ge=0, le=10**9)]
Priority = Annotated[int, Field(strict=True, ge=-(10**6), le=10**6)]
Ids = Annotated[tuple[Id, ...], Field(max_length=ids_per_condition_max)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CLOCK = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00"
Hours = Annotated[str, Field(pattern=rf"^(?:{_CLOCK})-(?:{_CLOCK})$")]
Language = Annotated[str, Field(pattern=r"^[a-z]{2}$")]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Rounding(StrEnum):
    """How a rule's exact points become whole points (money discounts always round down)."""

    floor = "floor"
    half_up = "half_up"


class Basis(StrEnum):
    """Which money a rule reads: `paid` after every discount (the POS's, rewards and points
    spent), or `full` price as rung up."""

    paid = "paid"
    full = "full"


class Conditions(WireModel):
    """When a rule applies. Empty lists mean "any"; every non-empty one must hold.

    Line conditions (skus, categories, labels and their excludes, favourites) pick the lines a
    rule reads; cheque conditions (store, days, hours, dates, tier, promo code, segment,
    campaign) switch the whole rule on or off. Days, hours and dates are read in the store's
    time zone; `hours = "22:00-06:00"` wraps midnight; `dates_until` is inclusive.
    """

    skus: Ids = ()
    exclude_skus: Ids = ()
    categories: Ids = ()
    exclude_categories: Ids = ()
    labels: Ids = ()
    exclude_labels: Ids = ()
    favourites: StrictBool = False
    stores: Ids = ()
    days: tuple[Weekday, ...] = Field(default=(), max_length=7)
    hours: Hours | None = None
    dates_from: date | None = None
    dates_until: date | None = None
    tiers: Ids = ()
    promo_codes: Ids = ()
    segments: Ids = ()
    campaigns: Ids = ()

    @model_validator(mode="after")
    def _dates_in_order(self) -> Conditions:
        if self.dates_from and self.dates_until and self.dates_until < self.dates_from:
            raise ValueError("dates_until is before dates_from")
        return self


class RuleBase(Conditions):
    id: Id
    name: Text = ""
    priority: Priority = 0
    """Higher runs first; equal priorities run in id order."""
    stop: StrictBool = False
    """Lines this rule took are not read by any later rule of the same section."""
    min_amount: NonNegKopecks = 0
    """The matching lines must add up to at least this (in the rule's basis)."""
    min_quantity_milli: Quantity = 0
    """The matching lines must hold at least this many thousandths of a unit."""


class PerMoney(RuleBase):
    """`points` for every `per` kopecks of the matching lines (exact, rounded once per rule)."""

    kind: Literal["per_money"]
    points: Points
    per: Annotated[int, Field(strict=True, ge=1, le=money_per_max)] = 100
    basis: Basis = Basis.paid

    @model_validator(mode="after")
    def _per_divides(self) -> PerMoney:
        if money_per_max % self.per:
            raise ValueError(f"per: must divide {money_per_max} (100, 1000, 10000, ...)")
        return self


class PerUnit(RuleBase):
    """`points` for every whole unit (1000 thousandths) of the matching lines, exact."""

    kind: Literal["per_unit"]
    points: Points


class PerOrder(RuleBase):
    """`points` once per cheque when the matching lines reach the minimums."""

    kind: Literal["per_order"]
    points: Points
    basis: Basis = Basis.paid


class Multiplier(RuleBase):
    """Multiplies the per-money and per-unit points that earlier rules gave the matching lines:
    `multiplier_permille = 2000` doubles them (this rule adds the extra 1000‰)."""

    kind: Literal["multiplier"]
    multiplier_permille: Annotated[int, Field(strict=True, ge=1000, le=permille_max)]


EarnRule = Annotated[PerMoney | PerUnit | PerOrder | Multiplier, Field(discriminator="kind")]


class Percent(RuleBase):
    kind: Literal["percent"]
    percent_bp: BasisPoints


class Fixed(RuleBase):
    kind: Literal["fixed"]
    amount: NonNegKopecks


class FreeProduct(RuleBase):
    """`free` units of the matching lines for nothing (cheapest first); with `every`, that
    many for every `every` whole units bought ("3 for 2" is every = 3, free = 1). Only lines
    sold in whole units count; weighed goods are never given away by the unit."""

    kind: Literal["free_product"]
    free: Annotated[int, Field(strict=True, ge=1, le=1000)] = 1
    every: Annotated[int, Field(strict=True, ge=0, le=1000)] = 0


class EveryNth(RuleBase):
    """Every `nth` purchase of an identified customer (counter `purchases`) gets
    `percent_bp` off the matching lines."""

    kind: Literal["every_nth"]
    nth: Annotated[int, Field(strict=True, ge=2, le=1000)]
    percent_bp: BasisPoints


class Stamps(RuleBase):
    """A stamp card: one stamp per whole matching unit bought; when the card held `needed`
    stamps before this cheque, the cheapest matching unit is free and the card pays for it."""

    kind: Literal["stamps"]
    card: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,40}$")]
    needed: Annotated[int, Field(strict=True, ge=1, le=1000)]


RewardRule = Annotated[
    Percent | Fixed | FreeProduct | EveryNth | Stamps, Field(discriminator="kind")
]


class Tier(WireModel):
    id: Id
    name: Text = ""
    min_rolling_spend: NonNegKopecks


class Redemption(WireModel):
    """Paying with points. `kopecks_per_point` is the point's value; `max_share_bp` the most
    of what the lines points may pay for cost (after rewards) that points may pay;
    `min_payable` what must be left of the whole cheque to pay in money; excluded lines are
    never paid with points."""

    enabled: StrictBool = True
    kopecks_per_point: Annotated[int, Field(strict=True, ge=1, le=100_000)] = 100
    max_share_bp: BasisPoints = basis_points_max
    min_payable: NonNegKopecks = 0
    exclude_skus: Ids = ()
    exclude_categories: Ids = ()
    exclude_labels: Ids = ()


class Floor(WireModel):
    """No discount may take a unit of a matching line below `min_unit_price` kopecks or below
    `min_unit_price_bp` of its own unit price (rounded up), whichever is higher."""

    id: Id
    skus: Ids = ()
    categories: Ids = ()
    labels: Ids = ()
    min_unit_price: NonNegKopecks = 0
    min_unit_price_bp: BasisPoints = 0


class GrantRule(WireModel):
    """A one-time bonus. `welcome`: the first identified cheque; `birthday`: a cheque within
    `window_days` from the birthday (store time zone), once a year; `referral`: the referred
    customer's first cheque pays `points` to the customer who referred them."""

    id: Id
    kind: Literal["welcome", "birthday", "referral"]
    points: Points
    window_days: Annotated[int, Field(strict=True, ge=1, le=366)] = 1
    min_amount: NonNegKopecks = 0


class Message(WireModel):
    """A receipt message in the customer's language (falls back to the rule set's
    `default_language`). A `marketing` message is printed only with consent_marketing.
    `{earn_points}`, `{burn_points}`, `{balance}` and `{tier}` are filled in."""

    id: Id
    text: dict[Language, Text] = Field(min_length=1, max_length=20)
    marketing: StrictBool = True
    tiers: Ids = ()
    segments: Ids = ()
    campaigns: Ids = ()
    min_earn_points: Annotated[int, Field(strict=True, ge=0, le=points_rule_max)] = 0
    priority: Priority = 0


class RuleSet(WireModel):
    """A published rule set. Amounts in kopecks, rates as integers, rounding explicit."""

    rule_set_id: Id
    name: Text = ""
    effective_from: AwareDatetime
    currency: Currency = "RUB"
    rounding: Rounding = Rounding.floor
    pending_days: Days = 0
    """Earned points activate this many days after the sale (the return window)."""
    expiry_days: Days = 0
    """Earned and granted points expire this many days after the sale; 0 = never."""
    rolling_spend_days: Annotated[int, Field(strict=True, ge=1, le=days_max)] = 365
    """The window central sums a customer's spend over for `rolling_spend` (and tiers)."""
    default_language: Language = "ru"
    favourites_max: Annotated[int, Field(strict=True, ge=0, le=10)] = 3
    """How many of the customer's chosen favourite categories count (the first ones)."""
    tiers: tuple[Tier, ...] = Field(default=(), max_length=20)
    earn: tuple[EarnRule, ...] = Field(default=(), max_length=rules_max)
    rewards: tuple[RewardRule, ...] = Field(default=(), max_length=rules_max)
    redemption: Redemption = Redemption()
    floors: tuple[Floor, ...] = Field(default=(), max_length=rules_max)
    grants: tuple[GrantRule, ...] = Field(default=(), max_length=20)
    messages: tuple[Message, ...] = Field(default=(), max_length=100)

    _hash: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _ids_unique(self) -> RuleSet:
        seen: set[str] = set()
        groups: tuple[tuple[Any, ...], ...] = (
            self.tiers,
            self.earn,
            self.rewards,
            self.floors,
            self.grants,
            self.messages,
        )
        for group in groups:
            for item in group:
                if item.id in seen:
                    raise ValueError(f"id {item.id!r} is used twice; every id must be unique")
                seen.add(item.id)
        spends = [tier.min_rolling_spend for tier in self.tiers]
        if spends != sorted(set(spends)):
            raise ValueError("tiers must be listed by rising min_rolling_spend, each different")
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; with `update` its content differs, so its hash is computed afresh."""
        copied = super().model_copy(update=update, deep=deep)
        copied._hash = None
        return copied

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of the rule set: the name of its content."""
        if self._hash is None:
            self._hash = content_hash(self)
        return self._hash


class RuleSetError(ValueError):
    """A rule set that cannot be used; the message names the file, the rule and the field."""


_MESSAGES = {
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "missing": "is required",
    "extra_forbidden": "is not a known field here",
    "union_tag_invalid": "unknown kind",
    "union_tag_not_found": "needs a kind",
    "timezone_aware": "needs a time zone offset (e.g. 2026-01-01T00:00:00+03:00)",
}


def _describe(error: Any, data: Any) -> str:
    loc = tuple(error["loc"])
    where: list[str] = []
    node = data
    fields: list[str] = []
    section_kinds = {"earn", "rewards", "tiers", "floors", "grants", "messages"}
    i = 0
    while i < len(loc):
        part = loc[i]
        if (
            isinstance(part, str)
            and part in section_kinds
            and i + 1 < len(loc)
            and isinstance(loc[i + 1], int)
            and isinstance(node, dict)
        ):
            items = node.get(part)
            index = loc[i + 1]
            item = items[index] if isinstance(items, list) and index < len(items) else None
            rule_id = item.get("id") if isinstance(item, dict) else None
            label = "rule" if part in {"earn", "rewards"} else part.rstrip("s")
            where.append(f'{label} "{rule_id}"' if rule_id else f"{part}[{index + 1}]")
            node = item
            i += 2
            # a discriminated union puts the tag in the location: skip it
            if i < len(loc) and isinstance(node, dict) and loc[i] == node.get("kind"):
                i += 1
            continue
        fields.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
        i += 1
    message = _MESSAGES.get(error["type"]) or str(error["msg"])
    if error["type"] == "union_tag_invalid":
        context = error.get("ctx", {})
        expected = str(context.get("expected_tags", "")).replace("'", "")
        message = f"unknown kind {context.get('tag')!r} (expected {expected})"
    message = re.sub(r"^Value error, ", "", message)
    field = ".".join(fields)
    return ": ".join([*where, *([field] if field else []), message])


def rule_set_warnings(rule_set: RuleSet) -> list[str]:
    """Things that are valid but probably not what HQ meant."""
    found = []
    order = sorted(rule_set.earn, key=lambda rule: (-rule.priority, rule.id))
    seen_base = False
    for rule in order:
        if isinstance(rule, PerMoney | PerUnit):
            seen_base = True
        elif isinstance(rule, Multiplier) and not seen_base:
            found.append(
                f'rule "{rule.id}": a multiplier runs before every per-money and per-unit '
                "rule, so it multiplies nothing (give it a lower priority)"
            )
    tiers = {tier.id for tier in rule_set.tiers}
    if tiers:
        targeted: tuple[RuleBase | Message, ...] = (
            *rule_set.earn,
            *rule_set.rewards,
            *rule_set.messages,
        )
        for item in targeted:
            unknown = sorted(set(item.tiers) - tiers)
            if unknown:
                found.append(f'rule "{item.id}": tiers {unknown} are not among [[tiers]]')
    for message in rule_set.messages:
        if rule_set.default_language not in message.text:
            found.append(
                f'message "{message.id}": no text in the default language '
                f'"{rule_set.default_language}"'
            )
    return found


def effective_rule_set(rule_sets: Iterable[RuleSet], now: datetime) -> RuleSet | None:
    """The rule set in force at `now`: the latest `effective_from` not after it (ties go to
    the greater `rule_set_id`, so the choice never depends on the order given)."""
    candidates = [rule_set for rule_set in rule_sets if rule_set.effective_from <= now]
    if not candidates:
        return None
    return max(candidates, key=lambda rule_set: (rule_set.effective_from, rule_set.rule_set_id))


def parse_rule_set(text: str, *, source: str = "<rules>") -> RuleSet:
    """Read a rule set from TOML. Raises `RuleSetError` naming `source`, the rule and the
    field of the first problems found."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RuleSetError(f"{source}: not valid TOML: {error}") from None
    return rule_set_from_data(data, source=source)


def rule_set_from_data(data: dict[str, Any], *, source: str = "<rules>") -> RuleSet:
    """A rule set from already-parsed data (TOML tables or JSON objects)."""
    try:
        return RuleSet.model_validate(data)
    except ValidationError as error:
        problems = [f"{source}: {_describe(item, data)}" for item in error.errors()[:5]]
        more = error.error_count() - len(problems)
        if more > 0:
            problems.append(f"{source}: ... and {more} more problems")
        raise RuleSetError("\n".join(problems)) from None
