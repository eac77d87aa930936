"""Cheques recomputed with the rule set and evaluator stamped on them, and refunds of
cheques sold at another till reconciled with their originals.

A mismatch is never a silent rewrite: it is a conflict for HQ (kind `recompute_mismatch`,
with what the till said and what central computed) and, when the points differ, a
`correction` entry from central's pseudo-device keyed `correct:<document id>`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa

from central import _db, _directory, _entries
from central import _tables as t
from central._clock import to_ms
from protocol import (
    EVALUATOR_RECOMPUTES,
    ChequeDocument,
    ChequeKind,
    ChequeState,
    CustomerStatus,
    EntryKind,
    LedgerEntry,
    Quote,
    RedeemRequest,
    Refund,
    RefundError,
    RuleSet,
    Store,
    evaluate,
    refund_quote,
    returned_points_expire_at,
    rule_set_from_data,
)

cheques_per_batch_max = 200
_POINT_KINDS = (EntryKind.earn.value, EntryKind.burn.value)


def _pending(conn: sa.Connection, state: str, after_id: int) -> list[Any]:
    return list(
        conn.execute(
            sa.select(t.cheques)
            .where(t.cheques.c.recomputed == state, t.cheques.c.id > after_id)
            .order_by(t.cheques.c.id)
            .limit(cheques_per_batch_max)
        ).all()
    )


def _claim(conn: sa.Connection, row: Any, state: str, verdict: str, result: Any = None) -> bool:
    """Move one cheque from `state` to `verdict`; False when another run already did."""
    values: dict[str, Any] = {"recomputed": verdict}
    if result is not None:
        values["result"] = json.dumps(result, sort_keys=True)
    done = conn.execute(
        sa.update(t.cheques)
        .where(t.cheques.c.id == row.id, t.cheques.c.recomputed == state)
        .values(values)
    ).rowcount
    return done == 1


def alert(
    conn: sa.Connection, kind: str, row: Any, record_id: str, detail: Any, now_ms: int
) -> None:
    """A conflict for HQ about a stored record (one per record and kind)."""
    exists = conn.execute(
        sa.select(t.conflicts.c.id).where(
            t.conflicts.c.device_id == row.device_id,
            t.conflicts.c.device_epoch == row.device_epoch,
            t.conflicts.c.device_seq == row.device_seq,
            t.conflicts.c.incoming_sha256 == row.payload_sha256,
        )
    ).first()
    if exists is not None:
        return
    conn.execute(
        sa.insert(t.conflicts).values(
            kind=kind,
            device_id=row.device_id,
            device_epoch=row.device_epoch,
            device_seq=row.device_seq,
            record_id=record_id,
            stored_sha256=row.payload_sha256,
            incoming_sha256=row.payload_sha256,
            incoming_payload=row.payload,
            first_ms=now_ms,
            last_ms=now_ms,
            times=1,
            status="open",
            detail=json.dumps(detail, sort_keys=True, default=str),
        )
    )


# --- recomputation ------------------------------------------------------------------------


def recompute(engine: sa.Engine, now: datetime) -> tuple[int, int | None]:
    """Recompute pending cheques. Returns (cheques decided, lag in ms): the lag is how long
    the oldest cheque still pending has waited since it arrived."""
    return _drain(engine, "pending", _recompute_one, now)


@dataclass(frozen=True)
class Verdict:
    """What becomes of one cheque: its new state, what is kept with it, a conflict for HQ
    (kind, detail) and central's own entries for it (corrections, refund reversals)."""

    state: str
    result: Any = None
    alert: tuple[str, Any] | None = None
    entries: tuple[dict[str, Any], ...] = ()


class _Later:
    """Decide this cheque in the next batch: it depends on a verdict of this one."""


LATER = _Later()


@dataclass
class Reading:
    """What one run reads once: rule sets and stores by key; and what this batch decided
    about each original cheque (a second refund of it waits for the next batch)."""

    rule_sets: dict[str, RuleSet | None] = field(default_factory=dict)
    stores: dict[str, Store] = field(default_factory=dict)
    originals: set[str] = field(default_factory=set)


