"""Spreading a cheque's discount over its lines, to the kopeck, in fiscal terms.

Pure integer arithmetic on plain lists. Shares are proportional by largest remainder; no
share exceeds its line's capacity (what the line has left above its floor); every line must
print with a whole-kopeck unit price. A line sold in whole units can always do that, split
into two fiscal lines where needed (`2 x 33.34 + 1 x 33.33`); a weighed line (say 1.5 kg) can
reach only some totals, so its share is rounded down to one it can reach and the rest goes to
the other lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import sub

from protocol._sale import line_total_of

UNIT_MILLI = 1000


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`: floors first, then one more to the largest
    remainders (ties to the earlier line). Shares add up to `total` exactly."""
    weight_sum = sum(weights)
    if total <= 0 or weight_sum <= 0:
        return [0] * len(weights)
    if len(weights) == 1:
        return [total]
    shares = []
    remainders = []
    for weight in weights:  # a plain loop: most calls share among two or three lines
        share, remainder = divmod(total * weight, weight_sum)
        shares.append(share)
        remainders.append(remainder)
    left = total - sum(shares)
    if left:
        if left == 1:  # the first of the largest
            shares[remainders.index(max(remainders))] += 1
            return shares
        # a stable sort: equal remainders keep line order, so ties go to the earlier line
        order = sorted(range(len(weights)), key=remainders.__getitem__, reverse=True)
        for index in order[:left]:
            shares[index] += 1
    return shares


def capped_shares(total: int, weights: Sequence[int], caps: Sequence[int]) -> list[int]:
    """Largest remainder where no share exceeds its cap: capped lines take their cap and the
    rest is spread again over the others. Adds up to `min(total, caps of weighted lines)`."""
    if weights and min(weights) > 0 and min(caps) > 0 and total > 0:
        # every line takes a share: when none reaches its cap, one pass is all it takes
        part = largest_remainder(min(total, sum(caps)), weights)
        if max(map(sub, part, caps)) < 0:
            return part
    shares = [0] * len(weights)
    active = [i for i, weight in enumerate(weights) if weight > 0 and caps[i] > 0]
    left = min(total, sum([caps[i] for i in active]))
    while left > 0 and active:
        everyone = len(active) == len(weights)
        part = largest_remainder(left, weights if everyone else [weights[i] for i in active])
        capped = {i for i, share in zip(active, part, strict=True) if share >= caps[i]}
        if not capped:
            if everyone:
                return part
            for i, share in zip(active, part, strict=True):
                shares[i] = share
            break
        for i in capped:
            shares[i] = caps[i]
            left -= caps[i]
        active = [i for i in active if i not in capped]
    return shares


def is_exact(quantity_milli: int) -> bool:
    """Can a line of this quantity print any total with a whole-kopeck unit price?"""
    return quantity_milli % UNIT_MILLI == 0 or quantity_milli < UNIT_MILLI


def floor_total(quantity_milli: int, floor_unit: int) -> int:
    """The least a line may cost: every unit at its floor price."""
    return line_total_of(quantity_milli, floor_unit)


