"""Push: a till's outbox batch applied to the ledger in one transaction.

Order of locks, the same in every transaction, so several central processes on one
PostgreSQL never deadlock on them: the device epoch row (FOR UPDATE: one device's batches go
one after another; a group of batches locks all of theirs, by device), central's
pseudo-device row (only when central writes an entry of its own), account rows in
(account_key, asset) order, and the change counter last.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

import pydantic_core
import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError

from central import _bulk, _changes, _erasure, _holds, _lot_state, _plain_entries
from central import _tables as t
from central._clock import Clock, to_ms
from central._directory import Refused
from protocol import (
    CENTRAL_DEVICE_ID,
    ChequeDocument,
    CustomerAccount,
    EntryKind,
    LedgerEntry,
    OutboxRecord,
    PushRequest,
    PushResponse,
    PushResult,
    SignupRecord,
    account_key,
    canonical_json,
    new_entry_id,
    sha256_hex,
)
from protocol._base import points_max
from protocol._sync import ItemOutcome

_record = TypeAdapter(OutboxRecord)
transaction_attempts_max = 4
_retryable_sqlstates = {"40P01", "40001"}  # deadlock detected, serialization failure
LOT_KINDS = frozenset(
    {EntryKind.earn, EntryKind.welcome, EntryKind.birthday, EntryKind.referral, EntryKind.import_}
)
APPLICABLE_STATUSES = frozenset({"active", "provisional"})


@dataclass(slots=True)
class _Item:
    """One pushed record, with what push writes of it made before the transaction (outside
    the writer lock on SQLite): the ledger row but its `received_ms`, the posting to its
    account, its `lots` row."""

    seq: int
    payload: bytes
    sha256: str
    record: LedgerEntry | _plain_entries.PlainEntry | ChequeDocument | None
    problem: str | None  # why the payload cannot be read (it is quarantined)
    record_id: str | None = field(init=False, default=None)
    ledger: tuple[Any, ...] | None = field(init=False, default=None)
    posting: _lot_state.Posting | None = field(init=False, default=None)
    lot: dict[str, Any] | None = field(init=False, default=None)
    customer_id: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        record = self.record
        if isinstance(record, _plain_entries.PlainEntry):
            self.record_id = record.entry_id
            self.ledger = record.ledger
            self.posting = _lot_state.Posting(*_posting_fields(record.ledger))
            self.customer_id = record.customer_id
        elif isinstance(record, LedgerEntry):
            self.record_id = str(record.entry_id)
            self.ledger = _ledger_values(record, self.payload, self.sha256, self.record_id)
            self.posting = _lot_state.Posting(*_posting_fields(self.ledger))
            self.lot = _lot_row(record) if is_lot(record) else None
            if isinstance(record.account, CustomerAccount):
                self.customer_id = record.account.customer_id
        elif isinstance(record, ChequeDocument):
            self.record_id = str(record.document_id)


@dataclass
class Conflict(Exception):
    """A known seq or id came with another payload: refused, and kept as an alarm."""

    kind: str
    device_id: str
    device_epoch: int
    device_seq: int
    record_id: str | None
    stored_sha256: str | None
    incoming_sha256: str
    incoming_payload: bytes = field(repr=False)

    def refusal(self) -> Refused:
        what = "seq" if self.kind == "seq_payload_mismatch" else f"id {self.record_id}"
        return Refused(
            409,
            "conflict",
            f"{what} of device {self.device_id} epoch {self.device_epoch} seq {self.device_seq} "
            "is already at central with a different payload; recorded as a conflict",
            {"seq": self.device_seq, "kind": self.kind},
        )


def read_items(device_id: str, request: PushRequest) -> list[_Item]:
    """Check hashes and parse payloads outside the transaction (pure CPU work)."""
    items = []
    for pushed in request.items:
        payload = pushed.payload.encode("utf-8")
        digest = sha256_hex(payload)
        if digest != pushed.payload_sha256:
            raise Refused(
                422,
                "payload_hash_mismatch",
                f"payload_sha256 of seq {pushed.seq} is not the SHA-256 of its payload bytes",
                {"seq": pushed.seq},
            )
        plain = _plain_entries.read(payload, digest)
        record, problem = (plain, None) if plain is not None else _parse(payload)
        claimed = record.device_id if record is not None else _claimed_device(payload)
        if claimed is not None and claimed != device_id:
            raise Refused(
                403,
                "wrong_device",
                f"seq {pushed.seq} is a record of device {claimed!r}; a device pushes its own",
                {"seq": pushed.seq},
            )
        if record is not None and (record.device_epoch, record.device_seq) != (
            request.device_epoch,
            pushed.seq,
        ):
            raise Refused(
                422,
                "seq_mismatch",
                f"the payload at seq {pushed.seq} says epoch {record.device_epoch} "
                f"seq {record.device_seq}",
                {"seq": pushed.seq},
            )
        items.append(_Item(pushed.seq, payload, digest, record, problem))
    return items


def _parse(payload: bytes) -> tuple[LedgerEntry | ChequeDocument | None, str | None]:
    try:
        record = _record.validate_json(payload)
    except ValidationError as error:
        if _scrubbed_signup(payload):
            return None, "sign-up at a till of a customer erased there since: nothing to create"
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return None, f"unreadable payload: {where}: {first['msg']}"[:500]
    if isinstance(record, SignupRecord):
        return None, "sign-up at a till: kept for HQ to create the customer"
    return record, None


def _scrubbed_signup(payload: bytes) -> bool:
    """A sign-up record as a till keeps it once the customer was erased there (no name, no
    identifiers): it reaches central only when central lost it, restored from a backup."""
    try:
        data = json.loads(payload)
    except ValueError:
        return False
    return (
        isinstance(data, dict) and data.get("record") == "signup" and data.get("identifiers") == []
    )


def _claimed_device(payload: bytes) -> str | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    claimed = data.get("device_id") if isinstance(data, dict) else None
    return claimed if isinstance(claimed, str) else None


@dataclass(frozen=True)
class Pushed:
    """What push answers: a `PushResponse`, kept as plain values until it is sent."""

    acked_through: int
    change_seq: int
    outcomes: list[Outcome]
    server_time: datetime
    balance_seqs: dict[str, int] = field(default_factory=dict)

    def response(self) -> PushResponse:
        results = [PushResult(seq=s, outcome=o, reason=r) for s, o, r in self.outcomes]
        return PushResponse(
            acked_through=self.acked_through,
            change_seq=self.change_seq,
            results=tuple(results),
            server_time=self.server_time,
            balance_seqs=self.balance_seqs,
        )

    def json(self) -> bytes:
        """`self.response().model_dump_json()`, without a model per result."""
        results = [{"seq": s, "outcome": o.value, "reason": r} for s, o, r in self.outcomes]
        body = {
            "acked_through": self.acked_through,
            "change_seq": self.change_seq,
            "results": results,
            "server_time": self.server_time,
            "balance_seqs": self.balance_seqs,
        }
        return pydantic_core.to_json(body)


@dataclass(eq=False, slots=True)
class Batch:
    """One device's push on its way to the writer: what it asks (its items read already)
    and, once its group's transaction ended, its answer or its refusal."""

    device_id: str
    request: PushRequest
    items: list[_Item]
    done: Pushed | None = None
    error: Exception | None = None

    def answer(self) -> Pushed:
        if self.error is not None:
            raise self.error
        if self.done is None:
            raise AssertionError("a batch was answered before its group was written")
        return self.done