Judge = Callable[[sa.Connection, Any, Reading], "Verdict | _Later | None"]
_UNREADABLE = (ValueError, KeyError, RuntimeError)
cached_per_run_max = 64


def _drain(engine: sa.Engine, state: str, judge: Judge, now: datetime) -> tuple[int, int | None]:
    """Decide every cheque in `state`, a batch at a time: `judge` each one in a read-only
    transaction (parsing, evaluating, reading what it needs: the CPU, under no lock), then
    write the verdicts in one short write transaction under the writer lock, so pushes wait
    for a few milliseconds of writes and not for the evaluation. What `judge` reads does not
    change between the two: entries, documents and rule sets are never rewritten, and each
    claim is `UPDATE ... WHERE recomputed = state`, so a verdict another run wrote first is
    left alone. A cheque that cannot be read or evaluated is set aside as `failed` with an
    alert, never retried forever. Returns (decided, lag of the oldest still in `state`)."""
    decided = 0
    after = 0
    reading = Reading()
    reader = _db.reading(engine)
    while True:
        with reader.begin() as conn:
            rows = _pending(conn, state, after)
            verdicts = _judge_batch(judge, conn, rows, reading)
        if not rows:
            break
        if not verdicts:  # `_Later` waits for a verdict of its batch: never the first cheque
            raise RuntimeError(f"cheque {rows[0].id} cannot be decided in a batch of its own")
        after = rows[len(verdicts) - 1].id
        with _db.writing(engine), engine.begin() as conn:
            decided += _write(conn, state, rows, verdicts, now)
    with reader.connect() as conn:
        oldest = conn.execute(
            sa.select(sa.func.min(t.cheques.c.received_ms)).where(t.cheques.c.recomputed == state)
        ).scalar()
    return decided, 0 if oldest is None else max(to_ms(now) - int(oldest), 0)


def _judge_batch(
    judge: Judge, conn: sa.Connection, rows: list[Any], reading: Reading
) -> list[Verdict | None]:
    """Each row's verdict (None: not yet), up to the first that must wait for this batch."""
    if len(reading.rule_sets) + len(reading.stores) > cached_per_run_max:
        reading.rule_sets.clear()
        reading.stores.clear()
    reading.originals.clear()
    verdicts: list[Verdict | None] = []
    for row in rows:
        try:
            verdict = judge(conn, row, reading)
        except _UNREADABLE as error:
            verdict = _failed({"error": f"{type(error).__name__}: {error}"[:500]})
        if isinstance(verdict, _Later):
            break
        verdicts.append(verdict)
    return verdicts


def _write(
    conn: sa.Connection, state: str, rows: list[Any], verdicts: list[Verdict | None], now: datetime
) -> int:
    """The verdicts, each only if the cheque is still in `state`: the plain ones in one
    statement, those with a conflict or entries one by one."""
    plain = [
        {"b_cheque": row.id, "b_state": state, "b_verdict": verdict.state}
        for row, verdict in zip(rows, verdicts, strict=False)
        if verdict is not None and _is_plain(verdict)
    ]
    decided = conn.execute(_CLAIM, plain).rowcount if plain else 0
    for row, verdict in zip(rows, verdicts, strict=False):
        if verdict is None or _is_plain(verdict):
            continue
        try:
            with conn.begin_nested():
                decided += _apply(conn, state, row, verdict, now)
        except _UNREADABLE as error:  # its entries could not be written: set it aside
            detail = {"error": f"{type(error).__name__}: {error}"[:500]}
            decided += _apply(conn, state, row, _failed(detail), now)
    return decided


def _failed(detail: dict[str, str]) -> Verdict:
    return Verdict("failed", detail, ("recompute_failed", detail))


def _is_plain(verdict: Verdict) -> bool:
    return verdict.alert is None and not verdict.entries and verdict.result is None


_CLAIM = (
    sa.update(t.cheques)
    .where(
        t.cheques.c.id == sa.bindparam("b_cheque"),
        t.cheques.c.recomputed == sa.bindparam("b_state"),
    )
    .values(recomputed=sa.bindparam("b_verdict"))
)


