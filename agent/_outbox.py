"""The outbox: every ledger entry and cheque document the till made, numbered per epoch.

A record's payload is its canonical JSON, stored once; its hash is taken over those bytes, and
the same bytes are what the sync client pushes. Seqs are assigned inside the write transaction
that creates the record, so they run 1…N with no gap and no duplicate, whatever the crash.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from agent import _erasure
from agent._cache import utc_iso
from agent._store import TillStore, set_meta
from protocol import (
    ChequeDocument,
    LedgerEntry,
    SignupRecord,
    account_key,
    canonical_json,
    sha256_hex,
)

outbox_page_records_max = 500


@dataclass(frozen=True)
class DeviceSeat:
    """Who the till is on the wire: its device id and the epoch it writes in."""

    device_id: str
    epoch: int


def next_seq(db: sqlite_utils.Database, epoch: int) -> int:
    """The seq the next record of `epoch` takes; call inside the write that appends it."""
    row = db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE epoch = ?", [epoch])
    return int(row.fetchone()[0]) + 1


def ensure_seat(store: TillStore) -> DeviceSeat:
    """The till's device id and epoch, made once when its database is created."""
    with store.write() as db:
        device_id = db.execute("SELECT value FROM meta WHERE key = 'device_id'").fetchone()
        if device_id is None:
            set_meta(db, "device_id", f"till-{uuid.uuid4().hex[:16]}")
            set_meta(db, "device_epoch", "1")
        seat = dict(db.execute("SELECT key, value FROM meta").fetchall())
    return DeviceSeat(seat["device_id"], int(seat["device_epoch"]))


def begin_epoch(store: TillStore, seat: DeviceSeat, epoch: int) -> DeviceSeat:
    """From now on number records in `epoch` (central gave it to this restored till); records
    already made keep their numbers and are still pushed under their own epoch."""
    if epoch <= seat.epoch:
        raise ValueError(f"epoch {epoch} is not after this till's epoch {seat.epoch}")
    with store.write() as db:
        set_meta(db, "device_epoch", str(epoch))
    return DeviceSeat(seat.device_id, epoch)


def record_key(record: LedgerEntry | ChequeDocument) -> str | None:
    return None if record.account is None else account_key(record.account)


Record = LedgerEntry | ChequeDocument | SignupRecord


def append(db: sqlite_utils.Database, record: Record, offline: bool) -> None:
    """Store `record` in the outbox under the seq it already carries (see `next_seq`)."""
    append_many(db, [record], offline)


def append_many(db: sqlite_utils.Database, records: list[Record], offline: bool) -> None:
    """Store `records` (one statement for all of them), each under the seq it carries."""
    db.conn.executemany(
        "INSERT INTO outbox(epoch, seq, record_id, record, account_key, asset, amount, kind,"
        " offline, activates_at, payload, payload_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [_row(record, offline) for record in records],
    )