def push(
    engine: sa.Engine,
    device_id: str,
    request: PushRequest,
    clock: Clock,
    items: list[_Item] | None = None,
    writing: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> Pushed:
    """Apply one batch; the whole batch or nothing. Raises Refused. `items` are the batch's
    `read_items`, when the caller read them already; `writing` is held around the
    transaction (the writer lock on SQLite), and `clock` read inside it."""
    if items is None:
        items = read_items(device_id, request)
    batch = Batch(device_id, request, items)
    push_group(engine, [batch], clock, writing)
    return batch.answer()


def push_group(
    engine: sa.Engine,
    batches: list[Batch],
    clock: Clock,
    writing: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> None:
    """Apply several devices' batches in one write transaction (group commit): one commit
    for all of them, and each account's kept lots read and written once, its balance logged
    once. Each batch is still all or nothing: with more than one, each is applied inside a
    SAVEPOINT, and a batch refused there (a gap, a conflict, a revoked device) is rolled
    back to it without undoing the others. Sets every batch's `done` or `error`, only after
    the transaction ended; a failure of the transaction itself is every batch's error."""
    with writing(), _collector_paused():
        now = clock()
        try:
            answers = _group_transaction(engine, batches, now)
        except Exception as error:  # noqa: BLE001  # each waiting request answers with it
            for batch in batches:
                batch.error = error
            return
    for batch, answer in zip(batches, answers, strict=True):
        if isinstance(answer, Exception):
            batch.error = answer
        else:
            batch.done = answer


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while a group is written. The group holds what it reads until
    its commit (every touched account's kept lots: tens of thousands of lists in a group of
    16 batches), so the collector, run every `_serve.gc_young_objects_max` allocations, went
    through them again and again and found nothing to free: they are freed by their
    reference counts when the group ends, and the collector runs on its schedule again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _group_transaction(
    engine: sa.Engine, batches: list[Batch], now: datetime
) -> list[Pushed | Exception]:
    saving = len(batches) > 1
    look_up_ids = False
    failed: dict[int, Exception] = {}  # batches that failed after changing the group's state
    attempts = 0
    while True:
        attempts += 1
        try:
            with engine.begin() as conn:
                # First try trusts the UNIQUE constraints to catch a reused id; a retry
                # (after any IntegrityError) looks the ids up to name the conflict.
                group = _Group(conn, to_ms(now))
                if saving and group.deferred.pg:
                    group.locked = _lock_group(
                        conn, [b for i, b in enumerate(batches) if i not in failed], group.now_ms
                    )
                    group.accounts = {}  # locked already: held in memory, written once
                answers: dict[int, list[Outcome] | Exception] = dict(failed)
                for index, batch in enumerate(batches):
                    if index not in failed:
                        answers[index] = group.apply(index, batch, now, saving, look_up_ids)
                watermark, numbers = group.finish()
            pushed: list[Pushed | Exception] = []
            for index, batch in enumerate(batches):
                answer = answers[index]
                if isinstance(answer, Exception):
                    pushed.append(answer)
                    continue
                seqs = group.balance_seqs(index, numbers)
                pushed.append(Pushed(batch.items[-1].seq, watermark, answer, now, seqs))
            return pushed
        except _Redo as redo:  # rolled back; again without it, or looking up its ids first
            if isinstance(redo.error, sa.exc.IntegrityError) and not look_up_ids:
                look_up_ids = True
            elif isinstance(redo.error, Conflict):
                record_conflict(engine, redo.error, to_ms(now))
                failed[redo.index] = redo.error.refusal()
            else:
                failed[redo.index] = redo.error
            if len(failed) == len(batches):
                return [failed[index] for index in range(len(batches))]
        except Conflict as conflict:  # a group of one: rolled back whole, then recorded
            record_conflict(engine, conflict, to_ms(now))
            raise conflict.refusal() from None
        except (sa.exc.OperationalError, sa.exc.IntegrityError) as error:
            state = getattr(error.orig, "sqlstate", None)
            retry = isinstance(error, sa.exc.IntegrityError) or state in _retryable_sqlstates
            if not retry or attempts >= transaction_attempts_max:
                raise
            look_up_ids = True


_LOCK_EPOCHS = (
    "SELECT 1 FROM device_epochs JOIN unnest(%b::text[], %b::bigint[])"
    " WITH ORDINALITY AS k(device_id, epoch, row_order) USING (device_id, epoch)"
    " ORDER BY row_order FOR UPDATE OF device_epochs"
)
"""Locks the epoch rows in the order given."""
_UNUSED_ACCOUNTS = (
    "DELETE FROM accounts USING unnest(%b::text[], %b::text[]) AS k(account_key, asset)"
    " WHERE accounts.account_key = k.account_key AND accounts.asset = k.asset"
    " AND accounts.entries = 0"
)


def _lock_group(conn: sa.Connection, batches: list[Batch], now_ms: int) -> list[tuple[str, str]]:
    """PostgreSQL, several batches in one transaction: lock the rows they will lock, in the
    module's order across the whole group, before any batch runs: every device epoch row
    (by device), central's pseudo-device row when an entry carries a grant key (its second
    payment is reversed by central), then every account row the entries move, by key (an
    account not there yet is made empty, in its place in the order: an upsert that changes
    nothing but locks). Each batch then takes its own locks again, held already, so two
    processes writing groups never wait on each other in a cycle. Returns the accounts
    locked; those no batch moved in the end (refused, quarantined) go again if they were
    made here (`_Group.finish`)."""
    epochs = sorted({(batch.device_id, batch.request.device_epoch) for batch in batches})
    if any(
        isinstance(item.record, LedgerEntry) and item.record.grant_key is not None
        for batch in batches
        for item in batch.items
    ):
        epochs.append((CENTRAL_DEVICE_ID, 1))
    if epochs:
        devices, numbers = zip(*epochs, strict=True)
        arrays = (_bulk.pg_array(devices), _bulk.pg_array(numbers))
        _bulk.run(conn, (_LOCK_EPOCHS, arrays, False))
    accounts = sorted(
        {
            (item.posting.account_key, item.posting.asset)
            for batch in batches
            for item in batch.items
            if item.posting is not None
        }
    )
    if accounts:
        rows = [(key, asset, 0, 0, now_ms) for key, asset in accounts]
        sql, params, many = _bulk.upsert_statement(
            t.accounts, _ACCOUNT_COLUMNS, rows, ("account_key", "asset"), _LOCK_ONLY, (), True
        )
        _bulk.run(conn, (f"{sql} WHERE false", params, many))
    return accounts


_LOCK_ONLY = {"balance": "accounts.balance"}
"""With `WHERE false`: PostgreSQL locks the row it conflicts with and changes nothing."""


@dataclass
class _Redo(Exception):
    """A batch of a group failed after it folded its entries into the group's kept lots:
    the transaction is rolled back and done again (without it, or with its ids looked up)."""

    index: int
    error: Exception


@dataclass(slots=True)
class _Changed:
    """What one applied batch changed that the group logs once: the new (balance, entries)
    of its accounts, the grant keys it recorded."""

    balances: dict[tuple[str, str], tuple[int, int]]
    granted: list[str]


class _Group:
    """The batches of one write transaction, and what they changed so far."""

    def __init__(self, conn: sa.Connection, now_ms: int) -> None:
        self.conn = conn
        self.now_ms = now_ms
        self.deferred = _bulk.Deferred(conn)
        self.kept = _lot_state.Kept(conn)
        self.accounts: dict[tuple[str, str], tuple[int, int]] | None = (
            None if self.deferred.pg else {}
        )
        """The (balance, entries) of the accounts the group moved, read once and written
        once at `finish`: on SQLite (one writer), and on PostgreSQL once `_lock_group` holds
        them. A PostgreSQL batch written alone upserts its accounts instead, which takes
        their row locks in key order (see the module's docstring)."""
        self.moves = 0
        """Batches that changed `accounts` or `kept` in place: one of them failing after
        that cannot be rolled back to its savepoint alone."""
        self.balances: dict[tuple[str, str], tuple[int, int]] = {}
        self.granted: list[str] = []
        self.locked: list[tuple[str, str]] = []
        """The accounts `_lock_group` locked (PostgreSQL, a group of several batches)."""
        self.moved: dict[int, list[tuple[str, str]]] = {}
        """The accounts each batch (by index) moved."""

    def apply(
        self, index: int, batch: Batch, now: datetime, saving: bool, look_up_ids: bool
    ) -> list[Outcome] | Exception:
        """The batch's outcomes. With `saving`, inside a SAVEPOINT, and a refusal is
        returned (the batch rolled back to it) instead of raised; `_Redo` when the batch
        failed after it changed the group's kept lots."""
        if not saving:
            outcomes, changed = _apply(self, batch, now, look_up_ids)
            self._adopt(index, changed)
            return outcomes
        moves = self.moves
        savepoint = self.conn.begin_nested()
        try:
            outcomes, changed = _apply(self, batch, now, look_up_ids)
            self.deferred.flush()
        except (Conflict, Refused, sa.exc.IntegrityError) as error:
            self.deferred.statements.clear()
            savepoint.rollback()
            if self.moves != moves or isinstance(error, sa.exc.IntegrityError):
                raise _Redo(index, error) from error
            if isinstance(error, Conflict):
                _record_conflict(self.conn, error, self.now_ms)
                return error.refusal()
            return error
        savepoint.commit()
        self._adopt(index, changed)
        return outcomes

    def _adopt(self, index: int, changed: _Changed) -> None:
        self.balances.update(changed.balances)
        self.granted += changed.granted
        self.moved[index] = list(changed.balances)

    def balance_seqs(self, index: int, numbers: dict[tuple[str, str], int]) -> dict[str, int]:
        """`PushResponse.balance_seqs` of batch `index`: its accounts' balance changes."""
        moved = self.moved.get(index, ())
        return {f"{key} {asset}": numbers[key, asset] for key, asset in moved}

    def finish(self) -> tuple[int, dict[tuple[str, str], int]]:
        """Write the kept lots and log the group's changes: the last change number, and the
        number of each moved account's balance change."""
        conn, now_ms = self.conn, self.now_ms
        unmoved = [key for key in self.locked if key not in self.balances]
        if unmoved:
            keys, assets = zip(*unmoved, strict=True)
            arrays = (_bulk.pg_array(keys), _bulk.pg_array(assets))
            _bulk.run(conn, (_UNUSED_ACCOUNTS, arrays, False))
        if self.accounts:
            held = [(k, a, b, n, now_ms) for (k, a), (b, n) in sorted(self.accounts.items())]
            self.deferred.upsert(
                t.accounts, _ACCOUNT_COLUMNS, held, ("account_key", "asset"), _ACCOUNT_SETS
            )
        self.kept.save(now_ms, self.deferred)
        rows = [(k, a, b, n) for (k, a), (b, n) in sorted(self.balances.items())]
        bodies = _changes.balance_bodies(conn, rows, now_ms, self.kept.states)
        bodies += _changes.granted_bodies(conn, self.granted)
        logged = _changes.append_deferred(self.deferred, bodies, now_ms)
        first = logged - len(bodies) + 1  # the balance bodies come first, one per row
        numbers = {(key, asset): first + n for n, (key, asset, _, _) in enumerate(rows)}
        return logged or _changes.counter(conn, "change_seq"), numbers


def record_conflict(engine: sa.Engine, conflict: Conflict, now_ms: int) -> None:
    with engine.begin() as conn:
        _record_conflict(conn, conflict, now_ms)


def _record_conflict(conn: sa.Connection, conflict: Conflict, now_ms: int) -> None:
    key = (
        t.conflicts.c.device_id == conflict.device_id,
        t.conflicts.c.device_epoch == conflict.device_epoch,
        t.conflicts.c.device_seq == conflict.device_seq,
        t.conflicts.c.incoming_sha256 == conflict.incoming_sha256,
    )
    seen = conn.execute(
        sa.update(t.conflicts).where(*key).values(last_ms=now_ms, times=t.conflicts.c.times + 1)
    ).rowcount
    if seen == 0:
        conn.execute(
            sa.insert(t.conflicts).values(
                kind=conflict.kind,
                device_id=conflict.device_id,
                device_epoch=conflict.device_epoch,
                device_seq=conflict.device_seq,
                record_id=conflict.record_id,
                stored_sha256=conflict.stored_sha256,
                incoming_sha256=conflict.incoming_sha256,
                incoming_payload=conflict.incoming_payload,
                first_ms=now_ms,
                last_ms=now_ms,
                times=1,
            )
        )


_EPOCH = "SELECT acked_seq FROM device_epochs WHERE device_id = %s AND epoch = %s"


def lock_epoch(conn: sa.Connection, device_id: str, epoch: int) -> int | None:
    """The epoch's acknowledged seq, its row locked (FOR UPDATE on PostgreSQL; SQLite has
    one writer)."""
    sql = f"{_EPOCH} FOR UPDATE" if _bulk.is_postgresql(conn) else _EPOCH
    acked: int | None = _bulk.run(conn, (sql, (device_id, epoch), False)).scalar_one_or_none()
    return acked


def _apply(
    group: _Group, batch: Batch, now: datetime, look_up_ids: bool
) -> tuple[list[Outcome], _Changed]:
    """The batch's outcomes and changes; its writes go to `group.deferred`."""
    conn, device_id, request, items = group.conn, batch.device_id, batch.request, batch.items
    epoch = request.device_epoch
    acked = lock_epoch(conn, device_id, epoch)
    status = _bulk.run(
        conn, ("SELECT status FROM devices WHERE device_id = %s", (device_id,), False)
    ).scalar_one_or_none()
    if status != "enrolled":  # revoked while this request waited: checked under the lock
        raise Refused(401, "unauthorized", "a valid device credential is required")
    if acked is None:
        raise Refused(409, "epoch_unknown", f"device {device_id} has no epoch {epoch}; re-enroll")
    if items[0].seq > acked + 1:
        raise Refused(
            409,
            "gap",
            f"expected seq {acked + 1}, got {items[0].seq}",
            {"expected_seq": acked + 1},
        )
    old = [item for item in items if item.seq <= acked]
    new = [item for item in items if item.seq > acked]
    results = _check_old(conn, device_id, epoch, old)
    deferred = group.deferred
    changed = _Changed({}, [])
    if new:
        applied, changed = _apply_new(group, device_id, epoch, new, now, look_up_ids)
        results += applied
        deferred.execute(
            "UPDATE device_epochs SET acked_seq = %s WHERE device_id = %s AND epoch = %s",
            (new[-1].seq, device_id, epoch),
        )
    now_ms = group.now_ms
    deferred.execute(
        "UPDATE devices SET last_push_ms = %s, clock_skew_ms = %s WHERE device_id = %s",
        (now_ms, to_ms(request.device_time) - now_ms, device_id),
    )
    return results, changed


Outcome = tuple[int, ItemOutcome, str | None]
"""An item's seq, outcome and reason: a `PushResult` (see `Pushed`)."""


def _check_old(conn: sa.Connection, device_id: str, epoch: int, old: list[_Item]) -> list[Outcome]:
    """Replays: the same bytes are acknowledged again; other bytes are a conflict."""
    if not old:
        return []
    low, high = old[0].seq, old[-1].seq
    stored: dict[int, str] = {}
    for table in (t.ledger, t.cheques, t.quarantine):
        rows = conn.execute(
            sa.select(table.c.device_seq, table.c.payload_sha256).where(
                table.c.device_id == device_id,
                table.c.device_epoch == epoch,
                table.c.device_seq.between(low, high),
            )
        ).all()
        stored.update({row.device_seq: row.payload_sha256 for row in rows})
    results: list[Outcome] = []
    for item in old:
        known = stored.get(item.seq)
        if known is None:
            raise AssertionError(f"{device_id}/{epoch}/{item.seq} acknowledged but not stored")
        if known != item.sha256:
            raise Conflict(
                "seq_payload_mismatch",
                device_id,
                epoch,
                item.seq,
                item.record_id,
                known,
                item.sha256,
                item.payload,
            )
        results.append((item.seq, ItemOutcome.duplicate, None))
    return results


def _no_id_twice(device_id: str, epoch: int, new: list[_Item]) -> None:
    """The new items of a batch do not share an id."""
    seen: set[str] = set()
    for item in new:
        record_id = item.record_id
        if record_id is not None and record_id in seen:
            raise Conflict(
                "id_reused", device_id, epoch, item.seq, record_id, None, item.sha256, item.payload
            )
        if record_id is not None:
            seen.add(record_id)


def _check_ids(
    conn: sa.Connection, device_id: str, epoch: int, new: list[_Item], quarantine_only: bool
) -> None:
    """A new seq must not reuse an entry or document id central already holds. The ledger's
    and the cheques' UNIQUE ids catch a reuse among them without a look (`quarantine_only`);
    no constraint spans the quarantine, so it is always looked in. Each look is one fixed SQL
    text with the ids as one parameter (`_bulk.among`): an IN list of a batch's ids made a new
    statement, compiled by SQLAlchemy and split by psycopg, for every batch."""
    known: dict[str, str] = {}
    ids = [i.record_id for i in new if i.record_id is not None]
    looked: list[tuple[str, str, list[str]]] = [("quarantine", "record_id", ids)]
    if not quarantine_only:
        entry_ids = [i.record_id for i in new if i.ledger is not None and i.record_id]
        document_ids = [
            i.record_id for i in new if isinstance(i.record, ChequeDocument) and i.record_id
        ]
        looked += [("ledger", "entry_id", entry_ids), ("cheques", "document_id", document_ids)]
    for table, column, wanted in looked:
        if wanted:
            where, values = _bulk.among(conn, column, wanted)
            sql = f"SELECT {column}, payload_sha256 FROM {table} WHERE {where}"
            known.update(conn.exec_driver_sql(sql, (values,)).all())
    for item in new:
        if item.record_id in known:
            raise Conflict(
                "id_reused",
                device_id,
                epoch,
                item.seq,
                item.record_id,
                known[item.record_id],
                item.sha256,
                item.payload,
            )


def _customer_statuses(conn: sa.Connection, items: list[_Item]) -> dict[str, str]:
    """The status at central of each customer the items name: an entry's account, and the
    customer a cheque document was sold to."""
    ids = {item.customer_id for item in items if item.customer_id is not None}
    ids |= {
        item.record.customer.customer_id
        for item in items
        if isinstance(item.record, ChequeDocument) and item.record.customer.customer_id
    }
    if not ids:
        return {}
    where, values = _bulk.among(conn, "customer_id", ids)
    rows = conn.exec_driver_sql(
        f"SELECT customer_id, status FROM customers WHERE {where}", (values,)
    ).all()
    return {customer_id: status for customer_id, status in rows}


def _quarantine_reason(item: _Item, statuses: dict[str, str]) -> str | None:
    if item.problem is not None:
        return item.problem
    customer_id = item.customer_id
    if customer_id is not None:
        status = statuses.get(customer_id)
        if status is None:
            return f"customer {customer_id} is unknown at central"
        if status not in APPLICABLE_STATUSES:
            return f"customer {customer_id} is {status}"
    return None


def _apply_new(
    group: _Group,
    device_id: str,
    epoch: int,
    new: list[_Item],
    now: datetime,
    look_up_ids: bool,
) -> tuple[list[Outcome], _Changed]:
    """Outcomes of the new items, and what they changed. Writes go to `group.deferred`."""
    conn, deferred = group.conn, group.deferred
    _no_id_twice(device_id, epoch, new)
    now_ms = to_ms(now)
    statuses = _customer_statuses(conn, new)
    reasons = [_quarantine_reason(item, statuses) for item in new]
    # looked up in every table: all ids after an IntegrityError, and a quarantined record's
    # (it goes to no table with a UNIQUE id); the others in the quarantine only
    looked = [item for item, reason in zip(new, reasons, strict=True) if reason or look_up_ids]
    rest = [item for item, reason in zip(new, reasons, strict=True) if not reason]
    for items, quarantine_only in ((looked, False), ([] if look_up_ids else rest, True)):
        if items:
            _check_ids(conn, device_id, epoch, items, quarantine_only)
    results: list[Outcome] = []
    received = (now_ms,)
    ledger_rows: list[tuple[Any, ...]] = []
    posted: list[_lot_state.Posting] = []
    lot_rows: list[dict[str, Any]] = []
    cheque_rows: list[dict[str, Any]] = []
    quarantine_rows: list[dict[str, Any]] = []
    applied: list[LedgerEntry | _plain_entries.PlainEntry] = []
    for item, reason in zip(new, reasons, strict=True):
        if reason is not None:
            quarantine_rows.append(_quarantine_row(device_id, epoch, item, reason, now_ms))
            results.append((item.seq, ItemOutcome.quarantined, reason))
            continue
        if isinstance(item.record, LedgerEntry | _plain_entries.PlainEntry):
            ledger_rows.append(item.ledger + received)  # type: ignore[operator]  # made with it
            posted.append(item.posting)  # type: ignore[arg-type]
            if item.lot is not None:
                lot_rows.append(item.lot)
            applied.append(item.record)
        elif isinstance(item.record, ChequeDocument):
            payload = item.payload  # of a customer erased meanwhile: without their data
            if statuses.get(item.record.customer.customer_id or "") == "erased":
                payload = _erasure.scrubbed_document(payload)
            cheque_rows.append(_cheque_row(item.record, payload, item.sha256, now_ms))
        results.append((item.seq, ItemOutcome.applied, None))
    reversals, granted = _grant_reversals(conn, applied, now)
    for entry in reversals:
        ledger_rows.append(_ledger_values(entry, canonical_json(entry), None) + received)
    posted += _lot_state.postings(reversals)
    # Account rows are locked before the ledger rows are inserted: see `_lot_state`.
    group.moves += 1  # from here on the group's accounts and kept lots change in place
    balances = _move_accounts(conn, posted, now_ms, deferred, group.accounts)
    if deferred.pg:
        _bulk.copy(conn, t.ledger, LEDGER_COLUMNS, ledger_rows)
    else:
        deferred.insert(t.ledger, LEDGER_COLUMNS, ledger_rows)
    for table, rows in (
        (t.cheques, cheque_rows),
        (t.quarantine, quarantine_rows),
        (t.lots, lot_rows),
    ):
        if rows:
            deferred.insert(table, *_tuples(rows))
    group.kept.advance(posted, lot_times(lot_rows))
    _holds.settle(conn, device_id, applied, _documents(new), now_ms, deferred)
    return results, _Changed(balances, granted)


def lot_times(lot_rows: list[dict[str, Any]]) -> _lot_state.LotTimes:
    """Activation and expiry of the lots in `lots` rows, as the fold reads them."""
    return {row["lot_id"]: (row["activates_ms"], row["expires_ms"]) for row in lot_rows}


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Rows (dicts with the same keys) in one batch statement (`central._bulk`)."""
    if rows:
        _bulk.insert(conn, table, *_tuples(rows))


def _tuples(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names of dict rows (all with the same keys), and the rows as tuples."""
    names = list(rows[0])
    if len(names) == 1:
        return names, [(row[names[0]],) for row in rows]
    return names, list(map(itemgetter(*names), rows))


LEDGER_COLUMNS = (
    *(column.name for column in t.ledger.columns if column.name not in {"id", "received_ms"}),
    "received_ms",
)
"""The ledger's columns as push writes them: the table's order, `received_ms` moved last."""
_posting_fields = itemgetter(0, 5, 6, 7, 10, 11)
"""A ledger row's entry_id, account_key, asset, amount, reverses, device_time_ms: a
`_lot_state.Posting`."""


def _ledger_values(
    entry: LedgerEntry, payload: bytes, digest: str | None, entry_id: str | None = None
) -> tuple[Any, ...]:
    """A ledger row in `LEDGER_COLUMNS` order but the last (`received_ms`): the table's order
    (a test in tests/central/test_push.py holds them together)."""
    return (
        entry_id or str(entry.entry_id),
        entry.device_id,
        entry.device_epoch,
        entry.device_seq,
        entry.kind.value,
        account_key(entry.account),
        entry.asset,
        entry.amount,
        entry.grant_key,
        entry.cheque_id,
        None if entry.reverses is None else str(entry.reverses),
        to_ms(entry.device_time),
        payload,
        digest or sha256_hex(payload),
    )


def _ledger_row(
    entry: LedgerEntry,
    payload: bytes,
    digest: str | None,
    now_ms: int,
    entry_id: str | None = None,
) -> dict[str, Any]:
    values = (*_ledger_values(entry, payload, digest, entry_id), now_ms)
    return dict(zip(LEDGER_COLUMNS, values, strict=True))


def _cheque_row(doc: ChequeDocument, payload: bytes, digest: str, now_ms: int) -> dict[str, Any]:
    return {
        "document_id": str(doc.document_id),
        "device_id": doc.device_id,
        "device_epoch": doc.device_epoch,
        "device_seq": doc.device_seq,
        "cheque_id": doc.cheque_id,
        "store_id": doc.store_id,
        "kind": doc.kind.value,
        "state": doc.state.value,
        "account_key": None if doc.account is None else account_key(doc.account),
        "device_time_ms": to_ms(doc.device_time),
        "received_ms": now_ms,
        "payload": payload,
        "payload_sha256": digest,
    }


def _quarantine_row(
    device_id: str, epoch: int, item: _Item, reason: str, now_ms: int
) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "device_epoch": epoch,
        "device_seq": item.seq,
        "record_id": item.record_id,
        "reason": reason,
        "received_ms": now_ms,
        "payload": item.payload,
        "payload_sha256": item.sha256,
    }


def is_lot(entry: LedgerEntry) -> bool:
    """Positive points that form a lot with an activation or expiry time, the lots the jobs
    look for in `lots` (a lot without either is never pending and never expires, which is
    what the fold assumes of a lot without a row)."""
    return (
        entry.kind in LOT_KINDS
        and entry.asset == "points"
        and entry.amount > 0
        and (entry.activates_at is not None or entry.expires_at is not None)
    )


def _lot_row(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "lot_id": str(entry.entry_id),
        "account_key": account_key(entry.account),
        "points": entry.amount,
        "earned_ms": to_ms(entry.device_time),
        "activates_ms": None if entry.activates_at is None else to_ms(entry.activates_at),
        "expires_ms": None if entry.expires_at is None else to_ms(entry.expires_at),
    }


def rebuild_lots(conn: sa.Connection, account: str) -> int:
    """Lots are derived state: rebuild one account's from its ledger entries (each positive
    points grant is a lot; spending them down is the next issue's job). Returns the count."""
    conn.execute(sa.delete(t.lots).where(t.lots.c.account_key == account))
    rows = conn.execute(
        sa.select(t.ledger.c.payload).where(
            t.ledger.c.account_key == account,
            t.ledger.c.asset == "points",
            t.ledger.c.amount > 0,
            t.ledger.c.kind.in_(sorted(LOT_KINDS)),
        )
    ).scalars()
    entries = [LedgerEntry.model_validate_json(payload) for payload in rows]
    lots = [_lot_row(entry) for entry in entries if is_lot(entry)]
    insert_many(conn, t.lots, lots)
    return len(lots)


def _grant_reversals(
    conn: sa.Connection, applied: list[LedgerEntry | _plain_entries.PlainEntry], now: datetime
) -> tuple[list[LedgerEntry], list[str]]:
    """A one-time grant is granted once: a second entry with a known grant key is applied
    (the till did pay it out) and reversed at once by central's own pseudo-device. Returns
    the reversals and the keys granted for the first time."""
    granted = [e for e in applied if isinstance(e, LedgerEntry) and e.grant_key is not None]
    if not granted:
        return [], []
    keys = sorted({e.grant_key for e in granted if e.grant_key is not None})
    taken = set(
        conn.execute(
            sa.select(t.grants.c.grant_key).where(t.grants.c.grant_key.in_(keys))
        ).scalars()
    )
    repeated: list[LedgerEntry] = []
    fresh: list[LedgerEntry] = []
    for entry in granted:
        if entry.grant_key in taken:
            repeated.append(entry)
        else:
            taken.add(str(entry.grant_key))
            fresh.append(entry)
    if fresh:
        conn.execute(sa.insert(t.grants), [grant_row(entry) for entry in fresh])
    keys_granted = [str(entry.grant_key) for entry in fresh]
    if not repeated:
        return [], keys_granted
    reversals = central_entries(
        conn,
        [
            {
                "kind": EntryKind.grant_reversal,
                "account": e.account,
                "asset": e.asset,
                "amount": -e.amount,
                "reverses": e.entry_id,
                "cheque_id": e.cheque_id,
                "reason": f"grant {e.grant_key} was already granted",
            }
            for e in repeated
        ],
        now,
    )
    return reversals, keys_granted


def grant_row(entry: LedgerEntry) -> dict[str, str | None]:
    """The `grants` row of an entry that pays a one-time grant first."""
    key = str(entry.grant_key)
    return {
        "grant_key": key,
        "entry_id": str(entry.entry_id),
        "customer_id": _changes.grant_customer(key),
    }


def central_entries(
    conn: sa.Connection, specs: list[dict[str, Any]], now: datetime
) -> list[LedgerEntry]:
    """Entries central makes itself, numbered under its pseudo-device (row locked), timed
    `now` unless a spec says when (an imported purchase: when it was bought)."""
    acked = lock_epoch(conn, CENTRAL_DEVICE_ID, 1)
    if acked is None:
        raise AssertionError("central's pseudo-device is missing; run migrate")
    made = [
        LedgerEntry(
            entry_id=new_entry_id(),
            device_id=CENTRAL_DEVICE_ID,
            device_epoch=1,
            device_seq=acked + index,
            **({"device_time": now} | spec),
        )
        for index, spec in enumerate(specs, start=1)
    ]
    conn.execute(
        sa.update(t.device_epochs)
        .where(t.device_epochs.c.device_id == CENTRAL_DEVICE_ID, t.device_epochs.c.epoch == 1)
        .values(acked_seq=acked + len(specs))
    )
    return made


_ACCOUNT_COLUMNS = ("account_key", "asset", "balance", "entries", "updated_ms")
_ACCOUNT_UPDATES = {
    "balance": "accounts.balance + excluded.balance",
    "entries": "accounts.entries + excluded.entries",
    "updated_ms": "excluded.updated_ms",
}
_ACCOUNT_SETS = {
    "balance": "excluded.balance",
    "entries": "excluded.entries",
    "updated_ms": "excluded.updated_ms",
}


def _upsert_accounts(
    conn: sa.Connection, rows: list[tuple[str, str, int, int, int]]
) -> dict[tuple[str, str], tuple[int, int]]:
    """Add deltas to account rows, taking their row locks in the order given (key order);
    the new (balance, entries) of each."""
    returning = ("account_key", "asset", "balance", "entries")
    keys = ("account_key", "asset")
    found: Sequence[Sequence[Any]] | None = _bulk.upsert(
        conn, t.accounts, _ACCOUNT_COLUMNS, rows, keys, _ACCOUNT_UPDATES, returning
    )
    if found is None:  # SQLite (one writer, nothing to order): read the new values back
        where, values = _bulk.among(conn, "account_key", (row[0] for row in rows))
        found = conn.exec_driver_sql(
            f"SELECT account_key, asset, balance, entries FROM accounts WHERE {where}", (values,)
        ).all()
    wanted = {(row[0], row[1]) for row in rows}
    return {(k, a): (balance, n) for k, a, balance, n in found if (k, a) in wanted}


def _add_held(
    conn: sa.Connection,
    rows: list[tuple[str, str, int, int, int]],
    held: dict[tuple[str, str], tuple[int, int]],
) -> dict[tuple[str, str], tuple[int, int]]:
    """`_upsert_accounts` on accounts held in memory (SQLite: one writer)."""
    missing = {row[0] for row in rows if (row[0], row[1]) not in held}
    stored: dict[tuple[str, str], tuple[int, int]] = {}
    if missing:
        where, values = _bulk.among(conn, "account_key", missing)
        found = conn.exec_driver_sql(
            f"SELECT account_key, asset, balance, entries FROM accounts WHERE {where}", (values,)
        ).all()
        stored = {(k, a): (balance, n) for k, a, balance, n in found}
    after = {}
    for k, a, amount, count, _ in rows:
        key = (k, a)
        now = held.get(key)
        if now is None:
            now = stored.get(key, (0, 0))
        after[key] = held[key] = (now[0] + amount, now[1] + count)
    return after


def _move_accounts(
    conn: sa.Connection,
    posted: list[_lot_state.Posting],
    now_ms: int,
    deferred: _bulk.Deferred | None = None,
    held: dict[tuple[str, str], tuple[int, int]] | None = None,
) -> dict[tuple[str, str], tuple[int, int]]:
    """Add the entries to their accounts in one statement, rows in key order; new balances.
    With `held` (SQLite's group commit: the group's accounts), in `held` instead, read from
    the table once; the group writes them."""
    deltas: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    last_entry: dict[tuple[str, str], str] = {}
    for posting in posted:
        key = (posting.account_key, posting.asset)
        deltas[key][0] += posting.amount
        deltas[key][1] += 1
        last_entry[key] = posting.entry_id
    if not deltas:
        return {}
    rows = [(k, a, d[0], d[1], now_ms) for (k, a), d in sorted(deltas.items())]
    after = _upsert_accounts(conn, rows) if held is None else _add_held(conn, rows, held)
    check_bounds(after)
    debts = [
        (k, a, last_entry[(k, a)], balance, now_ms)
        for (k, a), (balance, _) in sorted(after.items())
        if balance < 0 and deltas[(k, a)][0] < 0
    ]
    names = ("account_key", "asset", "entry_id", "balance", "created_ms")
    if deferred is not None:
        deferred.insert(t.debts, names, debts)
    else:
        _bulk.insert(conn, t.debts, names, debts)
    return dict(sorted(after.items()))


def check_bounds(balances: dict[tuple[str, str], tuple[int, int]]) -> None:
    """Refuse (422, the caller's transaction rolls back) a balance beyond what the wire can
    carry: every till's next pull would hold a page it cannot read, and stop there."""
    for (key, asset), (balance, _) in balances.items():
        if abs(balance) > points_max:
            raise Refused(
                422,
                "balance_out_of_range",
                f"{asset} of {key} would be {balance}, beyond the ±{points_max} an account"
                " can hold: nothing of this was written",
                {"account_key": key, "asset": asset, "balance": balance},
            )


def _documents(items: list[_Item]) -> list[ChequeDocument]:
    return [item.record for item in items if isinstance(item.record, ChequeDocument)]