def _apply(conn: sa.Connection, state: str, row: Any, verdict: Verdict, now: datetime) -> int:
    if not _claim(conn, row, state, verdict.state, verdict.result):
        return 0
    if verdict.alert is not None:
        kind, detail = verdict.alert
        alert(conn, kind, row, str(row.document_id), detail, to_ms(now))
    if verdict.entries:
        _entries.write(conn, list(verdict.entries), now)
    return 1


def _recompute_one(conn: sa.Connection, row: Any, reading: Reading) -> Verdict | None:
    doc = ChequeDocument.model_validate_json(row.payload)
    if doc.kind is ChequeKind.refund and doc.quote is None:
        return Verdict("foreign")
    if doc.quote is None:
        return Verdict("skipped")
    if doc.customer.status is CustomerStatus.erased:
        return _scrubbed(conn, doc.customer.customer_id)
    entries = _entries_of(conn, doc)
    if entries is None:
        return None  # its entries have not all arrived yet: the lag shows it
    if doc.state in _UNPAID and not entries:
        return Verdict("skipped")  # voided or expired: the quote was never paid, nothing moved
    rules = _rule_set(conn, doc.quote.rule_set_hash, reading)
    if rules is None or doc.quote.evaluator_version not in EVALUATOR_RECOMPUTES:
        why = "unknown_rules" if rules is None else "other_evaluator"
        stamped = {
            "rule_set_hash": doc.quote.rule_set_hash,
            "evaluator": doc.quote.evaluator_version,
        }
        return Verdict(why, alert=(why, stamped))
    if doc.kind is ChequeKind.refund:
        expected, found = _refund_points(conn, doc, entries, row.id)
    else:
        again = _evaluate_again(doc, rules, _store(conn, doc.store_id, reading))
        expected, found = _sale_points(doc, again, entries)
    if expected == found:
        return Verdict("ok")
    delta = expected["net"] - found["net"]
    detail: dict[str, Any] = {"expected": expected, "found": found, "correction": delta}
    correction: tuple[dict[str, Any], ...] = ()
    if delta != 0 and doc.account is not None:
        correction = (
            {
                "kind": EntryKind.correction,
                "account": doc.account,
                "amount": delta,
                "cheque_id": doc.cheque_id,
                "grant_key": f"correct:{doc.document_id}",
                "reason": f"recomputation of cheque {doc.cheque_id} differs",
            },
        )
    return Verdict("mismatch", detail, ("recompute_mismatch", detail), correction)


def _scrubbed(conn: sa.Connection, customer_id: str | None) -> Verdict:
    """A document that reached central without its customer's state: the till erased the
    customer before central had the cheque (central was restored from an older backup), so
    evaluating it again proves nothing. Skipped; HQ is told when central has not erased the
    customer (the erasure was lost with the restore, or the till is wrong)."""
    status = conn.execute(
        sa.select(t.customers.c.status).where(t.customers.c.customer_id == customer_id)
    ).scalar_one_or_none()
    if status == CustomerStatus.erased:
        return Verdict("skipped")
    detail = {
        "customer_id": customer_id,
        "status_here": status,
        "message": "the till sent this cheque without the customer's data, as for an erased "
        "customer; if central was restored from a backup, erase the customer again",
    }
    return Verdict("scrubbed", detail, ("cheque_scrubbed", detail))


_UNPAID = (ChequeState.voided, ChequeState.expired)
"""A reservation released: its document keeps the quote it held, and has no entries."""


def _store(conn: sa.Connection, store_id: str, reading: Reading) -> Store:
    found = reading.stores.get(store_id)
    if found is None:
        found = _directory.store(conn, store_id) or Store(store_id=store_id, name="")
        reading.stores[store_id] = found
    return found


_ENTRIES = sa.select(
    t.ledger.c.entry_id, t.ledger.c.kind, t.ledger.c.amount, t.ledger.c.asset
).where(t.ledger.c.entry_id.in_(sa.bindparam("ids", expanding=True)))


class _Held(NamedTuple):
    """An entry of the cheque central quarantined, as the till wrote it."""

    entry_id: str
    kind: str
    amount: int
    asset: str


