"""Refunds: reversing a quote pro rata to the returned quantity, cumulatively.

For every amount `a` on a line of quantity `q` (money paid, loyalty discount, points earned,
points spent, counter changes), the first `x` returned thousandths take `a * x // q` in all
(rounded toward zero). A refund takes the difference between that cumulative target after it
and before it, so partial refunds add up exactly to the full refund, to the kopeck and the
point, and never exceed the original. Counters not tied to a line (`purchases`) are reversed
by the refund that returns the last of the cheque.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import Field

from protocol._base import (
    Id,
    NonNegKopecks,
    NonNegPoints,
    QuantityMilli,
    Sha256Hex,
    StrictBool,
    WireModel,
    cheque_lines_max,
)
from protocol._canonical import content_hash
from protocol._rules import RuleSet
from protocol._sale import (
    Basket,
    BasketLine,
    CounterChange,
    FiscalLine,
    Quote,
    QuoteLine,
    counter_changes_max,
)


class RefundError(ValueError):
    """A refund that cannot be made (unknown line, more returned than was sold)."""


class RefundLine(WireModel):
    line_id: Id
    quantity_milli: QuantityMilli
    """Thousandths of a unit returned by this refund."""
    money: NonNegKopecks
    """Money given back for them: their share of what the customer paid for the line."""
    discount: NonNegKopecks
    """Their share of the line's loyalty discount (rewards and points)."""
    earn_points: NonNegPoints
    """Points earned on them, taken back."""
    burn_points: NonNegPoints
    """Points spent on them, given back (to the lots they came from)."""
    fiscal: tuple[FiscalLine, ...] = Field(default=(), max_length=2)
    """The refund receipt's lines: the returned units at the prices the sale printed them
    (a line sold as `1 x 32.99 + 2 x 33.00` is returned at those prices, never another)."""


class Refund(WireModel):
    """What one refund reverses. `complete` when, with the earlier refunds, everything of
    the original is back."""

    original_hash: Sha256Hex
    """`content_hash` of the original quote: every refund of one cheque names the same."""
    rule_set_id: Id
    rule_set_hash: Sha256Hex
    evaluator_version: Id
    lines: tuple[RefundLine, ...] = Field(max_length=cheque_lines_max)
    money: NonNegKopecks
    discount: NonNegKopecks
    earn_points: NonNegPoints
    burn_points: NonNegPoints
    counter_changes: tuple[CounterChange, ...] = Field(default=(), max_length=counter_changes_max)
    rolling_spend_reversed: NonNegKopecks = 0
    complete: StrictBool = False


def returned_points_expire_at(rule_set: RuleSet, quoted_at: datetime) -> datetime | None:
    """When points a refund gives back (the sale spent them) expire: when points the sale
    earned do, `expiry_days` after it was quoted under its own rules (never, when those
    rules never expire points). Given back without an expiry, points about to expire could be
    kept for good by buying with them and returning the goods."""
    if not rule_set.expiry_days:
        return None
    return quoted_at + timedelta(days=rule_set.expiry_days)


