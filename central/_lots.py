"""Lots folded from the ledger, and the jobs and moves that need them: activation after the
return window, expiry after expiry + the maximum offline window, and moving an account's
points to a customer (an identifier resolved, two customers merged) with their lots intact.

The fold is deterministic: one account's points entries in central's order (`ledger.id`).
A positive entry is a lot (its activation and expiry from `lots`, none when it has no row);
an entry that `reverses` a lot takes from that lot first; any other negative entry takes
from the lots that expire first (never-expiring last), and what no lot covers is debt, which
the next positive entries pay first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from central import _directory, _entries
from central import _tables as t
from central._clock import from_ms, to_ms
from protocol import EntryKind

lots_per_batch_max = 500
accounts_per_batch_max = 200
_never = 2**62


@dataclass
class LotLeft:
    lot_id: str
    left: int
    activates_ms: int | None
    expires_ms: int | None

    def order(self) -> tuple[int, int]:
        return (self.expires_ms if self.expires_ms is not None else _never, 0)


@dataclass
class Folded:
    lots: dict[str, LotLeft]
    debt: int

    @property
    def balance(self) -> int:
        return sum(lot.left for lot in self.lots.values()) - self.debt

    def spendable(self, now_ms: int) -> int:
        """Points usable now: active, unexpired lots, less the debt."""
        active = sum(
            lot.left
            for lot in self.lots.values()
            if (lot.activates_ms or 0) <= now_ms
            and (lot.expires_ms is None or now_ms < lot.expires_ms)
        )
        return max(active - self.debt, 0)


def fold(entries: list[Any], lot_times: dict[str, tuple[int | None, int | None]]) -> Folded:
    """`entries`: rows with entry_id, amount, reverses, in ledger order (points only)."""
    lots: dict[str, LotLeft] = {}
    debt = 0
    for entry in entries:
        amount = int(entry.amount)
        if amount > 0:
            paid = min(debt, amount)
            debt -= paid
            activates, expires = lot_times.get(entry.entry_id, (None, None))
            lots[entry.entry_id] = LotLeft(entry.entry_id, amount - paid, activates, expires)
            continue
        need = -amount
        first = lots.get(entry.reverses) if entry.reverses else None
        queue = sorted(
            (lot for lot in lots.values() if lot.left > 0 and lot is not first),
            key=LotLeft.order,
        )
        for lot in [first, *queue] if first is not None else queue:
            taken = min(lot.left, need)
            lot.left -= taken
            need -= taken
            if need == 0:
                break
        debt += need
    return Folded(lots, debt)


def fold_account(conn: sa.Connection, account_key: str) -> Folded:
    rows = conn.execute(
        sa.select(t.ledger.c.entry_id, t.ledger.c.amount, t.ledger.c.reverses)
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
    (so late offline spending still finds its lots). Returns (lots expired, points expired)."""
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
                return done, points
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
                    left = folded.lots[lot_id].left if lot_id in folded.lots else 0
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


# --- moving an account --------------------------------------------------------------------


def move(
    conn: sa.Connection, source_key: str, target_key: str, now: datetime, why: str
) -> list[Any]:
    """Move every asset of `source_key` to `target_key` by `merge` entries; points move lot
    by lot with their activation and expiry, debt moves as debt. Locks the source's rows."""
    rows = conn.execute(
        sa.select(t.accounts.c.asset, t.accounts.c.balance)
        .where(t.accounts.c.account_key == source_key)
        .order_by(t.accounts.c.asset)
        .with_for_update()
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
        for lot in folded.lots.values():
            if lot.left > 0:
                pair(
                    "points",
                    lot.left,
                    reverses=lot.lot_id,
                    activates_at=None if lot.activates_ms is None else from_ms(lot.activates_ms),
                    expires_at=None if lot.expires_ms is None else from_ms(lot.expires_ms),
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
    whose identifier it is, move them to that customer. Returns (accounts moved, 0)."""
    owner = t.identifiers.c.kind + sa.literal(":") + t.identifiers.c.value
    moved = 0
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
            for row in rows:
                why = f"{row.account_key.split(':')[0]} identifier belongs to {row.customer_id}"
                move(conn, row.account_key, f"customer:{row.customer_id}", now, why)
            moved += len(rows)


def lots_json(folded: Folded) -> str:
    return json.dumps(
        [lot.__dict__ for lot in folded.lots.values() if lot.left > 0], sort_keys=True
    )