def _entries_of(conn: sa.Connection, doc: ChequeDocument) -> list[Any] | None:
    """The cheque's entries as its till wrote them, or None while some are still on their
    way. One central quarantined counts as the till wrote it: what the till computed is
    checked here, and whether it could be applied is the quarantine's matter (a correction
    for it would pay twice once the entry is resolved to its customer)."""
    ids = [str(entry_id) for entry_id in doc.entry_ids]
    if not ids:
        return []
    rows: list[Any] = list(conn.execute(_ENTRIES, {"ids": ids}).all())
    if len(rows) < len(ids):
        held = conn.execute(
            sa.select(t.quarantine.c.payload).where(
                t.quarantine.c.record_id.in_(ids), t.quarantine.c.device_id == doc.device_id
            )
        ).scalars()
        payloads = list(held)
        if len(rows) + len(payloads) < len(ids):
            return None
        rows += [entry for entry in map(_held_entry, payloads) if entry is not None]
    return rows


def _held_entry(payload: bytes) -> _Held | None:
    """A quarantined ledger entry's kind and amount; None for a payload that is none."""
    try:
        entry = LedgerEntry.model_validate_json(payload)
    except ValueError:
        return None
    return _Held(str(entry.entry_id), entry.kind.value, entry.amount, entry.asset)


def _rule_set(conn: sa.Connection, content_hash: str, reading: Reading) -> RuleSet | None:
    if content_hash not in reading.rule_sets:
        text = conn.execute(
            sa.select(t.rule_sets.c.document).where(t.rule_sets.c.content_hash == content_hash)
        ).scalar_one_or_none()
        found = None if text is None else rule_set_from_data(json.loads(text))
        reading.rule_sets[content_hash] = found
    return reading.rule_sets[content_hash]


def quoted_at(doc: ChequeDocument, rules: RuleSet) -> datetime:
    """When the till evaluated the cheque: as its document says, or (a till from before it
    said) its activation time less the return window when it earned, otherwise the
    document's device time."""
    quote = doc.quote
    if doc.quoted_at is not None:
        return doc.quoted_at
    if quote is not None and quote.earn_activates_at is not None:
        return quote.earn_activates_at - timedelta(days=rules.pending_days)
    return doc.device_time


def _evaluate_again(doc: ChequeDocument, rules: RuleSet, store: Store) -> Quote:
    """The sale evaluated again with the rules and the evaluator stamped on it."""
    quote = doc.quote
    if quote is None:
        raise AssertionError("a sale to recompute has a quote")
    customer = doc.customer.model_copy(
        update={"points_balance": max(doc.customer.points_balance, quote.burn_points), "lots": ()}
    )
    redeem = RedeemRequest(mode="points", points=quote.burn_points)
    return evaluate(rules, customer, doc.basket, store, quoted_at(doc, rules), redeem)


def _sale_points(
    doc: ChequeDocument, again: Quote, entries: list[Any]
) -> tuple[dict[str, int], dict[str, int]]:
    quote = doc.quote
    if quote is None:
        raise AssertionError("a sale to recompute has a quote")
    points = [e for e in entries if e.asset == "points" and e.kind in _POINT_KINDS]
    found = {
        "earn": sum(e.amount for e in points if e.kind == EntryKind.earn.value),
        "burn": -sum(e.amount for e in points if e.kind == EntryKind.burn.value),
        "quote_earn": quote.earn_points,
        "quote_burn": quote.burn_points,
        "quote_discount": quote.discount,
    }
    expected = {
        "earn": again.earn_points,
        "burn": again.burn_points,
        "quote_earn": again.earn_points,
        "quote_burn": again.burn_points,
        "quote_discount": again.discount,
    }
    if doc.account is None:  # anonymous: no entries, only the quote to check
        found["earn"] = expected["earn"]
        found["burn"] = expected["burn"]
    expected["net"] = expected["earn"] - expected["burn"]
    found["net"] = found["earn"] - found["burn"]
    return expected, found


