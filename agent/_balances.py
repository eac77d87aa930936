"""The cashier's view of an account: central's last word plus this till's own entries.

An entry counts here until a pull has brought central's balance that includes it (the pull
cursor has reached the change seq central gave when it acknowledged the entry), so points
never vanish between the push and the next pull, nor count twice after it.
"""

from __future__ import annotations

from datetime import datetime

import sqlite_utils

from agent._allowance import OfflineSpent
from agent._cache import CachedCustomer, utc_iso
from agent._models import BalanceView
from protocol import Lot, spendable_points

_NOT_PULLED_YET = (
    "(state = 'local' OR (state = 'acknowledged' AND COALESCE(ack_change_seq, 0) > ?))"
)
_UNREFLECTED = f"record = 'entry' AND asset = 'points' AND {_NOT_PULLED_YET}"


def pull_cursor(db: sqlite_utils.Database) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'pull_cursor'").fetchone()
    return int(row[0]) if row else 0


def balance_view(
    db: sqlite_utils.Database,
    key: str,
    cached: CachedCustomer | None,
    now: datetime,
    cursor: int | None = None,
) -> BalanceView:
    """`cursor`: the pull cursor, when the caller has read it already. An entry central
    acknowledged counts here until the cursor, or the change that brought the cached points
    balance (a snapshot's, whose cursor comes only with its last page), reaches it."""
    return seen_here(db, key, cached, now, cursor)[0]


def seen_here(
    db: sqlite_utils.Database,
    key: str,
    cached: CachedCustomer | None,
    now: datetime,
    cursor: int | None = None,
) -> tuple[BalanceView, Lot | None]:
    """The view (`balance_view`), and the points this till's own entries made active that
    central's lots do not have yet (a grant, spent points a refund gave back), and that have
    not expired, as one lot: spendable at once, here as at central."""
    reflected_to = pull_cursor(db) if cursor is None else cursor
    if cached is not None:
        reflected_to = max(reflected_to, cached.points_seq)
    stamp = utc_iso(now)
    local, local_pending, local_active, held = db.execute(
        "SELECT COALESCE(SUM(amount), 0), "
        "COALESCE(SUM(CASE WHEN activates_at > ? THEN amount ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN {_OWN_ACTIVE} THEN amount ELSE 0 END), 0), "
        "(SELECT COALESCE(SUM(points_held), 0) FROM cheques "
        " WHERE account_key = ? AND state = 'reserved') "
        f"FROM outbox WHERE account_key = ? AND {_UNREFLECTED}",
        [stamp, stamp, key, key, reflected_to],
    ).fetchone()
    central, central_pending, credit = 0, 0, None
    if cached is not None:
        central = cached.state.points_balance
        central_pending = sum(lot.points for lot in cached.state.lots if lot.activates_at > now)
        if local_active and cached.state.lots:
            credit = _own_credit(db, key, now, reflected_to)
    balance = central + int(local)
    pending = max(central_pending + int(local_pending), 0)
    spendable = balance - pending
    if cached is None:  # an identifier no customer has: it earns, and spends nothing
        spendable = 0
    elif cached.state.lots:  # as the evaluator lets spend: active lots, the till's own too
        state = cached.state
        if credit is not None:  # a copy only then: every sale and identify comes here
            state = state.model_copy(update={"lots": (*state.lots, credit)})
        spendable = min(spendable, spendable_points(state, now, balance))
    view = BalanceView(
        balance=balance,
        available=spendable - int(held),
        pending=pending,
        held=int(held),
        local_unsynced=int(local),
    )
    return view, credit


_OWN_ACTIVE = "amount > 0 AND (activates_at IS NULL OR activates_at <= ?)"
"""A credit of the till's own, active now (the outbox's index has all it reads)."""


def _own_credit(
    db: sqlite_utils.Database, key: str, now: datetime, reflected_to: int
) -> Lot | None:
    """The till's own active credits not yet reflected, less those expired, as one lot. Only
    asked when there are such credits: their expiry is in the payload, off the index."""
    points = db.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM outbox "
        f"WHERE account_key = ? AND {_UNREFLECTED} AND {_OWN_ACTIVE} "
        "AND COALESCE(julianday(json_extract(payload, '$.expires_at')) > julianday(?), 1)",
        [key, reflected_to, utc_iso(now), utc_iso(now)],
    ).fetchone()[0]
    if not points:
        return None
    return Lot(lot_id="till", points=int(points), earned_at=now, activates_at=now)


def counters_here(
    db: sqlite_utils.Database, key: str, cursor: int, seqs: str = "{}"
) -> dict[str, int]:
    """What this till's own counter entries (purchases, stamps, rolling spend) added to the
    account's counters that central's cached state does not include yet: by the same rule as
    the points of `balance_view`, so that a counter reward is not given again on every sale
    until the next pull. `seqs`: the cached customer's `counter_seqs`, the change that
    brought each counter (a snapshot's page brings them before the cursor moves)."""
    rows = db.execute(
        "SELECT asset, SUM(amount) FROM outbox WHERE account_key = ?1 AND record = 'entry' "
        "AND kind = 'counter' AND (state = 'local' OR (state = 'acknowledged' AND "
        "COALESCE(ack_change_seq, 0) > max(?2, "
        "COALESCE(json_extract(?3, '$.\"' || asset || '\"'), 0)))) GROUP BY asset",
        [key, cursor, seqs],
    ).fetchall()
    return {str(asset): int(total) for asset, total in rows if total}


def offline_spent(db: sqlite_utils.Database, key: str) -> OfflineSpent:
    """Points spent and held offline, not yet known to central: per customer and per till
    (the till's burns from the running total schema 7 keeps, not summed per sale)."""
    burns = (
        "SELECT COALESCE(SUM(-amount), 0) FROM outbox INDEXED BY outbox_offline_burns "
        "WHERE record = 'entry' AND kind = 'burn' AND offline = 1 AND state = 'local'"
    )
    holds = (
        "SELECT COALESCE(SUM(points_held), 0) FROM cheques "
        "WHERE state = 'reserved' AND hold_mode = 'offline'"
    )
    till_burns, till_holds, burns_here, holds_here = db.execute(
        f"SELECT (SELECT points FROM offline_burns), ({holds}), ({burns} AND account_key = ?1), "
        f"({holds} AND account_key = ?1)",
        [key],
    ).fetchone()
    till, customer = till_burns + till_holds, burns_here + holds_here
    return OfflineSpent(customer=int(customer), till=int(till))
