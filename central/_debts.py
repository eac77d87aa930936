"""Overspend found at push: push records the debt in the batch's transaction (`debts`);
this job files a conflict for HQ about each one, naming the entry that overdrew."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from central import _recompute
from central import _tables as t
from central._clock import to_ms

debts_per_batch_max = 500


def report(engine: sa.Engine, now: datetime) -> tuple[int, int | None]:
    """Returns (debts reported, lag in ms of the oldest debt not yet reported)."""
    now_ms = to_ms(now)
    done = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.select(
                    t.debts.c.id.label("debt_id"),
                    t.debts.c.account_key,
                    t.debts.c.asset,
                    t.debts.c.balance,
                    t.debts.c.entry_id,
                    t.ledger.c.device_id,
                    t.ledger.c.device_epoch,
                    t.ledger.c.device_seq,
                    t.ledger.c.payload,
                    t.ledger.c.payload_sha256,
                )
                .join(t.ledger, t.ledger.c.entry_id == t.debts.c.entry_id)
                .where(t.debts.c.reported_ms.is_(None))
                .order_by(t.debts.c.id)
                .limit(debts_per_batch_max)
            ).all()
            if not rows:
                return done, 0
            for row in rows:
                claimed = conn.execute(
                    sa.update(t.debts)
                    .where(t.debts.c.id == row.debt_id, t.debts.c.reported_ms.is_(None))
                    .values(reported_ms=now_ms)
                ).rowcount
                if claimed != 1:
                    continue
                detail = {
                    "account_key": row.account_key,
                    "asset": row.asset,
                    "balance": row.balance,
                    "debt_id": row.debt_id,
                }
                _recompute.alert(conn, "overspend", row, row.entry_id, detail, now_ms)
                done += 1
