"""End to end with real processes: central, two tills, and a fault proxy between them."""

from __future__ import annotations

import random
import time

import pytest

from ..faultproxy import Fault
from .checks import assert_balances_fold, assert_nothing_lost_nothing_twice
from .conftest import ANNA, LIMITS, Chain, sell

pytestmark = pytest.mark.slow


def _wait_offline(*tills: object) -> None:
    deadline = time.monotonic() + 30
    for till in tills:
        while till.status()["online"]:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the till never noticed the network was down"
            time.sleep(0.1)


def test_partition_both_tills_spend_the_same_points(chain: Chain) -> None:
    till_a, till_b = chain.till("till-a"), chain.till("till-b")
    till_a.wait_synced()  # it knows Anna and the rules: A-1 earns her points
    sell(till_a, "A-1", 50000)
    till_a.wait_synced()
    till_b.wait_synced()
    opening = till_b.call("/v1/identify", ANNA)["balance"]["available"]
    assert opening > LIMITS["customer_points_per_till_max"]
    chain.proxy.partitioned = True
    _wait_offline(till_a, till_b)
    spend = LIMITS["customer_points_per_till_max"]
    at_a = sell(till_a, "A-2", 100000, redeem=spend, category="gift")  # gift cards earn nothing
    at_b = sell(till_b, "B-1", 100000, redeem=spend, category="gift")
    assert at_a["hold_mode"] == at_b["hold_mode"] == "offline"
    assert at_a["spent_points"] == at_b["spent_points"] == spend
    chain.proxy.partitioned = False
    till_a.wait_synced(timeout_s=60)
    till_b.wait_synced(timeout_s=60)
    central_db = chain.workdir / "central" / "central.db"
    balances = assert_balances_fold(central_db)
    for till in (till_a, till_b):
        assert_nothing_lost_nothing_twice(central_db, till)
    anna = balances["customer:c-anna"]
    assert anna < 0, "both tills spent the same points: central shows a debt"
    for till in (till_a, till_b):
        assert till.call("/v1/identify", ANNA)["balance"]["balance"] == anna


@pytest.mark.parametrize("fault", [Fault.drop, Fault.delay, Fault.lose_reply, Fault.duplicate])
def test_every_fault_of_the_network_leaves_the_invariants(chain: Chain, fault: Fault) -> None:
    till = chain.till("till-a", {"http_timeout_s": 1.5, "sync_backoff_s_max": 1.0})
    till.wait_synced()
    chain.proxy.delay_s = 2.0  # longer than the till's timeout: it gives up, then retries
    for i in range(6):
        chain.proxy.inject(fault, fault)
        sell(till, f"c-{i}", 10000 + i * 100, redeem=0 if i % 3 else 50)
        till.wait_synced(timeout_s=60)
    central_db = chain.workdir / "central" / "central.db"
    assert_nothing_lost_nothing_twice(central_db, till)
    balances = assert_balances_fold(central_db)
    assert till.call("/v1/identify", ANNA)["balance"]["balance"] == balances["customer:c-anna"]
    assert chain.proxy.applied.count(fault) == 12


def test_sigkill_of_each_process_during_sync_loses_nothing(chain: Chain) -> None:
    rng = random.Random(3)
    till = chain.till("till-a")
    till.wait_synced()  # it knows Anna and the rules: its sales earn her points
    for i in range(45):
        sell(till, f"k-{i}", 5000 + i, redeem=0)
        if i % 15 == 7:
            time.sleep(rng.uniform(0.0, 0.6))  # somewhere inside a sync
            till.process.kill()
            till.process.start()
        if i == 30:
            time.sleep(rng.uniform(0.0, 0.6))
            chain.central.process.kill()
            chain.central.process.start()
    till.wait_synced(timeout_s=90)
    central_db = chain.workdir / "central" / "central.db"
    assert_nothing_lost_nothing_twice(central_db, till)
    balances = assert_balances_fold(central_db)
    assert till.call("/v1/identify", ANNA)["balance"]["balance"] == balances["customer:c-anna"]