def _row(record: Record, offline: bool) -> tuple[object, ...]:
    payload = canonical_json(record)
    key, kind = None, "signup"
    asset, amount, activates_at = None, 0, None
    if isinstance(record, LedgerEntry):
        record_id, asset, amount = str(record.entry_id), record.asset, record.amount
        activates_at = _iso(record.activates_at)
        key, kind = record_key(record), str(record.kind)
    elif isinstance(record, ChequeDocument):
        record_id, key, kind = str(record.document_id), record_key(record), str(record.kind)
    else:
        record_id = str(record.signup_id)
    return (
        record.device_epoch,
        record.device_seq,
        record_id,
        record.record,
        key,
        asset,
        amount,
        kind,
        int(offline),
        activates_at,
        payload.decode("utf-8"),
        sha256_hex(payload),
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc_iso(moment)


@dataclass(frozen=True)
class PendingRecord:
    epoch: int
    seq: int
    payload: str
    payload_sha256: str


def pending(db: sqlite_utils.Database, limit: int = outbox_page_records_max) -> list[PendingRecord]:
    """The oldest unacknowledged records of the oldest epoch that has any, in seq order."""
    rows = db.execute(
        "SELECT epoch, seq, payload, payload_sha256 FROM outbox WHERE state = 'local' "
        "ORDER BY epoch, seq LIMIT ?",
        [min(limit, outbox_page_records_max)],
    ).fetchall()
    if not rows:
        return []
    first_epoch = rows[0][0]
    return [PendingRecord(*row) for row in rows if row[0] == first_epoch]


def depth(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'local'").fetchone()[0])


UNKNOWN_WATERMARK = 2**62
"""The change seq of an acknowledgement that did not say it (a gap taken as an ack): the
records keep counting in the balance view until the next complete pull settles it."""


def acknowledge(
    db: sqlite_utils.Database, epoch: int, through_seq: int, change_seq: int | None
) -> None:
    """Central holds every record of `epoch` up to `through_seq`; keep them as history (less
    the personal data of customers erased meanwhile)."""
    first = db.execute(
        "SELECT MIN(seq) FROM outbox WHERE state = 'local' AND epoch = ?", [epoch]
    ).fetchone()[0]
    if first is None or first > through_seq:
        return
    db.execute(
        "UPDATE outbox SET state = 'acknowledged', ack_change_seq = ? "
        "WHERE epoch = ? AND seq BETWEEN ? AND ? AND state = 'local'",
        [UNKNOWN_WATERMARK if change_seq is None else change_seq, epoch, first, through_seq],
    )
    _erasure.forget_acknowledged(db, epoch, (first, through_seq))


def balance_watermarks(db: sqlite_utils.Database, numbers: dict[str, int]) -> None:
    """Central named the change that carries each moved account's new balance (`"<account
    key> <asset>"`: number): the acknowledged entries of that balance stop counting in the
    balance view once a pull has reached it, not only the push's last change (a page may end
    between the two, and the entry would count twice meanwhile). Only ever lowered: whatever
    central held of the account before this push, that balance has in it too."""
    points, counters = [], []
    for name, number in numbers.items():
        key, _, asset = name.rpartition(" ")
        if asset == "points":
            points.append((number, key, number))
        else:
            counters.append((number, key, asset, number))
    lowered = "UPDATE outbox SET ack_change_seq = ?1 WHERE account_key = ?2 AND record = 'entry' "
    # the asset spelled out, so that each statement is served by its partial index
    db.conn.executemany(
        f"{lowered} AND asset = 'points' AND state = 'acknowledged' AND ack_change_seq > ?3",
        points,
    )
    db.conn.executemany(
        f"{lowered} AND kind = 'counter' AND asset = ?3 AND state = 'acknowledged' "
        "AND ack_change_seq > ?4",
        counters,
    )


def settle_watermarks(db: sqlite_utils.Database, cursor: int) -> None:
    """A pull that started after those acknowledgements has reached `cursor`: it saw them."""
    db.execute(
        "UPDATE outbox SET ack_change_seq = ? WHERE state = 'acknowledged' AND ack_change_seq = ?",
        [cursor, UNKNOWN_WATERMARK],
    )


def send_again(db: sqlite_utils.Database, epoch: int, from_seq: int) -> int:
    """Central no longer holds `epoch`'s records from `from_seq` on, although it acknowledged
    them: it was restored from a backup. Make them pending again, so that the next pushes
    send them in order; returns how many. A record scrubbed of an erased customer's data
    since goes as it is now, under the hash of those bytes (the restored central has never
    seen the first ones)."""
    rows = db.execute(
        "SELECT seq, payload, payload_sha256 FROM outbox "
        "WHERE epoch = ? AND seq >= ? AND state != 'local' AND record != 'entry'",
        [epoch, from_seq],
    ).fetchall()
    for seq, payload, stored in rows:
        digest = sha256_hex(payload.encode())
        if digest != stored:
            db.execute(
                "UPDATE outbox SET payload_sha256 = ? WHERE epoch = ? AND seq = ?",
                [digest, epoch, seq],
            )
    again = db.execute(
        "UPDATE outbox SET state = 'local', ack_change_seq = NULL "
        "WHERE epoch = ? AND seq >= ? AND state != 'local'",
        [epoch, from_seq],
    )
    return int(again.rowcount)


def quarantine(db: sqlite_utils.Database, epoch: int, seq: int) -> None:
    db.execute("UPDATE outbox SET state = 'quarantined' WHERE epoch = ? AND seq = ?", [epoch, seq])
