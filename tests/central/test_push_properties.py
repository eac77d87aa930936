"""Replaying, duplicating or reordering any part of an outbox leaves central unchanged."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import _tables as t
from protocol import EntryKind

from .checks import assert_ledger_consistent
from .tills import Hq

slices = st.tuples(st.integers(0, 11), st.integers(1, 6))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    amounts=st.lists(st.integers(-50, 200).filter(bool), min_size=1, max_size=12),
    pushes=st.lists(slices, max_size=12),
)
def test_any_replay_order_lands_each_entry_once(
    hq: Hq, engine: sa.Engine, amounts: list[int], pushes: list[tuple[int, int]]
) -> None:
    hq.customer("c1")
    hq.customer("c2")
    till = hq.enroll()
    outbox = [
        till.entry(
            "c1" if index % 2 else "c2", amount, EntryKind.earn if amount > 0 else EntryKind.burn
        )
        for index, amount in enumerate(amounts)
    ]
    acked = 0
    for start, length in pushes:
        batch = outbox[start : start + length]
        if not batch:
            continue
        response = till.push(batch)
        if batch[0].seq > acked + 1:
            assert response.status_code == 409
            assert response.json()["details"] == {"expected_seq": acked + 1}
            continue
        assert response.status_code == 200, response.text
        for result in response.json()["results"]:
            expected = "duplicate" if result["seq"] <= acked else "applied"
            assert result["outcome"] == expected
        acked = max(acked, batch[-1].seq)
    for start in range(0, len(outbox), 5):  # the till's ordinary retry from its cursor
        assert till.push(outbox[start : start + 5]).status_code == 200
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(t.ledger.c.device_seq, t.ledger.c.payload_sha256)
            .where(t.ledger.c.device_id == till.device_id)
            .order_by(t.ledger.c.device_seq)
        ).all()
    assert [(r.device_seq, r.payload_sha256) for r in stored] == [
        (item.seq, item.payload_sha256) for item in outbox
    ]
    assert_ledger_consistent(engine)
