"""Lots folded from the ledger, and the jobs and moves that need them: activation after the
return window, expiry after expiry + the maximum offline window, and moving an account's
points to a customer (an identifier resolved, two customers merged) with their lots intact.

The fold itself (`fold`, `Folded`) and the per-account copy of its result that push keeps up
to date are in `central._lot_state`; `fold_account` folds one account's ledger from the
start, the oracle the kept state is checked against.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from central import _directory, _entries, _lot_state, _push
from central import _tables as t
from central._clock import from_ms, to_ms
from central._lot_state import Folded, LotLeft, fold, lot_dict
from protocol import CENTRAL_DEVICE_ID, EntryKind, LedgerEntry

log = logging.getLogger(__name__)

__all__ = ["Folded", "LotLeft", "fold", "fold_account", "lot_dict"]

lots_per_batch_max = 500
accounts_per_batch_max = 200


def fold_account(conn: sa.Connection, account_key: str) -> Folded:
    rows = conn.execute(
        sa.select(
            t.ledger.c.entry_id, t.ledger.c.amount, t.ledger.c.reverses, t.ledger.c.device_time_ms
        )
        .where(t.ledger.c.account_key == account_key, t.ledger.c.asset == "points")
        .order_by(t.ledger.c.id)
    ).all()
    times = {
        row.lot_id: (row.activates_ms, row.expires_ms)
        for row in conn.execute(
            sa.select(t.lots.c.lot_id, t.lots.c.activates_ms, t.lots.c.expires_ms).where(
                t.lots.c.account_key == account_key
            )
        )
    }
    return fold(list(rows), times)


# --- activation ---------------------------------------------------------------------------


def activate(engine: sa.Engine, now: datetime) -> tuple[int, int | None]:
    """Write an `activate` marker (amount 0) for each lot whose return window has passed.
    Returns (lots activated, lag in ms of the oldest lot still waiting)."""
    now_ms = to_ms(now)
    done = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.select(t.lots.c.lot_id, t.lots.c.account_key)
                .where(
                    t.lots.c.activates_ms <= now_ms,
                    t.lots.c.activated_ms.is_(None),
                    t.lots.c.expired_ms.is_(None),
                )
                .order_by(t.lots.c.activates_ms, t.lots.c.lot_id)
                .limit(lots_per_batch_max)
            ).all()
            if not rows:
                return done, 0
            claimed = conn.execute(
                sa.update(t.lots)
                .where(
                    t.lots.c.lot_id.in_([r.lot_id for r in rows]), t.lots.c.activated_ms.is_(None)
                )
                .values(activated_ms=now_ms)
            ).rowcount
            if claimed != len(rows):
                raise RuntimeError("lots were activated by another run at the same time")
            _entries.write(
                conn,
                [
                    {
                        "kind": EntryKind.activate,
                        "account": _entries.account_of(r.account_key),
                        "amount": 0,
                        "grant_key": f"activate:{r.lot_id}",
                        "reason": f"lot {r.lot_id} is past its return window",
                    }
                    for r in rows
                ],
                now,
            )
            done += len(rows)


# --- expiry -------------------------------------------------------------------------------


def expire(engine: sa.Engine, now: datetime) -> tuple[int, int | None]:
    """Expire what is left of each lot whose expiry is older than the maximum offline window
    (so late offline spending still finds its lots). Returns the lots expired and no lag (a
    job's second number is its lag); the points expired are logged."""
    points = 0
    done = 0
    while True:
        with engine.begin() as conn:
            window = _directory.offline_limits(conn).offline_window_days
            cutoff_ms = to_ms(now - timedelta(days=window))
            rows = conn.execute(
                sa.select(t.lots.c.lot_id, t.lots.c.account_key)
                .where(t.lots.c.expires_ms <= cutoff_ms, t.lots.c.expired_ms.is_(None))
                .order_by(t.lots.c.account_key, t.lots.c.lot_id)
                .limit(lots_per_batch_max)
            ).all()
            if not rows:
                if done:
                    log.info("expired %d points left in %d lots", points, done)
                return done, None
            ids = [r.lot_id for r in rows]
            claimed = conn.execute(
                sa.update(t.lots)
                .where(t.lots.c.lot_id.in_(ids), t.lots.c.expired_ms.is_(None))
                .values(expired_ms=to_ms(now))
            ).rowcount
            if claimed != len(rows):
                raise RuntimeError("lots were expired by another run at the same time")
            specs = []
            for key in sorted({r.account_key for r in rows}):
                folded = fold_account(conn, key)
                for lot_id in sorted(r.lot_id for r in rows if r.account_key == key):
                    left = folded.lots[lot_id][1] if lot_id in folded.lots else 0
                    if left > 0:
                        specs.append(_expiry(key, lot_id, left))
                        points += left
            _entries.write(conn, specs, now)
            done += len(rows)


def _expiry(account_key: str, lot_id: str, left: int) -> dict[str, Any]:
    return {
        "kind": EntryKind.expire,
        "account": _entries.account_of(account_key),
        "amount": -left,
        "reverses": lot_id,
        "grant_key": f"expire:{lot_id}",
        "reason": f"lot {lot_id} expired",
    }


def write_off_left(conn: sa.Connection, now: datetime) -> int:
    """Write off what the fold finds left in lots the expiry job wrote off already (a
    migration's repair: a fold that let spending after an expiry take the expired lot left
    it empty for the job, and the points still valid standing). Returns the lots."""
    written_off = dict(
        conn.execute(
            sa.select(t.lots.c.lot_id, t.lots.c.account_key).where(t.lots.c.expired_ms.is_not(None))
        ).all()
    )
    if not written_off:
        return 0
    specs = []
    states = _lot_state.load(conn, set(written_off.values()))
    for key, folded in sorted(states.items()):
        for lot_id, left, *_ in folded.open_lots():
            if written_off.get(lot_id) == key:
                specs.append({**_expiry(key, lot_id, left), "grant_key": f"expire:{lot_id}:again"})
    _entries.write(conn, specs, now)
    log.info(
        "wrote off %d points left in %d expired lots", -sum(s["amount"] for s in specs), len(specs)
    )
    return len(specs)


# --- moving an account --------------------------------------------------------------------


def lock_for_moves(conn: sa.Connection, account_keys: list[str]) -> None:
    """Take the locks that moving between `account_keys` needs, in the order every writer of
    entries takes them (`central._push`): central's pseudo-device row, then the account rows
    by key. A move that locked its source first could hold an account a push waits for while
    it waits for another that the push holds."""
    _push.lock_epoch(conn, CENTRAL_DEVICE_ID, 1)
    accounts = t.accounts.c
    conn.execute(
        sa.select(accounts.account_key)
        .where(accounts.account_key.in_(sorted(set(account_keys))))
        .order_by(accounts.account_key, accounts.asset)
        .with_for_update()
    ).all()


def move(
    conn: sa.Connection, source_key: str, target_key: str, now: datetime, why: str
) -> list[Any]:
    """Move every asset of `source_key` to `target_key` by `merge` entries; points move lot
    by lot with their activation and expiry, debt moves as debt. Locks both accounts' rows
    (`lock_for_moves`)."""
    lock_for_moves(conn, [source_key, target_key])
    rows = conn.execute(
        sa.select(t.accounts.c.asset, t.accounts.c.balance)
        .where(t.accounts.c.account_key == source_key)
        .order_by(t.accounts.c.asset)
    ).all()
    source = _entries.account_of(source_key)
    target = _entries.account_of(target_key)
    specs: list[dict[str, Any]] = []

    def pair(asset: str, amount: int, **extra: Any) -> None:
        common = {"kind": EntryKind.merge, "asset": asset, "reason": why}
        specs.append({**common, "account": source, "amount": -amount, **extra})
        extra.pop("reverses", None)
        specs.append({**common, "account": target, "amount": amount, **extra})

    for row in rows:
        if row.balance == 0:
            continue
        if row.asset != "points":
            pair(row.asset, int(row.balance))
            continue
        folded = fold_account(conn, source_key)
        for lot_id, left, activates_ms, expires_ms in folded.lots.values():
            if left > 0:
                pair(
                    "points",
                    left,
                    reverses=lot_id,
                    activates_at=None if activates_ms is None else from_ms(activates_ms),
                    expires_at=None if expires_ms is None else from_ms(expires_ms),
                )
        if folded.debt:
            pair("points", -folded.debt)
    made = _entries.write(conn, specs, now)
    now_ms = to_ms(now)
    for entry in made:
        if entry.amount > 0 and entry.activates_at is not None and entry.activates_at <= now:
            conn.execute(
                sa.update(t.lots)
                .where(t.lots.c.lot_id == str(entry.entry_id))
                .values(activated_ms=now_ms)
            )
    return made


def resolve(engine: sa.Engine, now: datetime) -> tuple[int, int | None]:
    """Entries a till recorded against an identifier it did not know: once central knows
    whose identifier it is, move them to that customer. Entries for a customer merged since
    (quarantined at push) are credited to the customer kept. Returns (items moved, 0)."""
    owner = t.identifiers.c.kind + sa.literal(":") + t.identifiers.c.value
    moved = redirect_merged(engine, now)
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.select(t.accounts.c.account_key, t.identifiers.c.customer_id)
                .join(t.identifiers, t.accounts.c.account_key == owner)
                .join(t.customers, t.customers.c.customer_id == t.identifiers.c.customer_id)
                .where(
                    t.accounts.c.balance != 0,
                    t.customers.c.status.in_(["active", "provisional", "blocked"]),
                )
                .distinct()
                .order_by(t.accounts.c.account_key)
                .limit(accounts_per_batch_max)
            ).all()
            if not rows:
                return moved, 0
            # One transaction moves them all: all their locks first, in the one order.
            lock_for_moves(
                conn,
                [row.account_key for row in rows] + [f"customer:{row.customer_id}" for row in rows],
            )
            for row in rows:
                why = f"{row.account_key.split(':')[0]} identifier belongs to {row.customer_id}"
                move(conn, row.account_key, f"customer:{row.customer_id}", now, why)
            moved += len(rows)


