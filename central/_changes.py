"""The change log that pull serves, and the full-state snapshot for outdated cursors.

Why a cursor never skips a late commit: every transaction that writes the change log takes
its numbers with `UPDATE counters SET value = value + n ... RETURNING value` as its last
statement before COMMIT. That row lock is held until the transaction ends, so the next writer
gets its numbers only after the previous one has committed (PostgreSQL releases locks after
the commit became visible; SQLite has one writer at a time). Numbers are therefore handed out
in commit order, and what any reader sees is always a gap-free prefix 1..K of the log: a
change numbered below a cursor can never appear after the cursor was handed out.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pydantic_core
import sqlalchemy as sa
from pydantic import TypeAdapter

from central import _bulk, _lot_state
from central import _tables as t
from central._clock import to_ms
from central._lot_state import Folded
from protocol import Change, OfflineLimits, PullResponse, SnapshotPage, SnapshotRequired
from protocol._sync import pull_page_changes_max

_change = TypeAdapter(Change)
Body = dict[str, Any]


_TAKE_NUMBERS = "UPDATE counters SET value = value + %s WHERE name = 'change_seq' RETURNING value"
_LOG = (
    "INSERT INTO change_log (change_seq, first_seq, kind, body, created_ms) "
    "VALUES (%s, %s, %s, %s, %s)"
)


def append(conn: sa.Connection, bodies: list[Body], now_ms: int) -> int:
    """Number `bodies` (each a Change without `change_seq`) and log them as one row; returns
    the last number. Call it last in the transaction: it takes the counter's row lock."""
    if not bodies:
        return 0
    top = int(_bulk.run(conn, (_TAKE_NUMBERS, (len(bodies),), False)).scalar_one())
    kinds = {body["type"] for body in bodies}
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    text = pydantic_core.to_json(bodies).decode()  # compact, UTF-8, keys as built
    _bulk.run(conn, (_LOG, (top, top - len(bodies) + 1, kind, text, now_ms), False))
    return top


_APPEND_PG = (
    "WITH taken AS (UPDATE counters SET value = value + %s WHERE name = 'change_seq' "
    "RETURNING value) INSERT INTO change_log (change_seq, first_seq, kind, body, created_ms) "
    "SELECT value, value - %s + 1, %s, %s, %s FROM taken RETURNING change_seq"
)


def append_deferred(deferred: _bulk.Deferred, bodies: list[Body], now_ms: int) -> int:
    """Send `deferred`'s writes, then `append` the bodies (on PostgreSQL as the last
    statement of the same pipeline). Returns the last number, 0 when there is nothing."""
    if not bodies or not deferred.pg:
        deferred.flush()
        return append(deferred.conn, bodies, now_ms)
    kinds = {body["type"] for body in bodies}
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    text = pydantic_core.to_json(bodies).decode()
    rows = deferred.flush(last=(_APPEND_PG, (len(bodies), len(bodies), kind, text, now_ms), False))
    return int(rows[0][0])


def counter(conn: sa.Connection, name: str) -> int:
    return int(
        conn.execute(sa.select(t.counters.c.value).where(t.counters.c.name == name)).scalar_one()
    )


rows_per_read = 50


log_rows_parsed_bytes_max = 4 * 1024 * 1024
"""How much logged JSON a `ParsedRows` keeps parsed (its objects take several times that)."""


