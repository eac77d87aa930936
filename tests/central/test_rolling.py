"""Rolling spend keeps to the rule set's window, on SQLite and PostgreSQL: spend older than
`rolling_spend_days` leaves the customer's counter (and so their tier), late offline spend
outside the window never stays in it, and a longer window brings spend back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from central import _jobs
from protocol import EntryKind, PullResponse, PushItem

from .checks import assert_ledger_consistent
from .sales import RULES_TOML
from .tills import NOW, Hq, Till

DAY = timedelta(days=1)


def publish_window(hq: Hq, rule_set_id: str, days: int, effective_from: str) -> None:
    text = RULES_TOML.replace('rule_set_id = "base-2026"', f'rule_set_id = "{rule_set_id}"')
    text = text.replace(
        "effective_from = 2026-01-01T00:00:00+03:00",
        f"effective_from = {effective_from}\nrolling_spend_days = {days}",
    )
    response = hq.client.post(
        "/admin/rule-sets/publish",
        content=text.encode(),
        headers={**hq.headers, "content-type": "text/plain"},
    )
    assert response.status_code == 200, response.text


def thirty_days_for_c1(hq: Hq) -> None:
    """A rule set with a 30-day window in force since January, and customer c1."""
    publish_window(hq, "window-30", 30, "2026-01-01T00:00:00+03:00")
    hq.customer("c1")


def spend(till: Till, customer_id: str, kopecks: int, at: datetime, **extra: Any) -> PushItem:
    return till.entry(
        customer_id, kopecks, EntryKind.counter, asset="rolling_spend", device_time=at, **extra
    )


def rolled(engine: sa.Engine, now: datetime) -> int:
    outcome = _jobs.run(engine, _jobs.BY_NAME["rolling"], now, "test-holder")
    assert (outcome.ran, outcome.error) == (True, None), outcome
    return outcome.items


def spend_of(engine: sa.Engine, customer_id: str) -> int:
    from central import _tables as t

    with engine.connect() as conn:
        found = conn.execute(
            sa.select(t.accounts.c.balance).where(
                t.accounts.c.account_key == f"customer:{customer_id}",
                t.accounts.c.asset == "rolling_spend",
            )
        ).scalar_one_or_none()
    return int(found or 0)


def pushed(till: Till, items: list[PushItem]) -> None:
    response = till.push(items)
    assert response.status_code == 200, response.text


def test_spend_leaves_the_window_and_the_till_is_told(hq: Hq, engine: sa.Engine) -> None:
    thirty_days_for_c1(hq)
    hq.customer("c2")
    till = hq.enroll()
    pushed(
        till, [spend(till, "c1", 1_000, NOW - 40 * DAY), spend(till, "c1", 2_000, NOW - 10 * DAY)]
    )
    pushed(till, [spend(till, "c1", 500, NOW), spend(till, "c2", 700, NOW - 5 * DAY)])
    assert spend_of(engine, "c1") == 3_500  # pushed as it came: one sale was already too old
    assert rolled(engine, NOW) == 1
    assert (spend_of(engine, "c1"), spend_of(engine, "c2")) == (2_500, 700)
    assert rolled(engine, NOW) == 0  # the job's own entries are not spend
    assert rolled(engine, NOW + 21 * DAY) == 1  # the sale of NOW - 10 days is 31 days old
    assert (spend_of(engine, "c1"), spend_of(engine, "c2")) == (500, 700)
    assert rolled(engine, NOW + 26 * DAY) == 1  # c2's sale left too
    assert spend_of(engine, "c2") == 0
    page = PullResponse.model_validate_json(till.pull(0, limit=1000).content)
    last = {
        (change.account.customer_id, change.asset): change.balance
        for change in page.changes
        if change.type == "balance" and change.account.type == "customer"
    }
    assert last[("c1", "rolling_spend")] == 500
    assert last[("c2", "rolling_spend")] == 0
    assert_ledger_consistent(engine)


def test_a_refund_inside_the_window_never_makes_spend_negative(hq: Hq, engine: sa.Engine) -> None:
    thirty_days_for_c1(hq)
    till = hq.enroll()
    pushed(till, [spend(till, "c1", 500, NOW)])
    pushed(till, [spend(till, "c1", -500, NOW + 20 * DAY)])  # its refund
    assert rolled(engine, NOW + 31 * DAY) == 0  # the sale left, its refund did not: still 0
    assert spend_of(engine, "c1") == 0
    pushed(till, [spend(till, "c1", 300, NOW + 32 * DAY)])
    assert rolled(engine, NOW + 33 * DAY) == 1  # the refund counts against later spend...
    assert spend_of(engine, "c1") == 0
    assert rolled(engine, NOW + 51 * DAY) == 1  # ...until it leaves the window too
    assert spend_of(engine, "c1") == 300
    assert_ledger_consistent(engine)


def test_a_refund_naming_its_sale_leaves_the_window_with_the_sale(
    hq: Hq, engine: sa.Engine
) -> None:
    """A refund's reversal that names the sale's spend entry (as tills and central's refunds
    job write them) is dated by the sale: both leave the window together, and later spend
    counts in full. Dated by the refund (above), it took 500 off later spend for 20 days."""
    thirty_days_for_c1(hq)
    till = hq.enroll()
    sale = spend(till, "c1", 500, NOW)
    pushed(till, [sale])
    sale_id = json.loads(sale.payload)["entry_id"]
    pushed(till, [spend(till, "c1", -500, NOW + 20 * DAY, reverses=sale_id)])
    pushed(till, [spend(till, "c1", 300, NOW + 32 * DAY)])
    assert spend_of(engine, "c1") == 300
    assert rolled(engine, NOW + 33 * DAY) == 0  # the sale and its refund left together
    assert spend_of(engine, "c1") == 300
    assert_ledger_consistent(engine)


def test_a_refund_pushed_after_its_sale_left_the_window_is_taken_out(
    hq: Hq, engine: sa.Engine
) -> None:
    """A refund pushed late, of a sale already out of the window, took the sale's spend off
    spend inside it; the job finds it by the sale's time and puts the spend right."""
    thirty_days_for_c1(hq)
    till = hq.enroll()
    sale = spend(till, "c1", 1_000, NOW)
    pushed(till, [sale])
    assert rolled(engine, NOW + 31 * DAY) == 1
    assert spend_of(engine, "c1") == 0
    pushed(till, [spend(till, "c1", 300, NOW + 33 * DAY)])
    sale_id = json.loads(sale.payload)["entry_id"]
    pushed(till, [spend(till, "c1", -1_000, NOW + 34 * DAY, reverses=sale_id)])
    assert spend_of(engine, "c1") == -700
    assert rolled(engine, NOW + 35 * DAY) == 1
    assert spend_of(engine, "c1") == 300
    assert_ledger_consistent(engine)


