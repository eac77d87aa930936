"""Invariant checks straight on central's tables."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from central import _tables as t


def folded(conn: sa.Connection) -> dict[tuple[str, str], int]:
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for row in conn.execute(sa.select(t.ledger.c.account_key, t.ledger.c.asset, t.ledger.c.amount)):
        sums[(row.account_key, row.asset)] += row.amount
    return dict(sums)


def assert_ledger_consistent(engine: sa.Engine) -> dict[tuple[str, str], int]:
    """Invariants 1 and 2: balances are the fold of entries; seqs run 1..N per device epoch."""
    with engine.connect() as conn:
        balances = {
            (r.account_key, r.asset): r.balance for r in conn.execute(sa.select(t.accounts))
        }
        counts = {(r.account_key, r.asset): r.entries for r in conn.execute(sa.select(t.accounts))}
        assert balances == folded(conn)
        per_account: dict[tuple[str, str], int] = defaultdict(int)
        for row in conn.execute(sa.select(t.ledger.c.account_key, t.ledger.c.asset)):
            per_account[(row.account_key, row.asset)] += 1
        assert counts == dict(per_account)
        seqs: dict[tuple[str, int], list[int]] = defaultdict(list)
        for table in (t.ledger, t.cheques, t.quarantine):
            rows = conn.execute(
                sa.select(table.c.device_id, table.c.device_epoch, table.c.device_seq)
            )
            for row in rows:
                seqs[(row.device_id, row.device_epoch)].append(row.device_seq)
        acked = {
            (r.device_id, r.epoch): r.acked_seq for r in conn.execute(sa.select(t.device_epochs))
        }
        for key, found in seqs.items():
            assert sorted(found) == list(range(1, len(found) + 1)), key
            assert acked[key] == len(found), key
    return balances
