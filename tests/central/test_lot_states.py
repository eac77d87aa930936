"""The lots kept per account (`lot_states`) equal the fold of the account's ledger, after any
mix of earns, spending, refunds, one-time grants, activation, expiry and merges; and the
balance changes push logs carry the lots of that fold."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import _changes, _jobs, _lot_state, _lots, migrate
from central import _tables as t
from central._clock import to_ms
from central._db import alembic_config
from protocol import EntryKind, PushItem

from .checks import assert_ledger_consistent, assert_lot_states_kept, open_lots
from .tills import NOW, Hq, Till

customers = st.sampled_from(["c1", "c2", "c3"])
days = st.integers(0, 60)
earn = st.tuples(
    st.just("earn"), customers, st.integers(1, 200), st.none() | days, st.none() | days
)
spend = st.tuples(st.just("burn"), customers, st.integers(1, 150))
refund = st.tuples(st.just("refund"), st.integers(0, 30), st.integers(1, 100))
returned = st.tuples(st.just("returned"), customers, st.integers(1, 50))
grant = st.tuples(st.just("welcome"), customers, st.integers(1, 100))
job = st.tuples(st.sampled_from(["expire", "activate"]), days)
merge = st.tuples(st.just("merge"), customers, customers)
steps = st.lists(st.one_of(earn, spend, refund, returned, grant, job, merge), max_size=25)
batches = st.integers(1, 4)


def _entries_for(till: Till, step: tuple, earned: list[tuple[str, str]]) -> list[PushItem]:
    what = step[0]
    if what == "earn":
        _, customer, amount, activates, expires = step
        extra = {}
        if activates is not None:
            extra["activates_at"] = NOW + timedelta(days=activates)
        if expires is not None:
            extra["expires_at"] = NOW + timedelta(days=expires)
        item = till.entry(customer, amount, **extra)
        earned.append((customer, json.loads(item.payload)["entry_id"]))
        return [item]
    if what == "burn":
        return [till.entry(step[1], -step[2], EntryKind.burn)]
    if what == "refund" and earned:
        customer, lot_id = earned[step[1] % len(earned)]
        return [till.entry(customer, -step[2], EntryKind.refund_reversal, reverses=lot_id)]
    if what == "returned":
        return [till.entry(step[1], step[2], EntryKind.refund_reversal)]
    if what == "welcome":
        return [till.entry(step[1], step[2], EntryKind.welcome, grant_key=f"welcome:{step[1]}")]
    return []


_runs = itertools.count()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps, batch_size=batches)
def test_kept_lots_equal_the_fold_after_anything(
    hq: Hq, engine: sa.Engine, plan: list[tuple], batch_size: int
) -> None:
    # the database lives through all examples, and a merge is for good: each example has
    # customers of its own
    run = next(_runs)
    names = {name: f"{name}-{run}" for name in ("c1", "c2", "c3")}
    plan = [tuple(names.get(part, part) for part in step) for step in plan]
    for customer in names.values():
        hq.customer(customer)
    till = hq.enroll()
    earned: list[tuple[str, str]] = []
    pending: list[PushItem] = []
    merged: set[str] = set()

    def flush() -> None:
        while pending:
            batch, pending[:] = pending[:batch_size], pending[batch_size:]
            response = till.push(batch)
            assert response.status_code == 200, response.text

    for step in plan:
        if step[0] in {"expire", "activate"}:
            flush()
            when = NOW + timedelta(days=step[1])
            outcome = _jobs.run(engine, _jobs.BY_NAME[step[0]], when, "test")
            assert outcome.error is None, outcome
        elif step[0] == "merge":
            flush()
            duplicate, keep = step[1], step[2]
            if duplicate != keep and not {duplicate, keep} & merged:
                hq.post(
                    "/admin/customers/merge",
                    {"duplicate_id": duplicate, "keep_id": keep, "reason": "duplicate"},
                )
                merged.add(duplicate)
        else:
            pending.extend(_entries_for(till, step, earned))
        with engine.connect() as conn:
            assert_lot_states_kept(conn)
    flush()
    assert_ledger_consistent(engine)
    _assert_logged_lots_are_the_fold(engine)


def _assert_logged_lots_are_the_fold(engine: sa.Engine) -> None:
    """The newest balance change of each points account carries its folded lots (grouped
    as of the time that change was written)."""
    newest: dict[str, tuple[dict[str, Any], int]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.change_log.c.body, t.change_log.c.created_ms).order_by(
                t.change_log.c.change_seq
            )
        )
        for body, created_ms in rows:
            for change in json.loads(body):
                if change["type"] == "balance" and change["asset"] == "points":
                    newest[f"customer:{change['account']['customer_id']}"] = (change, created_ms)
        for key, (change, created_ms) in newest.items():
            folded = _lots.fold_account(conn, key)
            expected = _changes.lots_of({key: folded}, created_ms)[key]
            assert change.get("lots", []) == expected, key


def test_migration_fills_the_state_from_an_existing_ledger(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    till = hq.enroll()
    soon = NOW + timedelta(days=5)
    items = [
        till.entry("c1", 100, expires_at=soon),
        till.entry("c1", 40),
        till.entry("c1", -120, EntryKind.burn),  # 100 expiring soon first, then 20 of 40
        till.entry("c1", -50, EntryKind.burn),  # the other 20, and 30 of debt
        till.entry("c1", 50, activates_at=soon),  # pays the debt first
    ]
    assert till.push(items).status_code == 200
    last_lot = json.loads(items[4].payload)["entry_id"]
    expected = (0, [(last_lot, 20, to_ms(soon), None)])
    with engine.connect() as conn:
        assert open_lots(_lot_state.load(conn, ["customer:c1"])["customer:c1"]) == expected
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0002_processing")
        assert not sa.inspect(conn).has_table("lot_states")
    migrate(engine)
    with engine.connect() as conn:
        assert open_lots(_lot_state.load(conn, ["customer:c1"])["customer:c1"]) == expected
    assert_ledger_consistent(engine)


def test_migration_writes_off_what_spending_after_an_expiry_left_in_a_written_off_lot(
    hq: Hq, engine: sa.Engine
) -> None:
    """A ledger as the older fold left it: a sale after an expiry took the expired lot, and
    the expiry job found it empty and marked it written off. The migration folds again (the
    sale takes the valid lot) and writes off the expired lot's points, once."""
    hq.customer("c1")
    till = hq.enroll()
    expired, earned = NOW - timedelta(days=1), NOW - timedelta(days=200)
    old = till.entry("c1", 100, expires_at=expired, device_time=earned)
    valid = till.entry("c1", 100, expires_at=NOW + timedelta(days=300), device_time=earned)
    assert till.push([old, valid]).status_code == 200
    assert till.push([till.entry("c1", -100, EntryKind.burn)]).status_code == 200
    old_id = json.loads(old.payload)["entry_id"]
    with engine.begin() as conn:  # what the job did when the older fold left the lot empty
        conn.execute(sa.update(t.lots).where(t.lots.c.lot_id == old_id).values(expired_ms=1))
        command.downgrade(alembic_config(conn), "0007_change_log_customers")
    migrate(engine)
    with engine.connect() as conn:
        assert _lots.fold_account(conn, "customer:c1").balance == 0
        written_off = conn.execute(
            sa.select(t.ledger.c.amount, t.ledger.c.reverses).where(t.ledger.c.kind == "expire")
        ).all()
    assert [tuple(row) for row in written_off] == [(-100, old_id)]
    assert_ledger_consistent(engine)
    late = NOW + timedelta(days=400)
    assert _jobs.run(engine, _jobs.BY_NAME["expire"], late, "test").items == 1  # the valid lot
    with engine.connect() as conn:
        assert _lots.fold_account(conn, "customer:c1").balance == 0