class ParsedRows:
    """Change-log rows parsed lately, by their numbers: a row holds every change of one write
    transaction (a group of pushes: thousands), a page takes at most 1,000, and every till
    pages through the same rows, so without it a row was parsed again for each page of each
    till. Rows never change once committed (a rolled-back one was never read), but for an
    erasure taking a customer's personal data out of them, which shortens them: numbers and
    length name their content; one `ParsedRows` per database. A row longer than `bytes_max`
    is parsed for each page, as without it."""

    def __init__(self, bytes_max: int = log_rows_parsed_bytes_max) -> None:
        self.bytes_max = bytes_max
        self._rows: OrderedDict[tuple[int, int, int], tuple[int, list[Body]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        """The logged JSON of the rows kept parsed now."""
        return self._bytes

    def bodies(self, first_seq: int, change_seq: int, text: str | bytes) -> list[Body]:
        """The row's bodies, shared: callers must not change them."""
        key = (first_seq, change_seq, len(text))
        with self._lock:
            found = self._rows.get(key)
            if found is not None:
                self._rows.move_to_end(key)
                return found[1]
        bodies: list[Body] = orjson.loads(text)
        if len(text) > self.bytes_max:
            return bodies
        with self._lock:
            if key not in self._rows:
                self._rows[key] = (len(text), bodies)
                self._bytes += len(text)
            while self._bytes > self.bytes_max:
                self._bytes -= self._rows.popitem(last=False)[1][0]
        return bodies


def pull(
    conn: sa.Connection,
    since: int,
    limit: int,
    server_time: datetime,
    parsed: ParsedRows | None = None,
) -> bytes | SnapshotRequired:
    """A page of changes after `since`, as the JSON of a `PullResponse`: the bodies go out as
    central logged them, with their numbers, not validated and serialised again (a page of a
    thousand balance changes with their lots cost a busy central more than the rest of the
    pull). `tests/central` parse every page they pull as a `PullResponse`, as tills do.
    `parsed` keeps rows parsed across pages (none: each row is parsed here)."""
    limit = max(1, min(limit, pull_page_changes_max))
    top = counter(conn, "change_seq")
    refused = _cursor_refused(conn, since, top)
    if refused is not None:
        return refused
    rows_parsed = parsed or ParsedRows()
    changes: list[Body] = []
    cursor, more = since, False
    while not more:
        rows = conn.execute(
            sa.select(t.change_log.c.first_seq, t.change_log.c.change_seq, t.change_log.c.body)
            .where(t.change_log.c.change_seq > cursor)
            .order_by(t.change_log.c.change_seq)
            .limit(rows_per_read)
        ).all()
        for row in rows:
            bodies = rows_parsed.bodies(row.first_seq, row.change_seq, row.body)
            skip = cursor + 1 - row.first_seq if cursor >= row.first_seq else 0
            room = limit - len(changes)
            taken = bodies[skip : skip + room]
            changes.extend(
                {**body, "change_seq": row.first_seq + skip + n} for n, body in enumerate(taken)
            )
            cursor = row.first_seq + skip + len(taken) - 1 if taken else cursor
            if len(bodies) - skip > room:  # the page is full and this row goes on
                more = True
                break
        if len(rows) < rows_per_read:
            break
    if not more and len(changes) == limit:
        more = top > cursor
    # Again: on PostgreSQL each statement sees what committed before it, and a prune that
    # committed between the first look and the rows took rows this page would have had.
    refused = _cursor_refused(conn, since, top)
    if refused is not None:
        return refused
    envelope = PullResponse(changes=(), next_cursor=cursor, more=more, server_time=server_time)
    return orjson.dumps({**envelope.model_dump(mode="json"), "changes": changes})


def _cursor_refused(conn: sa.Connection, since: int, top: int) -> SnapshotRequired | None:
    """`SnapshotRequired` for a cursor older than the change log kept or ahead of `top`."""
    floor = counter(conn, "change_floor")
    if floor <= since <= top:
        return None
    why = "older than the retained change log" if since < floor else "ahead of central"
    return SnapshotRequired(
        oldest_cursor=floor, message=f"cursor {since} is {why}; fetch /sync/snapshot"
    )


change_log_retention_days = 90
"""How long the change log keeps a change for pulls (the `prune` job). A till whose cursor is
older, offline that long, takes a snapshot instead (snapshots carry the erasures' tombstones
themselves); an erased customer's tombstone, and the identifiers it names for the tills to
drop, leaves the log with it."""
change_log_rows_per_prune_max = 5_000
"""Change-log rows the `prune` job drops in one transaction."""


def prune_old(engine: sa.Engine, now: datetime) -> tuple[int, int | None]:
    """The `prune` job: drop the change-log rows older than `change_log_retention_days`, in
    transactions of `change_log_rows_per_prune_max` rows. Returns (rows dropped, None)."""
    cutoff_ms = to_ms(now - timedelta(days=change_log_retention_days))
    dropped = 0
    while True:
        with engine.begin() as conn:
            old = (
                conn.execute(
                    sa.select(t.change_log.c.change_seq)
                    .where(t.change_log.c.created_ms < cutoff_ms)
                    .order_by(t.change_log.c.change_seq)
                    .limit(change_log_rows_per_prune_max)
                )
                .scalars()
                .all()
            )
            if old:
                dropped += prune(conn, old[-1])
        if len(old) < change_log_rows_per_prune_max:
            return dropped, None


def prune(conn: sa.Connection, through_seq: int) -> int:
    """Drop changes numbered up to `through_seq`; older cursors then need a snapshot. Returns
    the rows dropped."""
    through_seq = min(through_seq, counter(conn, "change_seq"))
    kept_from = conn.execute(
        sa.select(sa.func.min(t.change_log.c.first_seq)).where(
            t.change_log.c.change_seq > through_seq
        )
    ).scalar_one_or_none()
    if kept_from is not None:  # rows are pruned whole
        through_seq = min(through_seq, kept_from - 1)
    dropped = conn.execute(
        sa.delete(t.change_log).where(t.change_log.c.change_seq <= through_seq)
    ).rowcount
    conn.execute(
        sa.update(t.counters)
        .where(t.counters.c.name == "change_floor", t.counters.c.value < through_seq)
        .values(value=through_seq)
    )
    return int(dropped)


changes_per_ms_max = 1000
"""More than central ever numbers in a millisecond: `restored` numbers changes on from the
wall clock in these units, which a later restore, of the same backup too, starts above."""


def renumber_after_restore(conn: sa.Connection, now_ms: int) -> int:
    """After central was restored from a backup: tills hold cursors past what it has, and it
    would give those numbers to other changes, which a till would then skip. Number changes
    from past any such cursor, and drop the log below, so that every till's next pull is
    answered `snapshot_required`. Returns the new floor.

    The floor is the wall clock in thousandths of a millisecond: the counter starts at zero
    and is only ever moved on from a floor like this one, by fewer changes than the
    milliseconds since times `changes_per_ms_max`, so no cursor is at or past it. A jump by a
    fixed amount would give the same floor to a second restore of the same backup."""
    top = counter(conn, "change_seq")
    prune(conn, top)
    floor = max(top + 1, now_ms * changes_per_ms_max)
    conn.execute(
        sa.update(t.counters)
        .where(t.counters.c.name.in_(("change_seq", "change_floor")))
        .values(value=floor)
    )
    return floor


# --- bodies -------------------------------------------------------------------------------


def account_ref(account_key: str) -> Body:
    kind, _, value = account_key.partition(":")
    field = {"customer": "customer_id", "card": "number", "phone_hash": "phone_hash", "qr": "token"}
    return {"type": kind, field[kind]: value}


lots_per_balance_max = 1000


def balance_body(
    account_key: str, asset: str, balance: int, entries: int, lots: list[Body] | None = None
) -> Body:
    body = {
        "type": "balance",
        "account": account_ref(account_key),
        "asset": asset,
        "balance": balance,
        "entries": entries,
    }
    if lots:
        body["lots"] = lots
    return body


@functools.lru_cache(maxsize=4096)
def _iso(ms: int) -> str:
    """Lot times are whole days: a batch names the same few of them again and again."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


day_ms = 86_400_000


def lots_of(states: Mapping[str, Folded], now_ms: int) -> dict[str, list[Body]]:
    """What a till needs of each account's lots to keep pending points unspendable: the
    points left (spending and debt folded in, as `_lot_state` does), grouped by the day they
    become usable and the day they stop. Activation is rounded up and expiry down to a UTC
    day, so a till may wait a few hours longer than central but never spends early or late,
    and an account with hundreds of lots travels as a handful. Lots usable already (at
    `now_ms`) are usable at once: only future activation is rounded."""
    found: dict[str, list[Body]] = {}
    for key, folded in sorted(states.items()):
        groups: dict[tuple[int, int | None], int] = {}
        plain = 0  # points in lots usable now that never expire, the common case
        for _, left, activates, expires in folded.lots.values():
            if left <= 0:
                continue
            if expires is None and (not activates or activates <= now_ms):
                if not plain:  # the group's place among equals in the sort below
                    groups.setdefault((0, None), 0)
                plain += left
                continue
            usable = 0 if not activates or activates <= now_ms else _day_up(activates)
            ends = None if expires is None else expires // day_ms * day_ms
            groups[(usable, ends)] = groups.get((usable, ends), 0) + left
        if plain:
            groups[(0, None)] += plain
        if len(groups) == 1:
            [((usable, ends), left)] = groups.items()
            found[key] = [_lot_body(usable, ends, left)]
            continue
        ordered = sorted(groups.items(), key=_group_order)
        found[key] = [_lot_body(usable, ends, left) for (usable, ends), left in _at_most(ordered)]
    return found


def _at_most(
    groups: list[tuple[tuple[int, int | None], int]],
) -> list[tuple[tuple[int, int | None], int]]:
    """`groups` (in `_group_order`), at most `lots_per_balance_max` of them: the last ones
    past that go as one, usable when the latest of them is and ending when the first of them
    ends, so that a till still never spends early or late, and the lots add up to the balance."""
    if len(groups) <= lots_per_balance_max:
        return groups
    kept, rest = groups[: lots_per_balance_max - 1], groups[lots_per_balance_max - 1 :]
    usable = max(usable for (usable, _), _ in rest)
    ends = min((ends for (_, ends), _ in rest if ends is not None), default=None)
    return [*kept, ((usable, ends), sum(left for _, left in rest))]


def _day_up(ms: int) -> int:
    return -(-ms // day_ms) * day_ms


def _group_order(group: tuple[tuple[int, int | None], int]) -> tuple[int, int]:
    (usable, ends), _ = group
    return usable, ends or 0


def _lot_body(usable_ms: int, ends_ms: int | None, points: int) -> Body:
    return {
        "lot_id": f"d{usable_ms // day_ms}-{'never' if ends_ms is None else ends_ms // day_ms}",
        "points": points,
        "earned_at": _iso(usable_ms),
        "activates_at": _iso(usable_ms),
        "expires_at": None if ends_ms is None else _iso(ends_ms),
    }


def balance_bodies(
    conn: sa.Connection,
    balances: list[tuple[str, str, int, int]],
    now_ms: int,
    states: Mapping[str, Folded] | None = None,
) -> list[Body]:
    """Balance changes for (account, asset, balance, entries), points ones with their lots
    (from `states` when the caller has the accounts' folds at hand, else as kept)."""
    points = [key for key, asset, _, _ in balances if asset == "points"]
    if states is None:
        states = _lot_state.load(conn, points)
    lots = lots_of({key: states[key] for key in points}, now_ms)
    return [
        balance_body(key, asset, balance, entries, lots.get(key) if asset == "points" else None)
        for key, asset, balance, entries in balances
    ]


def identifier_bodies(conn: sa.Connection, customer_id: str) -> list[Body]:
    return _identifier_bodies(conn, [customer_id]).get(customer_id, [])


def _identifier_bodies(conn: sa.Connection, customer_ids: list[str]) -> dict[str, list[Body]]:
    idents = t.identifiers.c
    rows = conn.execute(
        sa.select(idents.customer_id, idents.kind, idents.value)
        .where(idents.customer_id.in_(customer_ids))
        .order_by(idents.customer_id, idents.kind, idents.value)
    )
    found: dict[str, list[Body]] = {}
    for row in rows:
        found.setdefault(row.customer_id, []).append(account_ref(f"{row.kind}:{row.value}"))
    return found


def grant_customer(grant_key: str) -> str | None:
    """Whose sale earned a one-time grant (the one who must not be offered it again):
    `welcome:<c>`, `referral:<c>` (paid to c's referrer), `birthday:<c>:<year>`."""
    kind, _, rest = grant_key.partition(":")
    if kind == "birthday":
        rest = rest.rpartition(":")[0]
    elif kind not in {"welcome", "referral"}:
        return None
    return rest or None


def grants_received(conn: sa.Connection, customer_id: str) -> list[str]:
    """The grant keys central holds for `customer_id`, sorted."""
    return _grants_received(conn, [customer_id]).get(customer_id, [])


def _grants_received(conn: sa.Connection, customer_ids: list[str]) -> dict[str, list[str]]:
    grants = t.grants.c
    rows = conn.execute(
        sa.select(grants.customer_id, grants.grant_key)
        .where(grants.customer_id.in_(customer_ids))
        .order_by(grants.grant_key)
    )
    found: dict[str, list[str]] = {}
    for customer_id, grant_key in rows:
        found.setdefault(customer_id, []).append(grant_key)
    return found


def granted_bodies(conn: sa.Connection, grant_keys: list[str]) -> list[Body]:
    """Customer changes for the customers whose grants a push just recorded, so every till
    stops offering them."""
    customers = sorted({c for c in map(grant_customer, grant_keys) if c is not None})
    if not customers:  # most batches grant nothing: no query on the push path
        return []
    return customer_bodies(conn, customers)


def customer_body(conn: sa.Connection, customer_id: str) -> Body:
    (body,) = customer_bodies(conn, [customer_id])
    return body


customers_per_query_max = 100
"""Customers whose bodies one set of queries reads (one `LIKE` each for their birthdays)."""


def customer_bodies(conn: sa.Connection, customer_ids: list[str]) -> list[Body]:
    """The change bodies of the customers among `customer_ids` that exist, in that order:
    three queries for each `customers_per_query_max` of them, not three for each."""
    bodies: list[Body] = []
    for start in range(0, len(customer_ids), customers_per_query_max):
        bodies += _customer_bodies(conn, customer_ids[start : start + customers_per_query_max])
    return bodies


def _customer_bodies(conn: sa.Connection, customer_ids: list[str]) -> list[Body]:
    rows = {
        row.customer_id: row
        for row in conn.execute(
            sa.select(t.customers).where(t.customers.c.customer_id.in_(customer_ids))
        )
    }
    present = [c for c in customer_ids if c in rows]
    if not present:
        return []
    grants = _grants_received(conn, present)
    identifiers = _identifier_bodies(conn, present)
    return [_customer_body(rows[c], grants.get(c), identifiers.get(c, [])) for c in present]


def _customer_body(row: Any, grants: list[str] | None, identifiers: list[Body]) -> Body:
    state: Body = {
        "customer_id": row.customer_id,
        "status": row.status,
        "tier": row.tier,
        "birthday": row.birthday,
        "consent_marketing": row.consent_marketing,
        "consent_data": row.consent_data,
        "language": row.language,
        "referred_by": row.referred_by,
        "grants_received": grants or None,
    }
    return {
        "type": "customer",
        "state": {key: value for key, value in state.items() if value is not None},
        "identifiers": identifiers,
        "first_name": row.first_name,
    }


def limits_body(limits: OfflineLimits) -> Body:
    return {"type": "offline_limits", "limits": limits.model_dump(mode="json")}


def rule_set_body(row: Mapping[str, Any]) -> Body:
    return {
        "type": "rule_set",
        "rule_set_id": row["rule_set_id"],
        "content_hash": row["content_hash"],
        "effective_from": row["effective_from"],
        "document": row["document"],
    }


# --- snapshot -----------------------------------------------------------------------------

_SECTIONS = ("offline_limits", "rule_sets", "customers", "erasures", "balances")
"""`erasures`: a tombstone for each erased customer (a till that missed the one in the log
must drop what it cached of them: they are in no other section)."""


def snapshot(
    conn: sa.Connection, page: str | None, limit: int, server_time: Any, limits: OfflineLimits
) -> SnapshotPage:
    """One bounded page of the full state. The page token is `as_of|section|after-key`."""
    limit = max(1, min(limit, pull_page_changes_max))
    if page is None:
        as_of, section, after = counter(conn, "change_seq"), _SECTIONS[0], ""
    else:
        as_text, section, after = page.split("|", 2)
        as_of = int(as_text)
        if section not in _SECTIONS:
            raise ValueError(f"unknown snapshot section {section!r}")
    bodies: list[Body] = []
    next_page: str | None = None
    index = _SECTIONS.index(section)
    while index < len(_SECTIONS) and len(bodies) < limit:
        section = _SECTIONS[index]
        found, last_key = _section(
            conn, section, after, limit - len(bodies), limits, int(server_time.timestamp() * 1000)
        )
        bodies.extend(found)
        if last_key is not None and len(bodies) >= limit:
            next_page = f"{as_of}|{section}|{last_key}"
            break
        index, after = index + 1, ""
    if next_page is None and index < len(_SECTIONS) and len(bodies) >= limit:
        next_page = f"{as_of}|{_SECTIONS[index]}|"
    seq = max(as_of, 1)
    changes = tuple(_change.validate_python({**body, "change_seq": seq}) for body in bodies)
    return SnapshotPage(changes=changes, as_of=as_of, next_page=next_page, server_time=server_time)


def _section(
    conn: sa.Connection,
    section: str,
    after: str,
    limit: int,
    limits: OfflineLimits,
    now_ms: int,
) -> tuple[list[Body], str | None]:
    if section == "offline_limits":
        return ([limits_body(limits)] if after == "" else []), None
    if section == "rule_sets":
        rows = conn.execute(
            sa.select(t.rule_sets)
            .where(t.rule_sets.c.rule_set_id > after)
            .order_by(t.rule_sets.c.rule_set_id)
            .limit(limit)
        ).all()
        return [rule_set_body(dict(row._mapping)) for row in rows], (
            rows[-1].rule_set_id if rows else None
        )
    if section in ("customers", "erasures"):
        erased = t.customers.c.status == "erased"
        ids = conn.execute(
            sa.select(t.customers.c.customer_id)
            .where(
                t.customers.c.customer_id > after,
                erased if section == "erasures" else sa.not_(erased),
            )
            .order_by(t.customers.c.customer_id)
            .limit(limit)
        ).scalars()
        keys = list(ids)
        if section == "erasures":
            bodies = [{"type": "erasure", "customer_id": key, "identifiers": []} for key in keys]
        else:
            bodies = customer_bodies(conn, keys)
        return bodies, (keys[-1] if keys else None)
    account_after, _, asset_after = after.partition("\t")
    rows = conn.execute(
        sa.select(t.accounts)
        .where(
            sa.tuple_(t.accounts.c.account_key, t.accounts.c.asset)
            > sa.tuple_(sa.literal(account_after), sa.literal(asset_after))
        )
        .order_by(t.accounts.c.account_key, t.accounts.c.asset)
        .limit(limit)
    ).all()
    rows_in = [(r.account_key, r.asset, r.balance, r.entries) for r in rows]
    bodies = balance_bodies(conn, rows_in, now_ms)
    last = f"{rows[-1].account_key}\t{rows[-1].asset}" if rows else None
    return bodies, last
