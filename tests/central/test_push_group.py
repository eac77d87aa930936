"""Group commit: batches of several devices in one write transaction, each all or nothing."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from central import _db, _push
from central import _tables as t
from central._directory import Refused
from central._group import GroupCommit
from protocol import CENTRAL_DEVICE_ID, EntryKind, PullResponse, PushRequest

from .checks import assert_ledger_consistent
from .conftest import FakeClock
from .tills import Hq, Till


def _batch(till: Till, items: list[Any]) -> _push.Batch:
    request = PushRequest.model_validate(till.body(items))
    return _push.Batch(till.device_id, request, _push.read_items(till.device_id, request))


def _refusal(batch: _push.Batch) -> Refused:
    with pytest.raises(Refused) as refused:
        batch.answer()
    return refused.value


def test_a_refused_batch_in_a_group_leaves_the_others_applied(
    hq: Hq, engine: sa.Engine, clock: FakeClock
) -> None:
    for customer_id in ("c1", "c2"):
        hq.customer(customer_id)
    good, gapped, stealing, replayed, changed, later = (hq.enroll() for _ in range(6))
    first = replayed.entry("c1", 7)
    assert replayed.push([first]).status_code == 200
    original = changed.entry("c2", 10)
    assert changed.push([original]).status_code == 200
    changed.next_seq = 1
    gapped.entry("c1", 5)  # seq 1, never pushed
    stolen_id = json.loads(first.payload)["entry_id"]
    batches = [
        _batch(good, [good.entry("c1", 100), good.entry("c2", -30, EntryKind.burn)]),
        _batch(gapped, [gapped.entry("c1", 5)]),  # seq 2: a gap
        # Another device reuses an entry id: found only when the ledger rows are inserted,
        # after this batch folded its +50 into c1's lots, which must not stay there.
        _batch(stealing, [stealing.entry("c1", 50, entry_id=stolen_id)]),
        _batch(changed, [changed.entry("c2", 99)]),  # seq 1 again, other bytes
        _batch(replayed, [first, replayed.entry("c1", 3)]),
        _batch(later, [later.entry("c1", -20, EntryKind.burn)]),
    ]
    _push.push_group(engine, batches, clock)

    assert batches[0].answer().acked_through == 2
    gap = _refusal(batches[1])
    assert (gap.code, gap.details) == ("gap", {"expected_seq": 1})
    assert _refusal(batches[2]).details["kind"] == "id_reused"
    assert _refusal(batches[3]).details["kind"] == "seq_payload_mismatch"
    replay = batches[4].answer()
    assert [outcome.value for _, outcome, _ in replay.outcomes] == ["duplicate", "applied"]
    assert batches[5].answer().acked_through == 1
    watermarks = {batch.answer().change_seq for batch in (batches[0], batches[4], batches[5])}
    assert len(watermarks) == 1  # one transaction, one log row
    balances = assert_ledger_consistent(engine)  # kept lots too: the +50 was not kept
    assert balances[("customer:c1", "points")] == 100 + 7 + 3 - 20
    assert balances[("customer:c2", "points")] == 10 - 30
    with engine.connect() as conn:
        kinds = sorted(conn.execute(sa.select(t.conflicts.c.kind)).scalars())
        debts = conn.execute(sa.select(t.debts.c.account_key)).scalars().all()
    assert kinds == ["id_reused", "seq_payload_mismatch"]
    assert debts == ["customer:c2"]
    # The refused batches go through once fixed, after the group.
    gapped.next_seq = 1
    assert gapped.push([gapped.entry("c1", 5), gapped.entry("c1", 5)]).status_code == 200
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 100 + 7 + 3 - 20 + 10


def test_a_batch_past_a_balance_bound_in_a_group_leaves_the_others_applied(
    hq: Hq, engine: sa.Engine, clock: FakeClock
) -> None:
    """It is refused after it moved the group's accounts: the group is written again
    without it."""
    hq.customer("c1")
    before, rich, after = (hq.enroll() for _ in range(3))
    batches = [
        _batch(before, [before.entry("c1", 10**12 - 100)]),
        _batch(rich, [rich.entry("c1", 200)]),
        _batch(after, [after.entry("c1", -50, EntryKind.burn)]),
    ]
    _push.push_group(engine, batches, clock)
    assert _refusal(batches[1]).code == "balance_out_of_range"
    assert batches[0].answer().acked_through == batches[2].answer().acked_through == 1
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 10**12 - 150


def test_pull_sees_the_balances_a_group_wrote(hq: Hq, engine: sa.Engine, clock: FakeClock) -> None:
    hq.customer("c1")
    tills = [hq.enroll() for _ in range(3)]
    batches = [_batch(till, [till.entry("c1", 10 * (n + 1)) for n in range(2)]) for till in tills]
    _push.push_group(engine, batches, clock)
    page = PullResponse.model_validate_json(tills[0].pull(0).content)
    balances = [c for c in page.changes if c.type == "balance"]
    assert len(balances) == 1  # the account was touched by three batches, logged once
    assert balances[0].balance == 3 * (10 + 20)
    assert page.next_cursor == batches[0].answer().change_seq


def test_devices_pushing_at_once_each_land_whole_or_are_refused(hq: Hq, engine: sa.Engine) -> None:
    """Through the app: concurrent pushes are written in groups (on PostgreSQL with every
    group's rows locked first); a gap is refused with the expected seq and holds nobody else
    back."""
    for index in range(4):
        hq.customer(f"c{index}")
    tills = [hq.enroll() for _ in range(8)]
    gapped = hq.enroll()
    gapped.entry("c0", 1)  # seq 1, never pushed

    def device(till: Till) -> list[int]:
        codes = []
        for _ in range(3):
            items = [till.entry(f"c{n % 4}", n % 7 - 2 or 1) for n in range(40)]
            codes.append(till.push(items).status_code)
        return codes

    with ThreadPoolExecutor(len(tills) + 1) as pool:
        refused = pool.submit(gapped.push, [gapped.entry("c0", 1)])
        results = list(pool.map(device, tills))
    assert results == [[200] * 3] * len(tills)
    assert refused.result().status_code == 409
    assert refused.result().json()["details"] == {"expected_seq": 1}
    balances = assert_ledger_consistent(engine)
    assert sum(balances.values()) == 8 * 3 * sum(n % 7 - 2 or 1 for n in range(40))


def test_two_writers_groups_over_the_same_accounts_never_deadlock(
    hq: Hq, engine: sa.Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers (two processes on PostgreSQL) each write a group whose batches move the
    same two accounts in opposite orders. Taken batch by batch, the row locks would cross
    (a deadlock PostgreSQL breaks by failing one transaction); a group takes all of them up
    front in one order, so each group lands at its first attempt."""
    monkeypatch.setattr(_push, "transaction_attempts_max", 1)  # a deadlock would fail it
    hq.customer("c1")
    hq.customer("c2")
    tills = [hq.enroll() for _ in range(4)]
    rounds = 12
    start = threading.Barrier(2)

    def write(group: list[_push.Batch]) -> None:
        start.wait(10)  # both writers at once
        # the writer lock on SQLite; PostgreSQL takes row locks
        _push.push_group(engine, group, clock, lambda: _db.writing(engine))

    for _ in range(rounds):
        groups = [
            [
                _batch(tills[0], [tills[0].entry("c1", 5)]),
                _batch(tills[1], [tills[1].entry("c2", 7)]),
            ],
            [
                _batch(tills[2], [tills[2].entry("c2", 3)]),
                _batch(tills[3], [tills[3].entry("c1", 2)]),
            ],
        ]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(write, groups))
        assert [batch.answer().outcomes[0][1].value for g in groups for batch in g] == [
            "applied"
        ] * 4
    balances = assert_ledger_consistent(engine)
    assert balances[("customer:c1", "points")] == rounds * (5 + 2)
    assert balances[("customer:c2", "points")] == rounds * (7 + 3)


