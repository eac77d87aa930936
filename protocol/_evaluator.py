"""The evaluator: (rule set, customer, basket, store, now, redemption) → quote. Pure.

Order of work, each step reading the money the previous ones left:
1. rewards (percent, fixed, free product, every-Nth purchase, stamp cards) by priority;
2. points spent, within the redemption policy and the lines' floors;
3. earning, by priority, on the money paid after 1 and 2 (`basis = "paid"`) or on the full
   price (`basis = "full"`);
4. one-time grants and receipt messages (`_grants`), fiscal lines.

Models are read at the boundary; the loops run on lists of ints, and the `Quote` is built
from them without validating it again (`_quote`). Every point and kopeck in the quote is
also in an explanation item naming the rule that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import itemgetter, sub

from protocol._allocation import (
    allocate,
    fiscal_parts,
    floor_total,
    largest_remainder,
)
from protocol._compiled import (
    POINT_EXACT,
    ChequeFacts,
    Compiled,
    LineMatch,
    Rule,
    cheque_applies,
    compiled,
    zone,
)
from protocol._grants import one_time_grants, receipt_messages
from protocol._quote import (
    counter_change,
    fiscal_line,
    fits,
    full_quote,
    grant_award,
    grant_item,
    quote_line,
    receipt_message,
    rule_item,
)
from protocol._rules import Rounding, RuleSet
from protocol._sale import (
    Basket,
    CounterChange,
    CustomerState,
    CustomerStatus,
    ExplanationItem,
    FiscalLine,
    Quote,
    RedeemRequest,
    Store,
)

EVALUATOR_VERSION = "1.2"
"""Stamped on every quote and ledger entry; bumped whenever any result could change."""
EVALUATOR_RECOMPUTES = frozenset({"1.1", EVALUATOR_VERSION})
"""The versions whose cheques this evaluator recomputes to the same points and discounts:
1.2 differs from 1.1 only in the one-time grants a provisional member was offered, which a
till never wrote and a recomputation does not compare."""

REDEMPTION_RULE_ID = "redemption"
PURCHASES = "purchases"
BASIS_POINTS = 10_000
EARNING = (CustomerStatus.active, CustomerStatus.provisional)


class EvaluationError(ValueError):
    """The inputs cannot be evaluated together (a naive clock, another currency)."""


def spendable_points(customer: CustomerState, now: datetime, balance: int | None = None) -> int:
    """Points the customer may spend now: never more than the balance, and, when the till
    knows the lots, only lots that are active (past `activates_at`, before `expires_at`).
    Pending points and debt are never spendable. `balance`: the one to cap by, when it is not
    the state's (a till's view adds its own entries to central's)."""
    balance = customer.points_balance if balance is None else balance
    if balance <= 0:
        return 0
    if not customer.lots:
        return balance
    active = sum(
        lot.points
        for lot in customer.lots
        if lot.activates_at <= now and (lot.expires_at is None or now < lot.expires_at)
    )
    return min(balance, active)


def effective_tier(
    rule_set: RuleSet, customer: CustomerState, rolling_spend: int | None = None
) -> str | None:
    """The highest tier whose `min_rolling_spend` the customer's rolling spend reaches; a tier
    HQ assigned by hand (`customer.tier`) counts when it is higher. Without tiers in the rule
    set, `customer.tier` as it is. `rolling_spend`, when given, stands for the customer's
    (what it will be after a sale) without a copy of the state."""
    if not rule_set.tiers:
        return customer.tier
    spend = customer.rolling_spend if rolling_spend is None else rolling_spend
    ranks = [tier.id for tier in rule_set.tiers]
    reached = -1
    for rank, tier in enumerate(rule_set.tiers):
        if spend >= tier.min_rolling_spend:
            reached = rank
    if customer.tier in ranks:
        reached = max(reached, ranks.index(customer.tier))
    return ranks[reached] if reached >= 0 else None


