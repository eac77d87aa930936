"""Offline redemption bounds and data age: hand-checked cases and properties."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent._allowance import OfflineSpent, data_age_s, offline_allowance
from protocol import OfflineLimits

LIMITS = OfflineLimits(
    customer_points_per_till_max=1000,
    till_points_budget_max=5000,
    phone_only_points_max=300,
    data_age_max_s=3600,
)


def test_inside_allowance_everything_asked_is_allowed() -> None:
    result = offline_allowance(LIMITS, 400, OfflineSpent(100, 100), 60, phone_only=False)
    assert (result.points, result.reason) == (400, None)


def test_customer_allowance_caps_with_a_reason() -> None:
    result = offline_allowance(LIMITS, 400, OfflineSpent(700, 700), 60, phone_only=False)
    assert result.points == 300
    assert "customer's offline allowance" in (result.reason or "")


def test_till_budget_caps() -> None:
    result = offline_allowance(LIMITS, 400, OfflineSpent(0, 4900), 60, phone_only=False)
    assert result.points == 100
    assert "till's offline budget" in (result.reason or "")


def test_phone_only_has_the_smaller_cap() -> None:
    result = offline_allowance(LIMITS, 400, OfflineSpent(0, 0), 60, phone_only=True)
    assert result.points == 300
    assert "phone-only" in (result.reason or "")


def test_stale_or_unknown_data_stops_spending() -> None:
    stale = offline_allowance(LIMITS, 10, OfflineSpent(0, 0), 7300, phone_only=False)
    assert stale.points == 0
    assert "2 h old" in (stale.reason or "")
    unknown = offline_allowance(LIMITS, 10, OfflineSpent(0, 0), None, phone_only=False)
    assert unknown.points == 0


def test_data_age_uses_the_boot_clock_not_the_wall() -> None:
    assert data_age_s("boot-a", 100.0, "boot-a", 160.0) == 60.0
    assert data_age_s("boot-a", 100.0, "boot-b", 5000.0) is None  # rebooted since the pull
    assert data_age_s(None, None, "boot-a", 10.0) is None  # never pulled


@given(
    requested=st.integers(0, 10**6),
    customer=st.integers(0, 3000),
    till=st.integers(0, 9000),
    age=st.none() | st.floats(0, 10_000, allow_nan=False),
    phone_only=st.booleans(),
)
def test_allowance_never_exceeds_any_bound(
    requested: int, customer: int, till: int, age: float | None, phone_only: bool
) -> None:
    till = max(till, customer)
    result = offline_allowance(LIMITS, requested, OfflineSpent(customer, till), age, phone_only)
    assert 0 <= result.points <= requested
    assert customer + result.points <= max(LIMITS.customer_points_per_till_max, customer)
    assert till + result.points <= max(LIMITS.till_points_budget_max, till)
    if phone_only:
        assert customer + result.points <= max(LIMITS.phone_only_points_max, customer)
    if age is None or age > LIMITS.data_age_max_s:
        assert result.points == 0
    if result.points < requested:
        assert result.reason


def test_the_system_clock_where_the_machine_names_no_boot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Windows has no CLOCK_BOOTTIME, no clock_gettime and no /proc boot id: the boot clock is
    the monotonic one, and two processes of the agent name the same boot (the sync process
    records the pull, the POS API's reads its age), also when the wall clock was set between
    their starts; a reboot names another."""
    from agent import _clock

    monkeypatch.setattr(_clock, "_BOOT_ID", tmp_path / "no-such-file")
    monkeypatch.delattr(_clock.time, "CLOCK_BOOTTIME")
    monkeypatch.delattr(_clock.time, "clock_gettime")
    sync = _clock.SystemClock()
    pulled_at = sync.boottime_s()
    wall = time.time()
    monkeypatch.setattr(_clock.time, "time", lambda: wall + 15)  # NTP set the clock
    api = _clock.SystemClock()
    assert data_age_s(sync.boot_id(), pulled_at, api.boot_id(), pulled_at + 20) == 20
    assert data_age_s(sync.boot_id(), pulled_at, api.boot_id(), pulled_at + 5) is None
    up_s = time.monotonic()
    monkeypatch.setattr(_clock.time, "monotonic", lambda: up_s - 3600)  # started an hour later
    rebooted = _clock.SystemClock().boot_id()
    assert data_age_s(sync.boot_id(), pulled_at, rebooted, pulled_at + 60) is None
    monkeypatch.setattr(_clock.time, "monotonic", lambda: up_s - 120)  # rebooted 2 min later
    soon = _clock.SystemClock().boot_id()  # within the tolerance, but its clock ran 2 min less
    assert data_age_s(sync.boot_id(), pulled_at, soon, pulled_at + 60) is None