def _counted_refunds(
    conn: sa.Connection,
    doc: ChequeDocument,
    row_id: int,
    original_device: str | None,
    all_ids: bool = False,
) -> list[tuple[int, Refund]]:
    """Refunds central took before `doc` (row `row_id`) of the same original, with their
    rows: the same cheque id sold at the same till (POS cheque numbers repeat across tills).
    With `all_ids`, every other refund whose reversal moved points already, whatever its row:
    a till's own refunds (its till wrote their entries) and those central reconciled (a
    refund at another till waits for central; one at the till that sold the cheque may arrive
    after it and is counted all the same). A refund central reconciled counting `row_id` is
    not counted back for `row_id`: each would be priced as the later one."""
    placed = t.cheques.c.id != row_id if all_ids else t.cheques.c.id < row_id
    rows = conn.execute(
        sa.select(t.cheques.c.id, t.cheques.c.payload, t.cheques.c.result, t.cheques.c.recomputed)
        .where(t.cheques.c.kind == "refund", placed)
        .where(t.cheques.c.recomputed.in_(["ok", "mismatch", "reconciled", "pending"]))
        .order_by(t.cheques.c.id)
    ).all()
    earlier = []
    for row in rows:
        other = ChequeDocument.model_validate_json(row.payload)
        if other.original_cheque_id != doc.original_cheque_id:
            continue
        if _original_device(conn, other) != original_device:
            continue
        if other.refund is not None:
            earlier.append((row.id, other.refund))
        elif row.recomputed == "reconciled" and row.result:
            result = json.loads(row.result)
            if row_id not in result.pop("counted", []):
                earlier.append((row.id, Refund.model_validate(result)))
    return earlier


def _refund_points(
    conn: sa.Connection, doc: ChequeDocument, entries: list[Any], row_id: int
) -> tuple[dict[str, int], dict[str, int]]:
    """An own-till refund: what the till reversed against what the quote says it should."""
    if doc.quote is None or doc.refund is None:
        raise AssertionError("an own-till refund carries the original quote and its refund")
    returned = {line.line_id: line.quantity_milli for line in doc.returned}
    try:
        earlier = _counted_refunds(conn, doc, row_id, _original_device(conn, doc))
        again = refund_quote(doc.quote, doc.basket, returned, [refund for _, refund in earlier])
        expected = {"earn_reversed": again.earn_points, "burn_returned": again.burn_points}
    except RefundError:
        expected = {"earn_reversed": 0, "burn_returned": 0}
    points = [e.amount for e in entries if e.asset == "points" and e.kind == "refund_reversal"]
    found = {
        "earn_reversed": -sum(a for a in points if a < 0),
        "burn_returned": sum(a for a in points if a > 0),
    }
    expected["net"] = expected["burn_returned"] - expected["earn_reversed"]
    found["net"] = found["burn_returned"] - found["earn_reversed"]
    return expected, found


# --- refunds of cheques sold elsewhere ----------------------------------------------------


def reconcile_refunds(engine: sa.Engine, now: datetime) -> tuple[int, int | None]:
    """Refunds of cheques sold at another till: find the original, compute what the refund
    reverses from its quote, and write those entries from central. A refund whose original
    has not arrived waits (the lag shows the oldest one)."""
    return _drain(engine, "foreign", _reconcile_one, now)


def _original_device(conn: sa.Connection, refund: ChequeDocument) -> str | None:
    """The till that sold what `refund` returns: named in it, or found as `_original` finds
    it (the latest paid sale of that cheque id)."""
    if refund.original_device_id is not None:
        return refund.original_device_id
    original = _original(conn, refund)
    return None if original is None else original.device_id


def _original(conn: sa.Connection, doc: ChequeDocument) -> ChequeDocument | None:
    """The paid sale `doc` refunds: of its till when named, else the latest of that cheque id
    whose lines are the refund's original lines (POS cheque numbers repeat across tills), else
    the latest of that id."""
    query = sa.select(t.cheques.c.payload).where(
        t.cheques.c.cheque_id == doc.original_cheque_id, t.cheques.c.kind == "sale"
    )
    if doc.original_device_id is not None:
        query = query.where(t.cheques.c.device_id == doc.original_device_id)
    payloads = conn.execute(query.order_by(t.cheques.c.id)).scalars().all()
    sales = [ChequeDocument.model_validate_json(p) for p in payloads]
    paid = [s for s in sales if s.quote is not None and s.state.value != "voided"]
    same_lines = [s for s in paid if s.basket == doc.basket]
    return (same_lines or paid)[-1] if paid else None


