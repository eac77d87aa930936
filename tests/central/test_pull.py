"""Pull: bounded pages in change_seq order; outdated cursors get a snapshot."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from central import _changes, _db, cli
from protocol import EntryKind, PullResponse, PushResponse, SnapshotPage, SnapshotRequired

from .tills import Hq, Till


def _pull_all(till: Till, since: int = 0, limit: int = 3) -> tuple[list[Any], int]:
    changes: list[Any] = []
    while True:
        response = till.pull(since, limit)
        assert response.status_code == 200, response.text
        page = PullResponse.model_validate(response.json())
        assert len(page.changes) <= limit
        changes.extend(page.changes)
        since = page.next_cursor
        if not page.more:
            return changes, since


def test_pull_pages_every_kind_of_change_in_order(hq: Hq) -> None:
    hq.customer("c1", first_name="Анна", consent_data=True, phones=["8 916 123-45-67"])
    hq.customer("c2", identifiers=[{"type": "card", "number": "2770000000017"}])
    hq.post(
        "/admin/rule-sets",
        {
            "rule_set_id": "base-1",
            "effective_from": "2026-11-01T00:00:00Z",
            "document": {"rounding": "floor"},
        },
    )
    hq.client.put("/admin/offline-limits", json={"till_points_budget_max": 500}, headers=hq.headers)
    till = hq.enroll()
    assert till.push([till.entry("c1", 10), till.entry("c2", 20)]).status_code == 200
    hq.post("/admin/customers/c2/erase")
    changes, cursor = _pull_all(till)
    again, _ = _pull_all(till, limit=1)
    assert again == changes
    kinds = [c.type for c in changes]
    assert kinds == [
        "customer",
        "customer",
        "rule_set",
        "offline_limits",
        "balance",
        "balance",
        "erasure",
    ]
    seqs = [c.change_seq for c in changes]
    assert seqs == sorted(seqs) == list(range(1, 8))
    assert changes[0].identifiers[0].type == "phone_hash"
    assert changes[0].first_name == "Анна"
    assert changes[3].limits.till_points_budget_max == 500
    assert changes[6].identifiers[0].number == "2770000000017"
    assert (changes[4].balance, changes[5].balance) == (10, 20)
    rest, same = _pull_all(till, cursor)
    assert (rest, same) == ([], cursor)


def test_outdated_cursor_needs_a_snapshot_that_serves_the_state(
    hq: Hq, engine: sa.Engine, client: TestClient
) -> None:
    for index in range(5):
        hq.customer(f"c{index}")
    till = hq.enroll()
    assert till.push([till.entry(f"c{i}", 10 + i) for i in range(5)]).status_code == 200
    with engine.begin() as conn:
        _changes.prune(conn, 7)  # the push's changes 6..10 share one row: pruned whole or kept
    stale = till.pull(2)
    assert stale.status_code == 410
    refusal = SnapshotRequired.model_validate(stale.json())
    assert refusal.oldest_cursor == 5
    assert till.pull(5).status_code == 200
    assert [c["change_seq"] for c in till.pull(7).json()["changes"]] == [8, 9, 10]
    assert till.pull(999).status_code == 410
    pages: list[SnapshotPage] = []
    token = None
    while True:
        params: dict[str, Any] = {"limit": 4} if token is None else {"limit": 4, "page": token}
        response = client.get("/sync/snapshot", params=params, headers=till.headers)
        assert response.status_code == 200, response.text
        pages.append(SnapshotPage.model_validate(response.json()))
        token = pages[-1].next_page
        if token is None:
            break
    items = [c for page in pages for c in page.changes]
    assert all(len(page.changes) <= 4 for page in pages)
    assert [c.type for c in items].count("customer") == 5
    assert [c.type for c in items].count("erasure") == 0
    assert sorted(c.balance for c in items if c.type == "balance") == [10, 11, 12, 13, 14]
    assert [c.type for c in items].count("offline_limits") == 1
    assert {page.as_of for page in pages} == {10}
    assert till.pull(pages[0].as_of).json()["changes"] == []


def test_after_a_restore_every_cursor_reads_a_snapshot_and_no_number_is_given_twice(
    hq: Hq, db_url: str, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kopilka-central restored`: the restored central would give the numbers past its last
    change again, to other changes, and a till whose cursor is already there would skip them."""
    hq.customer("c1")
    till = hq.enroll()
    assert till.push([till.entry("c1", 10)]).status_code == 200
    _, cursor = _pull_all(till)

    assert cli.main(["restored", "--db", db_url]) == 0
    first = _floor(capsys.readouterr().out)
    assert first >= int(time.time() * 1000) * _changes.changes_per_ms_max - 10**8
    # run again, as after a second restore: the numbers move on again, past the first floor
    assert cli.main(["restored", "--db", db_url]) == 0
    floor = _floor(capsys.readouterr().out)
    assert floor > first > cursor
    pushed = till.push([till.entry("c1", 5)])
    assert pushed.status_code == 200, pushed.text
    assert PushResponse.model_validate(pushed.json()).change_seq > floor
    for stale in (0, cursor, cursor + 1):
        refused = till.pull(stale)
        assert refused.status_code == 410
        assert SnapshotRequired.model_validate(refused.json()).oldest_cursor == floor
    page = SnapshotPage.model_validate(client.get("/sync/snapshot", headers=till.headers).json())
    assert page.as_of > floor
    assert page.next_page is None
    assert [c.balance for c in page.changes if c.type == "balance"] == [15]
    assert _pull_all(till, page.as_of) == ([], page.as_of)