def lots_json(folded: Folded) -> str:
    return json.dumps([lot_dict(lot) for lot in folded.open_lots()], sort_keys=True)


merge_hops_max = 5


def _kept(conn: sa.Connection, customer_id: str) -> str | None:
    """The active customer a merged one ended in (following merges), or None."""
    for _ in range(merge_hops_max):
        row = conn.execute(
            sa.select(t.customers.c.status, t.customers.c.merged_into).where(
                t.customers.c.customer_id == customer_id
            )
        ).first()
        if row is None:
            return None
        if row.status != "merged":
            return customer_id if row.status in {"active", "provisional"} else None
        customer_id = row.merged_into
    return None


def redirect_merged(engine: sa.Engine, now: datetime) -> int:
    """Quarantined entries of a merged customer (a till that had not heard of the merge):
    written again by central on the customer kept, keyed by the entry (a one-time grant by
    its own grant key, so it is still granted once); the quarantine item is `redirected`."""
    done = 0
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(t.quarantine.c.id, t.quarantine.c.payload)
            .where(t.quarantine.c.status == "open", t.quarantine.c.reason.like("% is merged"))
            .order_by(t.quarantine.c.id)
            .limit(lots_per_batch_max)
        ).all()
        for row in rows:
            entry = LedgerEntry.model_validate_json(row.payload)
            if entry.account.type != "customer":
                continue
            kept = _kept(conn, entry.account.customer_id)
            if kept is None:
                continue
            key = entry.grant_key or f"redirect:{entry.entry_id}"
            granted = bool(_entries.keys_taken(conn, [key]))
            claimed = conn.execute(
                sa.update(t.quarantine)
                .where(t.quarantine.c.id == row.id, t.quarantine.c.status == "open")
                .values(status="duplicate" if granted else "redirected", resolved_ms=to_ms(now))
            ).rowcount
            if claimed != 1 or granted:
                continue
            spec = entry.model_dump(
                include={"kind", "asset", "amount", "cheque_id", "activates_at", "expires_at"}
            )
            spec.update(
                account=_entries.account_of(f"customer:{kept}"),
                grant_key=key,
                reason=f"entry {entry.entry_id} of merged customer {entry.account.customer_id}",
            )
            _entries.write(conn, [spec], now)
            done += 1
    return done
