"""Invariant checks straight on central's tables."""

from __future__ import annotations

import itertools
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
    """The lot state push keeps per account equals the fold of that account's ledger: every
    account folded from one ordered read of the points entries (one query per account made
    a check of 100,000 imported customers take two minutes), and `_lots.fold_account`, the
    jobs' per-account fold, agreeing on some of them."""
    times: _lot_state.LotTimes = {
        lot_id: (activates, expires)
        for lot_id, activates, expires in conn.execute(
            sa.select(t.lots.c.lot_id, t.lots.c.activates_ms, t.lots.c.expires_ms)
        )
    }
    ledger = t.ledger.c
    rows = conn.execute(
        sa.select(
            ledger.account_key,
            ledger.entry_id,
            ledger.amount,
            ledger.reverses,
            ledger.device_time_ms,
        )
        .where(ledger.asset == "points")
        .order_by(ledger.account_key, ledger.id)
    )
    ledger_folds = {
        key: _lot_state.fold(list(entries), times)
        for key, entries in itertools.groupby(rows, key=lambda row: row.account_key)
    }
    keys = set(ledger_folds) | set(conn.execute(sa.select(t.lot_states.c.account_key)).scalars())
    kept = _lot_state.load(conn, keys)
    empty = _lot_state.Folded({}, 0)
    for key in sorted(keys):
        assert open_lots(kept[key]) == open_lots(ledger_folds.get(key, empty)), key
    for key in sorted(keys)[:fold_account_checks_max]:
        assert open_lots(_lots.fold_account(conn, key)) == open_lots(kept[key]), key


fold_account_checks_max = 20


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