def _floor(said: str) -> int:
    """The last number before the ones `restored` says changes are numbered from."""
    return int(said.split("numbered from ")[1].split()[0]) - 1


def test_pull_limits_are_validated(hq: Hq) -> None:
    till = hq.enroll()
    response = till.pull(0, limit=100_000)
    assert response.status_code == 422
    assert "limit" in response.json()["message"]
    beyond = till.pull(10**600)
    assert beyond.status_code == 422
    assert "since" in beyond.json()["message"]
    assert datetime.now(UTC)  # server_time comes from the injected clock, see below
    assert till.pull(0).json()["server_time"].startswith("2026-11-25T09:00:00")


def test_balance_changes_carry_lots_grouped_by_day_never_usable_early(hq: Hq) -> None:
    hq.customer("c9")
    till = hq.enroll()
    noon = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    evening = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    items = [
        till.entry("c9", 100, activates_at=noon, expires_at=noon + timedelta(days=365)),
        till.entry("c9", 50, activates_at=evening, expires_at=evening + timedelta(days=365)),
        till.entry("c9", 30),  # active at once, never expires
        till.entry("c9", -40, EntryKind.burn),
    ]
    assert till.push(items).status_code == 200
    changes, _ = _pull_all(till, limit=100)
    balance = [c for c in changes if c.type == "balance" and c.asset == "points"][-1]
    assert balance.balance == 140
    lots = {(lot.activates_at, lot.expires_at): lot.points for lot in balance.lots}
    # the burn took the 30 active points, then 10 of the pending lot that expires first; the
    # two pending lots of one day are one group, usable from the next midnight (never earlier
    # than central), unusable from their last one
    next_midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert lots == {(next_midnight, datetime(2027, 12, 1, tzinfo=UTC)): 140}
    assert sum(lots.values()) == balance.balance


