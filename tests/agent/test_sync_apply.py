"""Applying pull pages to the till's cache (`agent._sync.apply_changes`) on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent._cache import get_customer
from agent._sales import Till
from agent._sync import apply_changes
from protocol import (
    BalanceChange,
    CardIdentifier,
    Change,
    CustomerAccount,
    CustomerState,
    Lot,
)
from protocol._sync import CustomerChange

EARNED = datetime(2026, 11, 20, tzinfo=UTC)


def _balance(seq: int, customer: str, asset: str, balance: int, lots: int = 0) -> BalanceChange:
    return BalanceChange(
        change_seq=seq,
        account=CustomerAccount(customer_id=customer),
        asset=asset,
        balance=balance,
        lots=tuple(
            Lot(lot_id=f"d{n}", points=lots, earned_at=EARNED, activates_at=EARNED)
            for n in range(1 if lots else 0)
        ),
    )


def _apply(till: Till, changes: list[Change]) -> None:
    with till.store.write() as db:
        apply_changes(db, tuple(changes))


def _state(till: Till, customer: str) -> CustomerState:
    cached = get_customer(till.store.db, customer)
    assert cached is not None
    return cached.state


def test_a_customer_change_keeps_the_cached_balances(till: Till, tmp_path: Path) -> None:
    """Central's customer change carries the profile only: a profile edit at HQ must not
    zero the till's view of the balance until the customer's next balance change."""
    profile = CustomerChange(
        change_seq=5,
        state=CustomerState(customer_id="c-1", consent_data=True, tier="gold"),
        identifiers=(CardIdentifier(number="2770000000017"),),
        first_name="Анна",
    )
    _apply(
        till,
        [
            _balance(3, "c-1", "points", 120, lots=120),
            _balance(4, "c-1", "purchases", 7),
            profile,
        ],
    )
    state = _state(till, "c-1")
    assert (state.points_balance, state.counters, state.tier) == (120, {"purchases": 7}, "gold")
    assert [lot.points for lot in state.lots] == [120]
    _apply(till, [_balance(6, "c-1", "points", 90, lots=90)])
    assert (_state(till, "c-1").points_balance, _state(till, "c-1").tier) == (90, "gold")


def test_a_new_customer_starts_at_zero_until_its_balance_arrives(till: Till) -> None:
    fresh = CustomerChange(change_seq=7, state=CustomerState(customer_id="c-9"))
    _apply(till, [fresh])
    assert _state(till, "c-9").points_balance == 0
    _apply(till, [_balance(8, "c-9", "points", 40, lots=40)])
    assert _state(till, "c-9").points_balance == 40