def test_late_offline_spend_outside_the_window_is_taken_out(hq: Hq, engine: sa.Engine) -> None:
    thirty_days_for_c1(hq)
    till, offline = hq.enroll("s1"), hq.enroll("s2")
    pushed(till, [spend(till, "c1", 1_000, NOW)])
    for day in range(1, 4):  # runs that find nothing to do
        assert rolled(engine, NOW + day * DAY) == 0
    pushed(offline, [spend(offline, "c1", 4_000, NOW - 60 * DAY)])  # back after two months
    assert spend_of(engine, "c1") == 5_000
    assert rolled(engine, NOW + 4 * DAY) == 1
    assert spend_of(engine, "c1") == 1_000
    assert_ledger_consistent(engine)


def test_a_longer_window_brings_spend_back(hq: Hq, engine: sa.Engine) -> None:
    thirty_days_for_c1(hq)
    till = hq.enroll()
    pushed(till, [spend(till, "c1", 1_000, NOW - 50 * DAY), spend(till, "c1", 200, NOW)])
    assert rolled(engine, NOW) == 1
    assert spend_of(engine, "c1") == 200
    publish_window(hq, "window-90", 90, (NOW + DAY).isoformat())
    assert rolled(engine, NOW + 2 * DAY) == 1
    assert spend_of(engine, "c1") == 1_200
    assert_ledger_consistent(engine)


def test_imported_history_counts_from_when_it_was_bought(hq: Hq, engine: sa.Engine) -> None:
    publish_window(hq, "window-365", 365, "2026-01-01T00:00:00+03:00")
    hq.customer("c1")
    history = "customer_id,purchase_id,purchased_at,total_kopecks\n"
    history += f"c1,p1,{(NOW - 400 * DAY).date()},150000\nc1,p2,{(NOW - 10 * DAY).date()},50000\n"
    done = hq.client.post(
        "/admin/import/history",
        content=history.encode(),
        headers={**hq.headers, "content-type": "text/csv"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["imported"] == 2
    assert spend_of(engine, "c1") == 200_000
    assert rolled(engine, NOW) == 1
    assert spend_of(engine, "c1") == 50_000
    assert_ledger_consistent(engine)