def _floor_unit(unit_price: int, min_unit_price: int | None, match: LineMatch) -> int:
    floor = min_unit_price or 0
    for price, share in match.floors:
        floor = max(floor, price, -(-unit_price * share // BASIS_POINTS))
    return min(floor, unit_price)


_LINE_FIELDS = itemgetter(  # read from each line's `vars`: a dict look-up beats an attribute
    "line_id",
    "sku",
    "category",
    "labels",
    "quantity_milli",
    "unit_price",
    "total",
    "pos_discount",
    "min_unit_price",
)


class _Cheque:
    """The working state of one evaluation: plain lists indexed by line."""

    def __init__(
        self, comp: Compiled, customer: CustomerState, basket: Basket, facts: ChequeFacts
    ) -> None:
        self.comp = comp
        self.customer = customer
        self.facts = facts
        self.count = count = len(basket.lines)
        columns = zip(*map(_LINE_FIELDS, map(vars, basket.lines)), strict=True)
        ids, skus, categories, labels, quantity, price, full, pos_discount, minimum = columns
        self.ids: tuple[str, ...] = ids
        self.categories: tuple[str | None, ...] = categories
        self.quantity: tuple[int, ...] = quantity
        self.price: tuple[int, ...] = price
        self.full: tuple[int, ...] = full
        self.paid0: list[int] = list(map(sub, full, pos_discount))
        self.matches = matches = list(map(comp.line_match, skus, categories, labels))
        self.floors = floors = [0] * count
        self.floor_totals = floor_totals = [0] * count
        # the lines of each rule group, in line order; shared by the group's rules: read only
        earn_members: list[list[int]] = [[] for _ in comp.earn_filters]
        reward_members: list[list[int]] = [[] for _ in comp.reward_filters]
        for i, match in enumerate(matches):
            if match.floors or minimum[i]:
                floor = floors[i] = _floor_unit(price[i], minimum[i], match)
                floor_totals[i] = floor_total(quantity[i], floor) if floor else 0
            for index in match.earn:
                earn_members[index].append(i)
            for index in match.rewards:
                reward_members[index].append(i)
        self.earn_members = earn_members
        self.reward_members = reward_members
        self.paid = list(self.paid0)
        self.burn_points = [0] * count
        self.earn = [0] * count
        self.explanation: list[ExplanationItem] = []
        self.counters: list[CounterChange] = []
        favourites = customer.favourite_categories[: comp.rule_set.favourites_max]
        self.favourites = frozenset(favourites)
        self.known = customer.customer_id is not None and customer.status in EARNING

    def members(self, rule: Rule, candidates: list[int], taken: set[int]) -> list[int]:
        """The `candidates` lines `rule` reads: not `taken` by an earlier stop rule, and of
        a favourite category when the rule is about favourites."""
        if rule.favourites:
            favourites = self.favourites
            categories = self.categories
            return [i for i in candidates if i not in taken and categories[i] in favourites]
        if taken and not taken.isdisjoint(candidates):
            return [i for i in candidates if i not in taken]
        return candidates

    def explain(
        self,
        rule_id: str,
        kind: str,
        members: list[int],
        points: list[int] | None,
        kopecks: list[int] | None,
    ) -> None:
        """Record what `rule_id` gave the `members` lines (`points`, `kopecks` in step)."""
        ids = self.ids
        if points is None:
            lines = [(ids[i], 0, k) for i, k in zip(members, kopecks or (), strict=True) if k]
        elif kopecks is None:
            lines = [(ids[i], p, 0) for i, p in zip(members, points, strict=True) if p]
        else:
            lines = [
                (ids[i], p, k) for i, p, k in zip(members, points, kopecks, strict=True) if p or k
            ]
        if lines:
            self.explanation.append(
                rule_item(
                    rule_id,
                    kind,
                    sum(points) if points else 0,
                    sum(kopecks) if kopecks else 0,
                    tuple(lines),
                )
            )

    def counter(self, name: str, delta: int, rule_id: str, line: int | None) -> None:
        self.counters.append(
            counter_change(name, delta, rule_id, None if line is None else self.ids[line])
        )

    def room(self, i: int) -> int:
        return max(0, self.paid[i] - self.floor_totals[i])

    # --- rewards ----------------------------------------------------------------------

    def rewards(self) -> None:
        taken: set[int] = set()
        paid = self.paid
        facts = self.facts
        groups = self.comp.reward_group
        for index, rule in enumerate(self.comp.rewards):
            candidates = self.reward_members[groups[index]]
            if not candidates or (rule.conditional and not cheque_applies(rule, facts)):
                continue
            members = self.members(rule, candidates, taken)
            if not members:
                continue
            amount = sum([paid[i] for i in members])
            if amount < rule.min_amount:
                continue
            if rule.min_quantity_milli and (
                sum([self.quantity[i] for i in members]) < rule.min_quantity_milli
            ):
                continue
            shares = self.reward_shares(rule, members, amount)
            if shares is None:
                continue
            for i, share in zip(members, shares, strict=True):
                paid[i] -= share
            if rule.stop:
                taken.update(members)
            self.explain(rule.id, rule.kind, members, None, shares)
        first = self.comp.first_every_nth
        if self.known and first is not None:
            self.counter(PURCHASES, 1, first.id, None)

    def reward_shares(self, rule: Rule, members: list[int], amount: int) -> list[int] | None:
        """The rule's discount on each of `members` (in step), or None when it gives none."""
        kind = rule.kind
        if kind == "percent":
            return self.spread(amount * rule.percent_bp // BASIS_POINTS, members)
        if kind == "fixed":
            return self.spread(rule.amount, members)
        if kind == "free_product":
            return self.free_units(members, rule.free, rule.every)
        if not self.known:
            return None
        if kind == "every_nth":
            purchase = self.customer.counters.get(PURCHASES, 0) + 1
            if purchase % rule.nth:
                return None
            return self.spread(amount * rule.percent_bp // BASIS_POINTS, members)
        return self.stamps(rule, members)

    def spread(self, total: int, members: list[int]) -> list[int]:
        if len(members) == self.count:  # every line, in order: no need to gather them
            paid_now = self.paid
            return allocate(
                total, paid_now, paid_now, self.quantity, self.floors, self.floor_totals
            )
        paid = [self.paid[i] for i in members]
        return allocate(
            total,
            paid,
            paid,
            [self.quantity[i] for i in members],
            [self.floors[i] for i in members],
            [self.floor_totals[i] for i in members],
        )

    def free_units(self, members: list[int], free: int, every: int) -> list[int] | None:
        """The cheapest whole units of `members` free: `free` of them, or `free` for every
        `every` bought."""
        quantity = self.quantity
        whole = [k for k, i in enumerate(members) if quantity[i] % 1000 == 0]
        units = sum(quantity[members[k]] // 1000 for k in whole)
        wanted = free if every == 0 else units // every * free
        wanted = min(wanted, units)
        if wanted == 0:
            return None
        shares = [0] * len(members)
        for k in sorted(whole, key=lambda k: (self.price[members[k]], k)):
            if wanted == 0:
                break
            i = members[k]
            line_units = quantity[i] // 1000
            take = min(line_units, wanted)
            wanted -= take
            shares[k] = min(self.room(i), self.paid[i] * take // line_units)
        return shares

    def stamps(self, rule: Rule, members: list[int]) -> list[int]:
        held = self.customer.counters.get(rule.counter, 0)
        shares = [0] * len(members)
        free_line = None
        if held >= rule.needed:
            found = self.free_units(members, 1, 0)
            if found is not None and any(found):
                shares = found
                free_line = members[next(k for k, share in enumerate(found) if share)]
                self.counter(rule.counter, -rule.needed, rule.id, free_line)
        for i in members:
            stamps = self.quantity[i] // 1000 - (1 if i == free_line else 0)
            if stamps > 0:
                self.counter(rule.counter, stamps, rule.id, i)
        return shares

    # --- points spent -----------------------------------------------------------------

    def redeem(self, request: RedeemRequest, now: datetime) -> tuple[int, int, str | None]:
        """Returns (points requested, points spent, what limited them)."""
        available = spendable_points(self.customer, now)
        wanted = request.points if request.mode == "points" else available
        if wanted == 0:
            return 0, 0, None
        policy = self.comp.rule_set.redemption
        if not self.known or self.customer.status is not CustomerStatus.active:
            return wanted, 0, "only an identified, confirmed, active customer can spend points"
        if not policy.enabled:
            return wanted, 0, "this rule set does not let points pay"
        value = policy.kopecks_per_point
        paid = self.paid
        matches = self.matches
        members = [i for i in range(self.count) if paid[i] and matches[i].redeemable]
        floor_totals = self.floor_totals
        room = sum([paid[i] - floor_totals[i] for i in members if paid[i] > floor_totals[i]])
        eligible = sum([paid[i] for i in members])
        payable = sum(paid)
        limits = (
            (available, "active points"),
            (room // value, "lines points may pay for (exclusions and price floors)"),
            (eligible * policy.max_share_bp // BASIS_POINTS // value, "maximum share of cheque"),
            (max(0, payable - policy.min_payable) // value, "minimum left to pay in money"),
        )
        points = wanted
        limited: str | None = None
        for limit, reason in limits:
            if limit < points:
                points, limited = limit, reason
        for _attempt in range(3):
            shares = self.spread(points * value, members)
            placed = sum(shares)
            if placed == points * value:
                break
            points, limited = placed // value, "prices the receipt can print"
        else:
            points, shares = 0, [0] * len(members)
        burned = largest_remainder(points, shares)
        for k, i in enumerate(members):
            paid[i] -= shares[k]
            self.burn_points[i] = burned[k]
        self.explain(REDEMPTION_RULE_ID, "redeem", members, [-p for p in burned], shares)
        return wanted, points, limited

    # --- earning ----------------------------------------------------------------------

    def earn_points(self) -> None:
        # exact points to whole ones: `floor` adds nothing, `half_up` half a point first
        half = POINT_EXACT // 2 if self.comp.rule_set.rounding is Rounding.half_up else 0
        facts = self.facts
        quantity = self.quantity
        earn = self.earn
        ids = self.ids
        explanation = self.explanation
        base = [0] * self.count
        taken: set[int] = set()
        groups = self.comp.earn_group
        group_members = self.earn_members
        full = self.full
        paid = self.paid
        for index, rule in enumerate(self.comp.earn):
            candidates = group_members[groups[index]]
            if not candidates or (rule.conditional and not cheque_applies(rule, facts)):
                continue
            if taken or rule.favourites:
                members = self.members(rule, candidates, taken)
                if not members:
                    continue
            else:
                members = candidates
            money: Sequence[int] = full if rule.full_price else paid
            if rule.min_amount and sum([money[i] for i in members]) < rule.min_amount:
                continue
            if rule.min_quantity_milli and (
                sum([quantity[i] for i in members]) < rule.min_quantity_milli
            ):
                continue
            kind = rule.kind
            if kind == "per_order":
                points = rule.points
                weights = [money[i] for i in members]
                if not any(weights):
                    weights = [quantity[i] for i in members]
            elif kind == "multiplier":
                extra = rule.multiplier_extra_permille
                weights = [base[i] * extra // 1000 for i in members]
                points = (sum(weights) + half) // POINT_EXACT
            else:  # per money or per unit: the base later multipliers multiply
                factor = rule.points * rule.exact_factor
                amounts = money if kind == "per_money" else quantity
                weights = []
                for i in members:
                    weight = amounts[i] * factor
                    weights.append(weight)
                    base[i] += weight
                points = (sum(weights) + half) // POINT_EXACT
            if rule.stop:
                taken.update(members)
            if not points:
                continue
            lines = []
            given = 0
            for i, share in zip(members, largest_remainder(points, weights), strict=True):
                if share:
                    earn[i] += share
                    given += share
                    lines.append((ids[i], share, 0))
            if lines:
                explanation.append(rule_item(rule.id, kind, given, 0, tuple(lines)))


def _facts(
    comp: Compiled, customer: CustomerState, basket: Basket, store: Store, now: datetime
) -> ChequeFacts:
    local = now.astimezone(zone(store.timezone))
    return ChequeFacts(
        store_id=store.store_id,
        local=local,
        date=local.date(),
        weekday=local.weekday(),
        minute=local.hour * 60 + local.minute,
        tier=effective_tier(comp.rule_set, customer),
        promo_codes=frozenset(basket.promo_codes),
        segments=frozenset(customer.segments),
        campaigns=frozenset(customer.campaigns),
    )


def _fiscal(
    line_id: str, quantity_milli: int, price: int, full: int, paid: int, floor: int
) -> tuple[FiscalLine, ...]:
    """The fiscal lines of a line that costs `paid` instead of `full`: whole-kopeck unit
    prices, split where needed."""
    parts = fiscal_parts(quantity_milli, paid, floor)
    if len(parts) == 1:
        return (fiscal_line(line_id, quantity_milli, parts[0][1], paid, full - paid),)
    (fewer, low, low_total), (more, high, high_total) = parts
    return (
        fiscal_line(line_id, fewer, low, low_total, fewer // 1000 * price - low_total),
        fiscal_line(line_id, more, high, high_total, more // 1000 * price - high_total),
    )


def evaluate(
    rule_set: RuleSet,
    customer: CustomerState,
    basket: Basket,
    store: Store,
    now: datetime,
    redeem: RedeemRequest | None = None,
) -> Quote:
    """Quote a sale: what it earns, spends, discounts and prints, and why. Pure: the same
    inputs give the same quote, byte for byte (`canonical_json`)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise EvaluationError("now must be timezone-aware")
    if basket.currency != rule_set.currency:
        raise EvaluationError(
            f"basket is in {basket.currency}, rule set {rule_set.rule_set_id} in "
            f"{rule_set.currency}"
        )
    comp = compiled(rule_set)
    facts = _facts(comp, customer, basket, store, now)
    cheque = _Cheque(comp, customer, basket, facts)
    cheque.rewards()
    requested, burned, limited = cheque.redeem(redeem or RedeemRequest(), now)
    if customer.status in EARNING:
        cheque.earn_points()
    total = sum(cheque.paid0)
    paid = sum(cheque.paid)
    earned = sum(cheque.earn)
    grants, granted = one_time_grants(rule_set, customer, cheque.known, facts.date, paid)
    if grants and rule_set.expiry_days:
        for grant in grants:
            grant["expires_at"] = now + timedelta(days=rule_set.expiry_days)
    cheque.explanation.extend(
        grant_item(item["rule_id"], item["kind"], item["points"]) for item in granted
    )
    quote_lines = []
    for line_id, earn, paid0, paid_now, burn, quantity, price, full, floor in zip(
        cheque.ids,
        cheque.earn,
        cheque.paid0,
        cheque.paid,
        cheque.burn_points,
        cheque.quantity,
        cheque.price,
        cheque.full,
        cheque.floors,
        strict=True,
    ):
        fiscal: tuple[FiscalLine, ...]
        if paid_now == full:  # nothing taken off: printed as rung up
            fiscal = (fiscal_line(line_id, quantity, price, paid_now, 0),)
        else:
            fiscal = _fiscal(line_id, quantity, price, full, paid_now, floor)
        quote_lines.append(quote_line(line_id, earn, paid0 - paid_now, burn, fiscal))
    days = timedelta(days=1)
    pending = rule_set.pending_days * days
    expiry = rule_set.expiry_days * days
    built = full_quote(
        rule_set_id=rule_set.rule_set_id,
        rule_set_hash=comp.content_hash,
        evaluator_version=EVALUATOR_VERSION,
        currency=basket.currency,
        lines=tuple(quote_lines),
        total=total,
        discount=total - paid,
        payable=paid,
        earn_points=earned,
        burn_points=burned,
        tier=facts.tier,
        redeem_requested=requested,
        redeem_limited_by=limited,
        earn_activates_at=now + pending if earned else None,
        earn_expires_at=now + expiry if earned and rule_set.expiry_days else None,
        counter_changes=tuple(cheque.counters),
        rolling_spend_delta=paid if cheque.known else 0,
        grants=tuple(grant_award(grant) for grant in grants),
        messages=tuple(
            receipt_message(message)
            for message in receipt_messages(
                rule_set, customer, cheque.known, earned, burned, facts.tier
            )
        ),
        explanation=tuple(cheque.explanation),
    )
    checked = (cheque.earn, cheque.burn_points, cheque.paid0, cheque.paid)
    if not fits(total, earned, burned, len(cheque.counters), grants, checked):
        # beyond the wire contract's bounds: validation raises as it always did
        return Quote.model_validate(built.model_dump())
    return built