def _reconcile_one(conn: sa.Connection, row: Any, reading: Reading) -> Verdict | _Later | None:
    doc = ChequeDocument.model_validate_json(row.payload)
    original = _original(conn, doc)
    if original is None or original.quote is None:
        return None
    key = f"{original.device_id}/{doc.original_cheque_id}"  # whether the refund named it
    if key in reading.originals:
        return LATER  # what it may still refund depends on the refund decided before it
    reading.originals.add(key)
    returned = {line.line_id: line.quantity_milli for line in doc.returned}
    counted = _counted_refunds(conn, doc, row.id, original.device_id, all_ids=True)
    try:
        refund = refund_quote(
            original.quote, original.basket, returned, [refund for _, refund in counted]
        )
    except RefundError as error:
        detail = {"original_cheque_id": doc.original_cheque_id, "error": str(error)}
        return Verdict("unmatched", {"error": str(error)}, ("refund_unmatched", detail))
    account = original.account
    earned = _sale_entry(conn, original, EntryKind.earn, "points")
    spent = _sale_entry(conn, original, EntryKind.counter, "rolling_spend")
    rules = _rule_set(conn, original.quote.rule_set_hash, reading)
    returned_expire = (
        None if rules is None else returned_points_expire_at(rules, quoted_at(original, rules))
    )
    specs = (
        ()
        if account is None
        else tuple(_refund_specs(doc, original, refund, (earned, returned_expire, spent)))
    )
    result = {**refund.model_dump(mode="json"), "counted": [row_id for row_id, _ in counted]}
    return Verdict("reconciled", result, entries=specs)


def _sale_entry(
    conn: sa.Connection, sale: ChequeDocument, kind: EntryKind, asset: str
) -> str | None:
    """The id of the sale's entry of `kind` on `asset`: its earn entry, the lot a refund's
    earn reversal takes from; its rolling spend, which dates the refund's reversal of it."""
    if not sale.entry_ids:
        return None
    found = conn.execute(
        sa.select(t.ledger.c.entry_id).where(
            t.ledger.c.entry_id.in_([str(entry_id) for entry_id in sale.entry_ids]),
            t.ledger.c.kind == kind.value,
            t.ledger.c.asset == asset,
        )
    ).scalar()
    return None if found is None else str(found)


def _refund_specs(
    doc: ChequeDocument,
    original: ChequeDocument,
    refund: Refund,
    reversed_: tuple[str | None, datetime | None, str | None],
) -> list[dict[str, Any]]:
    """`reversed_`: the original's earn entry, which the earn reversal takes back from first
    (the sale's own, maybe still pending, lot; not the lots that expire first); when the
    spent points given back expire (`returned_points_expire_at`; None: never, or the sale's
    rules are unknown here); the original's rolling spend entry, which the reversal of that
    spend names, so that it leaves the rolling window with the sale (`central._rolling`)."""
    earned, returned_expire, spent = reversed_
    key = f"refund:{doc.document_id}"
    common = {"account": original.account, "cheque_id": doc.cheque_id}
    specs: list[dict[str, Any]] = []
    if refund.earn_points and original.quote is not None:
        specs.append(
            {
                **common,
                "kind": EntryKind.refund_reversal,
                "amount": -refund.earn_points,
                "activates_at": original.quote.earn_activates_at,
                "reverses": earned,
                "grant_key": f"{key}:earn",
            }
        )
    if refund.burn_points:
        specs.append(
            {
                **common,
                "kind": EntryKind.refund_reversal,
                "amount": refund.burn_points,
                "expires_at": returned_expire,
                "grant_key": f"{key}:burn",
            }
        )
    for index, change in enumerate(refund.counter_changes):
        if change.delta:
            specs.append(
                {
                    **common,
                    "kind": EntryKind.counter,
                    "asset": change.counter,
                    "amount": change.delta,
                    "grant_key": f"{key}:c{index}",
                }
            )
    if refund.rolling_spend_reversed:
        specs.append(
            {
                **common,
                "kind": EntryKind.counter,
                "asset": "rolling_spend",
                "amount": -refund.rolling_spend_reversed,
                "reverses": spent,
                "grant_key": f"{key}:spend",
            }
        )
    return specs
