"""Offline redemption bounds: pure arithmetic over what the till has already spent offline.

Accrual never stops; only spending is bounded. Without central, a customer may spend at most
`customer_points_per_till_max` on this till, the till at most `till_points_budget_max` over all
customers, a phone-only identification at most `phone_only_points_max`, and nothing at all once
the cached data is older than `data_age_max_s` (or its age cannot be known).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent._clock import boot_offset_s
from protocol import OfflineLimits


@dataclass(frozen=True)
class OfflineSpent:
    """Points spent offline and not yet acknowledged by central, with open offline holds."""

    customer: int
    till: int


@dataclass(frozen=True)
class Allowance:
    points: int
    reason: str | None
    """Why `points` is less than asked, for the cashier; None when nothing limited it."""


def offline_allowance(
    limits: OfflineLimits,
    requested: int,
    spent: OfflineSpent,
    data_age_s: float | None,
    phone_only: bool,
) -> Allowance:
    if requested <= 0:
        return Allowance(0, None)
    if data_age_s is None:
        return Allowance(0, "offline, and the age of the till's data is unknown: no spending")
    if data_age_s > limits.data_age_max_s:
        hours = int(data_age_s // 3600)
        return Allowance(0, f"offline with data {hours} h old: spending needs a connection")
    caps = [
        (limits.customer_points_per_till_max - spent.customer, "customer's offline allowance"),
        (limits.till_points_budget_max - spent.till, "till's offline budget"),
    ]
    if phone_only:
        caps.append((limits.phone_only_points_max - spent.customer, "offline phone-only cap"))
    allowed, reason = min(caps, key=lambda cap: cap[0])
    allowed = max(allowed, 0)
    if allowed >= requested:
        return Allowance(requested, None)
    return Allowance(allowed, f"offline: limited to {allowed} points by the {reason}")


def data_age_s(
    last_pull_boot_id: str | None,
    last_pull_boottime_s: float | None,
    boot_id: str,
    boottime_s: float,
) -> float | None:
    """Seconds since the last successful pull, by the till's boot clock; None when unknown.

    After a reboot the boot clock starts again, so the age is unknown until the next pull.
    """
    if last_pull_boot_id is None or last_pull_boottime_s is None:
        return None
    offset = boot_offset_s(last_pull_boot_id, boot_id)
    if offset is None or boottime_s < last_pull_boottime_s + offset:
        return None  # another boot, or one whose start moved further than its clock ran
    return boottime_s - last_pull_boottime_s