def test_a_grant_paid_twice_in_one_group_is_reversed_once(
    hq: Hq, engine: sa.Engine, clock: FakeClock
) -> None:
    """Two tills pay the same welcome grant in one group: the first stands, the second is
    reversed by central's pseudo-device (on PostgreSQL its row is locked with the group's)."""
    hq.customer("c1")
    one, two = hq.enroll(), hq.enroll()
    grant = {"kind": EntryKind.welcome, "grant_key": "welcome:c1"}
    batches = [_batch(till, [till.entry("c1", 100, **dict(grant))]) for till in (one, two)]
    _push.push_group(engine, batches, clock)
    assert [batch.answer().acked_through for batch in batches] == [1, 1]
    with engine.connect() as conn:
        central_rows = conn.execute(
            sa.select(t.ledger.c.kind, t.ledger.c.amount).where(
                t.ledger.c.device_id == CENTRAL_DEVICE_ID
            )
        ).all()
    assert [tuple(row) for row in central_rows] == [("grant_reversal", -100)]
    assert assert_ledger_consistent(engine)[("customer:c1", "points")] == 100


def _answered(batch: _push.Batch) -> None:
    batch.done = _push.Pushed(batch.items[-1].seq, 0, [], datetime(2026, 1, 1, tzinfo=UTC))


def test_batches_waiting_for_the_writer_are_written_together() -> None:
    groups: list[int] = []
    writing = threading.Event()
    go_on = threading.Event()

    def write(group: list[_push.Batch]) -> None:
        groups.append(len(group))
        if len(groups) == 1:
            writing.set()
            assert go_on.wait(10)
        for batch in group:
            _answered(batch)

    queue = GroupCommit(write, batches_max=3, waiting_max=8)
    batches = [_push.Batch(f"d{n}", None, [_Seq(n)]) for n in range(6)]  # type: ignore[arg-type]
    with ThreadPoolExecutor(6) as pool:
        answers = [pool.submit(queue.push, batches[0])]
        assert writing.wait(10)
        answers += [pool.submit(queue.push, batch) for batch in batches[1:]]
        deadline = time.monotonic() + 10
        while queue.waiting < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        go_on.set()
        assert [answer.result(10).acked_through for answer in answers] == list(range(6))
    assert groups == [1, 3, 2]
    assert queue.waiting == 0


class _Seq:
    def __init__(self, seq: int) -> None:
        self.seq = seq


def test_a_failing_write_answers_every_batch_of_its_group() -> None:
    def write(group: list[_push.Batch]) -> None:
        for batch in group:
            batch.error = RuntimeError("disk full")

    queue = GroupCommit(write)
    with pytest.raises(RuntimeError, match="disk full"):
        queue.push(_push.Batch("d1", None, [_Seq(1)]))  # type: ignore[arg-type,list-item]
    assert queue.waiting == 0
