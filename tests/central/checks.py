"""Invariant checks straight on central's tables."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from central import _lot_state, _lots
from central import _tables as t


def folded(conn: sa.Connection) -> dict[tuple[str, str], int]:
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for row in conn.execute(sa.select(t.ledger.c.account_key, t.ledger.c.asset, t.ledger.c.amount)):
        sums[(row.account_key, row.asset)] += row.amount
    return dict(sums)


def open_lots(
    folded: _lot_state.Folded,
) -> tuple[int, list[tuple[str, int, int | None, int | None]]]:
    """A fold as comparable data: debt, and the lots with points left in fold order."""
    lots = [
        (lot_id, left, activates, expires)
        for lot_id, left, activates, expires in folded.lots.values()
        if left > 0
    ]
    return folded.debt, lots


def assert_lot_states_kept(conn: sa.Connection) -> None:
    """The lot state push keeps per account equals the fold of that account's ledger."""
    keys = set(
        conn.execute(sa.select(t.ledger.c.account_key).where(t.ledger.c.asset == "points"))
        .scalars()
        .all()
    )
    keys |= set(conn.execute(sa.select(t.lot_states.c.account_key)).scalars().all())
    kept = _lot_state.load(conn, keys)
    for key in sorted(keys):
        assert open_lots(kept[key]) == open_lots(_lots.fold_account(conn, key)), key


def assert_ledger_consistent(engine: sa.Engine) -> dict[tuple[str, str], int]:
    """Invariants 1 and 2: balances are the fold of entries; seqs run 1..N per device epoch;
    the lots kept per account are the fold of its entries."""
    with engine.connect() as conn:
        assert_lot_states_kept(conn)
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