def reachable_discount(paid: int, quantity_milli: int, floor_unit: int, wanted: int) -> int:
    """The largest discount `<= wanted` that leaves a weighed line a total it can print."""
    target = paid - wanted
    price = max(-(-(UNIT_MILLI * target - 500) // quantity_milli), floor_unit)
    return max(0, paid - line_total_of(quantity_milli, price))


def allocate(
    total: int,
    weights: Sequence[int],
    paid: Sequence[int],
    quantities_milli: Sequence[int],
    floors: Sequence[int],
    floor_totals: Sequence[int] | None = None,
) -> list[int]:
    """Discount shares of `total` over lines, each keeping its floor and a printable total.

    `weights` say how to share (usually what each line costs now, `paid`); `floors` are the
    minimum unit prices (`floor_totals`, the least each line may cost, when the caller has
    them). The shares add up to `total` whenever the lines have room for it; a caller that
    asks for more gets what fits, and must use the sum it gets back.
    """
    count = len(weights)
    if floor_totals is None:
        floor_totals = [floor_total(q, f) for q, f in zip(quantities_milli, floors, strict=True)]
    caps = [
        (cost - least if cost > least else 0) if weight else 0
        for weight, cost, least in zip(weights, paid, floor_totals, strict=True)
    ]
    shares = capped_shares(total, weights, caps)
    left = 0
    for i, quantity in enumerate(quantities_milli):
        if quantity > UNIT_MILLI and quantity % UNIT_MILLI and shares[i]:
            reachable = reachable_discount(paid[i], quantity, floors[i], shares[i])
            left += shares[i] - reachable
            shares[i] = reachable
    if left:
        rooms = [
            caps[i] - shares[i] if weights[i] > 0 and is_exact(quantities_milli[i]) else 0
            for i in range(count)
        ]
        extra = capped_shares(left, weights, rooms)
        for i in range(count):
            shares[i] += extra[i]
        left -= sum(extra)
    if left:  # no line sold in whole units had room: the weighed ones take it, if they can
        weighed = _roomiest_weighed(weights, quantities_milli, caps, shares)
        reach = (weighed_window_kopecks, min(left, weighed_window_kopecks) + weighed_window_kopecks)
        moves = [
            _printable_moves(paid[i], quantities_milli[i], floors[i], shares[i], caps[i], reach)
            for i in weighed
        ]
        chosen = _exact_sum(moves, left) or _one_pair(
            paid, quantities_milli, floors, caps, shares, weighed, left
        )
        for i, move in zip(weighed, chosen or [0] * len(weighed), strict=True):
            shares[i] += move
    return shares


weighed_lines_moved_max = 3
"""How many weighed lines (those with the most room left) move for the rest: enough for
the kopecks left, and the searches below stay small on a cheque of fifty weighed lines."""


def _roomiest_weighed(
    weights: Sequence[int],
    quantities_milli: Sequence[int],
    caps: Sequence[int],
    shares: Sequence[int],
) -> list[int]:
    """The weighed lines to move, in line order: the `weighed_lines_moved_max` with the most
    room above their shares (the earlier line among equals)."""
    weighed = [
        i for i in range(len(weights)) if weights[i] > 0 and not is_exact(quantities_milli[i])
    ]
    roomiest = sorted(weighed, key=lambda i: (shares[i] - caps[i], i))[:weighed_lines_moved_max]
    return sorted(roomiest)


weighed_window_kopecks = 20
"""How far a weighed line's share may move, down or up, for the weighed lines together to
take what is left (a few kopecks: each prints only some totals, about a kopeck apart per
kilogram); the search stays small, whatever the cheque."""


def _printable_moves(
    paid: int, quantity_milli: int, floor_unit: int, share: int, cap: int, reach: tuple[int, int]
) -> list[int]:
    """The changes to a weighed line's discount `share`, down by up to `reach[0]` and up by
    up to `reach[1]` kopecks and within `cap`, that leave it a total it can print (0 among
    them), the smallest first (a move down before the same move up)."""
    low, high = max(0, share - reach[0]), min(cap, share + reach[1])
    reached = {
        reachable_discount(paid, quantity_milli, floor_unit, d) for d in range(low, high + 1)
    }
    return sorted((done - share for done in reached | {share}), key=lambda m: (abs(m), m))


def _exact_sum(moves: Sequence[Sequence[int]], target: int) -> list[int] | None:
    """One move of each list so that they add up to `target` (the same choice for the same
    lists, as central's recomputation needs: the smallest moves are tried first); None when
    no choice does."""
    reached: list[dict[int, int]] = [{0: 0}]  # per line: sum so far -> the move taken
    for options in moves:  # smallest first
        nxt: dict[int, int] = {}
        for total in reached[-1]:
            for move in options:
                nxt.setdefault(total + move, move)
        reached.append(nxt)
    if target not in reached[-1]:
        return None
    chosen = []
    for line in range(len(moves), 0, -1):
        move = reached[line][target]
        chosen.append(move)
        target -= move
    return chosen[::-1]


weighed_reach_kopecks = 300
"""How far one weighed line's share may move when the small moves of all of them cannot
make the sum: the printable totals of two weighed lines can miss every sum near the
proportional split (1.00 RUB on 2.345 kg and 1.75 kg fits only as 0.00 + 1.00)."""


def _one_pair(
    paid: Sequence[int],
    quantities_milli: Sequence[int],
    floors: Sequence[int],
    caps: Sequence[int],
    shares: Sequence[int],
    weighed: Sequence[int],
    left: int,
) -> list[int] | None:
    """Moves that place `left` by changing one weighed line's share by up to
    `weighed_reach_kopecks` and the line with the most room taking the rest exactly; None
    when none does."""
    if not weighed:
        return None
    taker = max(weighed, key=lambda i: (caps[i] - shares[i], -i))

    def prints(i: int, discount: int) -> bool:
        return 0 <= discount <= caps[i] and discount == reachable_discount(
            paid[i], quantities_milli[i], floors[i], discount
        )

    for other in [None, *[i for i in weighed if i != taker]]:
        options = [0]
        if other is not None:
            reach = (weighed_reach_kopecks, left + weighed_reach_kopecks)
            line = (paid[other], quantities_milli[other], floors[other], shares[other])
            options = [move for move in _printable_moves(*line, caps[other], reach) if move]
        for move in options:
            if prints(taker, shares[taker] + left - move):
                return [left - move if i == taker else move if i == other else 0 for i in weighed]
    return None


def capacity(paid: Sequence[int], quantities_milli: Sequence[int], floors: Sequence[int]) -> int:
    """The most discount these lines can take above their floors."""
    return sum(
        max(0, paid[i] - floor_total(quantities_milli[i], floors[i])) for i in range(len(paid))
    )


def fiscal_parts(quantity_milli: int, paid: int, floor_unit: int = 0) -> list[tuple[int, int, int]]:
    """`(quantity_milli, unit_price, total)` of the one or two fiscal lines that print a line
    costing `paid`: whole units split as `q - r` at `p` and `r` at `p + 1`; a weighed line at
    the lowest price not below `floor_unit` that prints `paid`, or when the floor's price
    prints more (the POS's own discount took the line below it) the lowest price that does."""
    if quantity_milli % UNIT_MILLI == 0:
        units = quantity_milli // UNIT_MILLI
        price, more = divmod(paid, units)
        if more == 0:
            return [(quantity_milli, price, paid)]
        return [
            ((units - more) * UNIT_MILLI, price, (units - more) * price),
            (more * UNIT_MILLI, price + 1, more * (price + 1)),
        ]
    lowest = max(-(-(UNIT_MILLI * paid - 500) // quantity_milli), 0)
    price = max(lowest, floor_unit)
    if line_total_of(quantity_milli, price) != paid == line_total_of(quantity_milli, lowest):
        price = lowest  # the floor's price prints more: the POS's discount went below it
    return [(quantity_milli, price, paid)]