def _share(amount: int, before: int, after: int, quantity: int) -> int:
    """What returning thousandths `before..after` of `quantity` takes of `amount`."""
    sign = -1 if amount < 0 else 1
    magnitude = abs(amount)
    return sign * (magnitude * after // quantity - magnitude * before // quantity)


def _fiscal(
    sold: BasketLine, quoted: QuoteLine, start: int, end: int, money: int
) -> tuple[FiscalLine, ...]:
    """The fiscal lines of returning thousandths `start..end` of `sold` for `money`."""
    paid = sum(part.total for part in quoted.fiscal)
    if sold.quantity_milli % 1000:
        full = _share(sold.total, start, end, sold.quantity_milli)
        return (
            FiscalLine(
                line_id=sold.line_id,
                quantity_milli=end - start,
                unit_price=quoted.fiscal[0].unit_price,
                total=money,
                discount=max(0, full - money),
            ),
        )
    units = (end - start) // 1000
    price = paid // (sold.quantity_milli // 1000)
    dearer = money - units * price  # returned units the sale printed at price + 1
    if not 0 <= dearer <= units:
        raise RefundError(f"line {sold.line_id!r}: the quote's fiscal lines do not add up")
    return tuple(
        FiscalLine(
            line_id=sold.line_id,
            quantity_milli=count * 1000,
            unit_price=unit_price,
            total=count * unit_price,
            discount=count * (sold.unit_price - unit_price),
        )
        for count, unit_price in ((units - dearer, price), (dearer, price + 1))
        if count
    )


def check_returned(
    sold: Mapping[str, int], before: Mapping[str, int], returned: Mapping[str, int]
) -> None:
    """Raise `RefundError` unless `returned` (line id → thousandths) can be returned from a
    cheque that sold `sold` of each line, `before` of which earlier refunds returned: lines of
    the cheque, positive, whole units of a line sold by the unit, never more than is left."""
    for line_id, quantity in returned.items():
        if line_id not in sold:
            raise RefundError(f"line {line_id!r} is not on the original cheque")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise RefundError(f"line {line_id!r}: returned quantity must be a positive integer")
        if sold[line_id] % 1000 == 0 and quantity % 1000:
            raise RefundError(
                f"line {line_id!r} was sold by the unit: return whole units (multiples of 1000)"
            )
        left = sold[line_id] - before.get(line_id, 0)
        if quantity > left:
            raise RefundError(
                f"line {line_id!r}: returning {quantity} thousandths but only {left} of "
                f"{sold[line_id]} are left to return"
            )


def refund_quote(
    original: Quote,
    basket: Basket,
    returned: Mapping[str, int],
    earlier: Sequence[Refund] = (),
) -> Refund:
    """Reverse `returned` (line id → thousandths returned now) of the sale `original` quoted
    for `basket`, after the `earlier` refunds of the same sale."""
    original_hash = content_hash(original)
    quantities = {line.line_id: line.quantity_milli for line in basket.lines}
    sold_lines = {line.line_id: line for line in basket.lines}
    quote_lines = {line.line_id: line for line in original.lines}
    if set(quantities) != set(quote_lines):
        raise RefundError("the basket's lines are not the lines of the original quote")
    for sold in basket.lines:
        quoted = quote_lines[sold.line_id]
        if sum(part.total for part in quoted.fiscal) != sold.paid - quoted.discount:
            raise RefundError(f"line {sold.line_id!r} of the basket is not the line quoted")
    before: dict[str, int] = dict.fromkeys(quantities, 0)
    for refund in earlier:
        if refund.original_hash != original_hash:
            raise RefundError("an earlier refund belongs to another sale")
        for line in refund.lines:
            before[line.line_id] += line.quantity_milli
    check_returned(quantities, before, returned)
    lines = []
    for line_id in quantities:
        now = returned.get(line_id, 0)
        if not now:
            continue
        quantity = quantities[line_id]
        start, end = before[line_id], before[line_id] + now
        quote_line = quote_lines[line_id]
        money = _share(sum(part.total for part in quote_line.fiscal), start, end, quantity)
        lines.append(
            RefundLine(
                line_id=line_id,
                quantity_milli=now,
                money=money,
                discount=_share(quote_line.discount, start, end, quantity),
                earn_points=_share(quote_line.earn_points, start, end, quantity),
                burn_points=_share(quote_line.burn_points, start, end, quantity),
                fiscal=_fiscal(sold_lines[line_id], quote_line, start, end, money),
            )
        )
    complete = all(
        before[line_id] + returned.get(line_id, 0) == quantity
        for line_id, quantity in quantities.items()
    )
    was_complete = all(before[line_id] == quantity for line_id, quantity in quantities.items())
    counters = []
    for change in original.counter_changes:
        if change.line_id is None:
            reversed_delta = -change.delta if complete and not was_complete else 0
        else:
            now = returned.get(change.line_id, 0)
            start = before[change.line_id]
            quantity = quantities[change.line_id]
            reversed_delta = -_share(change.delta, start, start + now, quantity)
        if reversed_delta:
            counters.append(
                CounterChange(
                    counter=change.counter,
                    delta=reversed_delta,
                    rule_id=change.rule_id,
                    line_id=change.line_id,
                )
            )
    money = sum(line.money for line in lines)
    return Refund(
        original_hash=original_hash,
        rule_set_id=original.rule_set_id,
        rule_set_hash=original.rule_set_hash,
        evaluator_version=original.evaluator_version,
        lines=tuple(lines),
        money=money,
        discount=sum(line.discount for line in lines),
        earn_points=sum(line.earn_points for line in lines),
        burn_points=sum(line.burn_points for line in lines),
        counter_changes=tuple(counters),
        rolling_spend_reversed=money if original.rolling_spend_delta else 0,
        complete=complete,
    )