def test_the_check_finds_a_kept_state_that_drifted_from_the_ledger(
    hq: Hq, engine: sa.Engine
) -> None:
    hq.customer("c1")
    till = hq.enroll()
    assert (
        till.push([till.entry("c1", 100), till.entry("c1", -30, EntryKind.burn)]).status_code == 200
    )
    with engine.connect() as conn:
        assert_lot_states_kept(conn)
    with engine.begin() as conn:
        conn.execute(sa.update(t.lot_states).values(debt=5))
    with engine.connect() as conn, pytest.raises(AssertionError, match="customer:c1"):
        assert_lot_states_kept(conn)


def _lots_by_day(folded: _lot_state.Folded, now_ms: int) -> list[dict[str, Any]]:
    """`_changes.lots_of` spelled out lot by lot, the way it was first written."""
    day = _changes.day_ms
    groups: dict[tuple[int, int | None], int] = {}
    for lot in map(_lot_state.lot_dict, folded.lots.values()):
        if lot["left"] > 0:
            activates = lot["activates_ms"] or 0
            usable = 0 if activates <= now_ms else -(-activates // day) * day
            ends = None if lot["expires_ms"] is None else lot["expires_ms"] // day * day
            groups[(usable, ends)] = groups.get((usable, ends), 0) + lot["left"]
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or 0))
    return [_changes._lot_body(usable, ends, left) for (usable, ends), left in ordered]


_day_ms = 86_400_000
lot_times = st.none() | st.integers(0, 90 * _day_ms)


@settings(max_examples=200, deadline=None)
@given(
    lots=st.lists(st.tuples(st.integers(-5, 50), lot_times, lot_times), max_size=30),
    now_ms=st.integers(0, 90 * _day_ms),
)
def test_lots_by_day_equal_the_lot_by_lot_grouping(
    lots: list[tuple[int, int | None, int | None]], now_ms: int
) -> None:
    folded = _lot_state.Folded(
        {
            f"l{n}": [f"l{n}", left, activates, expires]
            for n, (left, activates, expires) in enumerate(lots)
        },
        0,
    )
    assert _changes.lots_of({"k": folded}, now_ms)["k"] == _lots_by_day(folded, now_ms)


