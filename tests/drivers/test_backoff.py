"""Backoff doubles from its minimum to its maximum and starts over after a success."""

from __future__ import annotations

import pytest

from drivers._backoff import Backoff


def test_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.05, 0.3)
    assert [backoff.next_s() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    backoff.reset()
    assert backoff.next_s() == 0.05


@pytest.mark.parametrize(("low", "high"), [(0, 1), (2, 1), (-1, 1)])
def test_bounds_are_checked(low: float, high: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(low, high)