def test_pages_cut_rows_of_any_size_the_same_with_rows_kept_parsed(engine: sa.Engine) -> None:
    """A change-log row holds one transaction's changes (a group of pushes: thousands), a page
    at most `limit`: pages cut rows anywhere, through more than one read of rows, and give the
    same changes whether rows are parsed for each page or kept parsed across pages."""
    sizes = [1, 5, 2, 7, *[1] * (_changes.rows_per_read + 5), 3, 9]
    logged: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for size in sizes:
            bodies = [
                {"type": "offline_limits", "limits": {"till_points_budget_max": len(logged) + n}}
                for n in range(size)
            ]
            _changes.append(conn, bodies, 0)
            logged += bodies
    top = len(logged)
    when = datetime(2026, 11, 25, tzinfo=UTC)
    kept = _changes.ParsedRows(bytes_max=500)  # a few rows; the longest not at all
    with engine.connect() as conn:
        for limit in (1, 2, 4, 7, 1000):
            for since in range(top + 1):
                fresh = _changes.pull(conn, since, limit, when)
                page = _changes.pull(conn, since, limit, when, kept)
                assert page == fresh
                assert isinstance(page, bytes)
                parsed = PullResponse.model_validate_json(page)
                wanted = logged[since : since + limit]
                budgets = [change.limits.till_points_budget_max for change in parsed.changes]
                assert budgets == [body["limits"]["till_points_budget_max"] for body in wanted]
                assert [c.change_seq for c in parsed.changes] == list(
                    range(since + 1, since + len(wanted) + 1)
                )
                assert parsed.next_cursor == since + len(wanted)
                assert parsed.more is (since + len(wanted) < top)


def test_rows_kept_parsed_stay_within_their_bytes() -> None:
    kept = _changes.ParsedRows(bytes_max=100)
    row = b'[{"type": "offline_limits", "limits": {}}]'  # 42 bytes
    for seq in range(1, 6):
        assert kept.bodies(seq, seq, row) == [{"type": "offline_limits", "limits": {}}]
        assert kept.held_bytes == min(seq, 2) * len(row)
    assert kept.bodies(5, 5, row) is kept.bodies(5, 5, row), "a kept row is parsed once"
    long_row = b"[" + b",".join([b'{"type": "offline_limits", "limits": {}}'] * 3) + b"]"
    assert len(kept.bodies(6, 8, long_row)) == 3
    assert kept.held_bytes == 2 * len(row), "a row longer than the bound is not kept"


def test_a_snapshot_carries_a_tombstone_for_each_erased_customer(
    hq: Hq, client: TestClient
) -> None:
    """Erased customers are in no other section: a till that missed the tombstone in the
    log (pruned) must still drop them."""
    hq.customer("kept", phones=["+79161234567"])
    hq.customer("gone", phones=["+79031234567"])
    hq.post("/admin/customers/gone/erase")
    till = hq.enroll()
    response = client.get("/sync/snapshot", params={"limit": 1000}, headers=till.headers)
    page = SnapshotPage.model_validate(response.json())
    assert page.next_page is None
    customers = [c.state.customer_id for c in page.changes if c.type == "customer"]
    erasures = [c for c in page.changes if c.type == "erasure"]
    assert customers == ["kept"]
    assert [(c.customer_id, c.identifiers) for c in erasures] == [("gone", ())]


def test_a_prune_that_commits_while_a_page_is_read_never_makes_it_skip(
    hq: Hq, engine: sa.Engine
) -> None:
    """The prune job drops the oldest changes between a pull's look at the oldest cursor
    kept and its read of the rows (PostgreSQL reads each statement afresh): the page is a
    snapshot-required, or whole from the cursor on, never one that starts past a gap."""
    for n in range(6):
        hq.customer(f"c{n}")
    with engine.connect() as conn:
        since = _changes.counter(conn, "change_seq") - 4

    pruned = []

    def prune_meanwhile(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "FROM change_log" in statement and "ORDER BY" in statement and not pruned:
            pruned.append(True)
            with engine.begin() as other:
                _changes.prune(other, since + 2)

    reader = _db.reading(engine)  # as the pull route reads
    sa.event.listen(engine, "before_cursor_execute", prune_meanwhile)
    try:
        with reader.begin() as conn:
            page = _changes.pull(conn, since, 100, datetime.now(UTC))
    finally:
        sa.event.remove(engine, "before_cursor_execute", prune_meanwhile)
    assert pruned
    if isinstance(page, SnapshotRequired):
        assert page.oldest_cursor == since + 2
        return
    seqs = [change.change_seq for change in PullResponse.model_validate_json(page).changes]
    assert seqs == list(range(since + 1, since + 5))