def _reference_fold(
    steps: list[tuple[str, int, str | None, int]], times: dict[str, tuple[int | None, int | None]]
) -> tuple[int, list[tuple[str, int, int | None, int | None]]]:
    """The fold as `central._lot_state`'s docstring states it, written plainly: a positive
    entry pays the debt first and the rest is a lot; a negative one takes from the lot it
    reverses first, then from the lots active when it was made, then from those still
    waiting then, each time those that expire first (never-expiring last, fold order among
    equals), never from a lot expired by then; what no lot covers is debt."""
    lots: list[list[Any]] = []
    debt = 0
    for entry_id, amount, reverses, at in steps:
        if amount > 0:
            paid = min(debt, amount)
            debt -= paid
            lots.append([entry_id, amount - paid, *times.get(entry_id, (None, None))])
            continue
        need = -amount
        first = [lot for lot in lots if lot[0] == reverses]
        live = [lot for lot in lots if lot[0] != reverses and (lot[3] is None or at < lot[3])]

        def by_expiry(lot: list[Any]) -> tuple[bool, int]:
            return lot[3] is None, lot[3] or 0

        active = sorted((lot for lot in live if (lot[2] or 0) <= at), key=by_expiry)
        waiting = sorted((lot for lot in live if (lot[2] or 0) > at), key=by_expiry)
        for lot in first + active + waiting:
            taken = min(lot[1], need)
            lot[1] -= taken
            need -= taken
        debt += need
    return debt, [tuple(lot) for lot in lots if lot[1] > 0]  # type: ignore[misc]


fold_steps = st.lists(
    st.tuples(st.integers(-120, 150), st.none() | st.integers(0, 30), st.integers(0, 6)),
    min_size=1,
    max_size=40,
)
lot_moments = st.lists(st.none() | st.integers(1, 5), min_size=40, max_size=40)


@settings(max_examples=300, deadline=None)
@given(plan=fold_steps, activations=lot_moments, expiries=lot_moments, cut=st.integers(0, 40))
def test_the_fold_and_its_kept_form_follow_the_rules(
    plan: list[tuple[int, int | None, int]],
    activations: list[int | None],
    expiries: list[int | None],
    cut: int,
) -> None:
    """`fold` equals the plain reference, also when the state is written out and read back
    part-way (as push keeps it between batches)."""
    steps = []
    for n, (amount, reverses, at) in enumerate(plan):
        target = f"l{reverses}" if reverses is not None and amount < 0 else None
        steps.append(_lot_state.Step(f"l{n}", amount, target, at))
    times = {
        f"l{n}": (activations[n], expiries[n])
        for n in range(len(plan))
        if (activations[n], expiries[n]) != (None, None)
    }
    expected = _reference_fold(
        [(s.entry_id, s.amount, s.reverses, s.device_time_ms) for s in steps], times
    )
    assert open_lots(_lot_state.fold(steps, times)) == expected
    cut %= len(steps) + 1  # a cut inside the plan, where the kept state matters
    head = _lot_state.fold(steps[:cut], times)
    kept = _lot_state._decode(head.debt, _lot_state._encode(head))
    assert open_lots(_lot_state.fold(steps[cut:], times, kept)) == expected


def test_a_spend_onto_a_kept_state_takes_the_lot_that_expires_first() -> None:
    """The fold looks at the expiry of the lots it starts from, not only of those it adds."""
    start = _lot_state.Folded({"a": ["a", 10, None, None], "b": ["b", 10, None, 5]}, 0)
    kept = _lot_state._decode(start.debt, _lot_state._encode(start))
    folded = _lot_state.fold([_lot_state.Step("s", -4, None, 0)], {}, kept)
    assert folded.open_lots() == [["a", 10, None, None], ["b", 6, None, 5]]


@settings(max_examples=25, deadline=None)
@given(
    extra=st.integers(1, 40),
    pending=st.integers(0, 5),
    now_ms=st.integers(0, 10 * _day_ms),
)
def test_an_account_with_more_lot_groups_than_a_balance_carries_still_adds_up(
    extra: int, pending: int, now_ms: int
) -> None:
    """Points expiring on more distinct days than a balance change carries lots for: the
    lots sent add up to the balance, and none is usable earlier or ends later than the
    points in it (a till never spends early or late)."""
    count = _changes.lots_per_balance_max + extra
    lots = {
        f"l{n}": [f"l{n}", 10, None, (n + 20) * _day_ms + now_ms]  # usable now, one a day
        for n in range(count)
    }
    for n in range(pending):  # earned lately: usable later
        lots[f"p{n}"] = [f"p{n}", 7, now_ms + (n + 1) * _day_ms, None]
    folded = _lot_state.Folded(lots, 0)
    sent = _changes.lots_of({"k": folded}, now_ms)["k"]
    assert len(sent) == _changes.lots_per_balance_max
    assert sum(body["points"] for body in sent) == folded.balance
    exact = _lots_by_day(folded, now_ms)
    kept = _changes.lots_per_balance_max - 1
    assert sent[:kept] == exact[:kept]
    merged, last = exact[kept:], sent[-1]  # the rest went as one
    assert last["activates_at"] == max(lot["activates_at"] for lot in merged)
    ends = [lot["expires_at"] for lot in merged if lot["expires_at"] is not None]
    assert last["expires_at"] == (min(ends) if ends else None)
