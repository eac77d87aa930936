"""HQ's admin API beyond the core: customers, adjustments, rule sets, sync health, conflicts
and quarantine with audited actions, jobs. Every route sits under `/admin` behind the admin
token (`central._admin`); OpenAPI at `/docs`."""

from __future__ import annotations

import difflib
import io
import json
import tempfile
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Body, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, Field
from starlette.concurrency import run_in_threadpool

from central import _changes, _credentials, _csvio, _db, _directory, _entries, _jobs, _lots
from central import _tables as t
from central._admin import _route
from central._clock import to_ms
from central._directory import Refused
from protocol import (
    CardIdentifier,
    IdentifierRejected,
    PhoneHasher,
    RuleSetError,
    WireModel,
    normalize_phone,
    parse_card,
    parse_rule_set,
)
from protocol._base import Id, Points

search_results_max = 100
Reason = Annotated[str, Field(min_length=3, max_length=500)]


def _central(request: Request) -> Any:
    return request.app.state.central


def actor(request: Request) -> str:
    """The label of the admin token making the call (routes run only behind `admin`)."""
    token = _credentials.bearer(request.headers.get("authorization")) or ""
    with _central(request).reader.connect() as conn:
        label = conn.execute(
            sa.select(t.admin_tokens.c.label).where(
                t.admin_tokens.c.token_sha256 == _credentials.digest(token)
            )
        ).scalar_one_or_none()
    return f"admin:{label}"


def audit(
    conn: sa.Connection, who: str, action: str, target: str, detail: Any, now_ms: int
) -> None:
    conn.execute(
        sa.insert(t.audit_log).values(
            actor=who,
            action=action,
            target=target,
            detail=json.dumps(detail, sort_keys=True, default=str),
            created_ms=now_ms,
        )
    )


def _customer_row(conn: sa.Connection, customer_id: str) -> Any:
    row = conn.execute(
        sa.select(t.customers).where(t.customers.c.customer_id == customer_id)
    ).first()
    if row is None:
        raise Refused(404, "unknown_customer", f"customer {customer_id!r} does not exist")
    return row


def _publish_customer(conn: sa.Connection, customer_id: str, now_ms: int) -> None:
    _changes.append(conn, [_changes.customer_body(conn, customer_id)], now_ms)


# --- customers ----------------------------------------------------------------------------


@_route("GET", "/customers", tags=["customers"])
def search_customers(
    request: Request,
    phone: Annotated[str | None, Query(max_length=32)] = None,
    card: Annotated[str | None, Query(max_length=64)] = None,
    name: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=search_results_max)] = 20,
) -> list[dict[str, Any]]:
    """Find customers by phone (any format), card number, or first-name prefix."""
    with _central(request).reader.begin() as conn:
        query = sa.select(t.customers.c.customer_id)
        if phone is not None:
            key = _directory.setting(conn, "phone_hash_key_hex") or ""
            try:
                digest = PhoneHasher(bytes.fromhex(key))(normalize_phone(phone))
            except IdentifierRejected as error:
                raise Refused(422, "bad_phone", f"phone {phone!r}: {error.reason}") from None
            query = query.join(t.identifiers).where(
                t.identifiers.c.kind == "phone_hash", t.identifiers.c.value == digest
            )
        if card is not None:
            query = query.join(t.identifiers).where(
                t.identifiers.c.kind == "card", t.identifiers.c.value == card
            )
        if name is not None:
            query = query.where(t.customers.c.first_name.startswith(name))
        ids = conn.execute(query.order_by(t.customers.c.customer_id).limit(limit)).scalars()
        return [customer_view(conn, customer_id) for customer_id in ids]


def customer_view(conn: sa.Connection, customer_id: str) -> dict[str, Any]:
    row = _customer_row(conn, customer_id)
    key = f"customer:{customer_id}"
    balances = {
        r.asset: r.balance
        for r in conn.execute(sa.select(t.accounts).where(t.accounts.c.account_key == key))
    }
    return {
        **{k: v for k, v in row._mapping.items()},
        "identifiers": _changes.identifier_bodies(conn, customer_id),
        "balances": balances,
    }


@_route("GET", "/customers/{customer_id}", tags=["customers"])
def get_customer(request: Request, customer_id: str) -> dict[str, Any]:
    """A customer with identifiers, balances, lots left and live holds."""
    central = _central(request)
    with central.reader.begin() as conn:
        view = customer_view(conn, customer_id)
        folded = _lots.fold_account(conn, f"customer:{customer_id}")
        view["lots"] = [lot.__dict__ for lot in folded.lots.values() if lot.left > 0]
        view["debt"] = folded.debt
        view["holds"] = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(t.holds).where(
                    t.holds.c.customer_id == customer_id, t.holds.c.state == "held"
                )
            )
        ]
    return view


class CardBody(WireModel):
    number: Annotated[str, Field(min_length=6, max_length=64)]


def _card(conn: sa.Connection, number: str) -> str:
    ranges = _directory.card_ranges(conn)
    try:
        if not ranges:  # no ranges configured: any well-formed card number
            return CardIdentifier(number=number.strip()).number
        digits, _ = parse_card(number, ranges)
    except IdentifierRejected as error:
        raise Refused(422, "bad_card", f"card {number!r}: {error.reason}") from None
    except ValueError:
        raise Refused(422, "bad_card", f"card {number!r} is not a card number") from None
    return CardIdentifier(number=digits).number


@_route("POST", "/customers/{customer_id}/cards", tags=["customers"])
def attach_card(request: Request, customer_id: str, body: CardBody) -> dict[str, Any]:
    """Link a card to a customer; entries a till recorded on that card move to the customer
    at the next run of the `resolve` job."""
    central = _central(request)
    now_ms = to_ms(central.clock())
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        _customer_row(conn, customer_id)
        number = _card(conn, body.number)
        _link(conn, customer_id, "card", number, now_ms)
        audit(conn, who, "attach_card", customer_id, {"card": number}, now_ms)
        _publish_customer(conn, customer_id, now_ms)
        return customer_view(conn, customer_id)


def _link(conn: sa.Connection, customer_id: str, kind: str, value: str, now_ms: int) -> None:
    owner = conn.execute(
        sa.select(t.identifiers.c.customer_id).where(
            t.identifiers.c.kind == kind, t.identifiers.c.value == value
        )
    ).scalar_one_or_none()
    if owner == customer_id:
        return
    if owner is not None:
        raise Refused(409, "identifier_taken", f"{kind} belongs to customer {owner}")
    conn.execute(
        sa.insert(t.identifiers).values(
            kind=kind, value=value, customer_id=customer_id, created_ms=now_ms
        )
    )


class ReplaceCard(WireModel):
    old_number: Annotated[str, Field(min_length=6, max_length=64)]
    new_number: Annotated[str, Field(min_length=6, max_length=64)]
    reason: Reason = "card lost"


@_route("POST", "/customers/{customer_id}/replace-card", tags=["customers"])
def replace_card(request: Request, customer_id: str, body: ReplaceCard) -> dict[str, Any]:
    """The lost card stops identifying the customer; the new one does."""
    central = _central(request)
    now_ms = to_ms(central.clock())
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        _customer_row(conn, customer_id)
        old = _card(conn, body.old_number)
        new = _card(conn, body.new_number)
        gone = conn.execute(
            sa.delete(t.identifiers).where(
                t.identifiers.c.kind == "card",
                t.identifiers.c.value == old,
                t.identifiers.c.customer_id == customer_id,
            )
        ).rowcount
        if gone != 1:
            raise Refused(404, "unknown_card", f"card {old} is not a card of {customer_id}")
        _link(conn, customer_id, "card", new, now_ms)
        audit(conn, who, "replace_card", customer_id, {"old": old, "new": new}, now_ms)
        _publish_customer(conn, customer_id, now_ms)
        return customer_view(conn, customer_id)


class StatusBody(WireModel):
    status: Literal["active", "blocked"]
    reason: Reason


@_route("POST", "/customers/{customer_id}/status", tags=["customers"])
def set_status(request: Request, customer_id: str, body: StatusBody) -> dict[str, Any]:
    """Block or unblock a customer (a blocked customer earns nothing new and cannot spend)."""
    central = _central(request)
    now_ms = to_ms(central.clock())
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        row = _customer_row(conn, customer_id)
        if row.status not in {"active", "blocked", "provisional"}:
            raise Refused(409, "not_changeable", f"customer {customer_id} is {row.status}")
        conn.execute(
            sa.update(t.customers)
            .where(t.customers.c.customer_id == customer_id)
            .values(status=body.status, updated_ms=now_ms)
        )
        audit(conn, who, f"status_{body.status}", customer_id, {"reason": body.reason}, now_ms)
        _publish_customer(conn, customer_id, now_ms)
        return customer_view(conn, customer_id)


class ConsentBody(WireModel):
    consent_marketing: bool
    consent_data: bool


@_route("PUT", "/customers/{customer_id}/consent", tags=["customers"])
def set_consent(request: Request, customer_id: str, body: ConsentBody) -> dict[str, Any]:
    central = _central(request)
    now_ms = to_ms(central.clock())
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        _customer_row(conn, customer_id)
        conn.execute(
            sa.update(t.customers)
            .where(t.customers.c.customer_id == customer_id)
            .values(**body.model_dump(), updated_ms=now_ms)
        )
        audit(conn, who, "consent", customer_id, body.model_dump(), now_ms)
        _publish_customer(conn, customer_id, now_ms)
        return customer_view(conn, customer_id)


class MergeBody(WireModel):
    duplicate_id: Id
    keep_id: Id
    reason: Reason


@_route("POST", "/customers/merge", tags=["customers"])
def merge_customers(request: Request, body: MergeBody) -> dict[str, Any]:
    """Merge a duplicate into the customer kept: its points (lot by lot), counters and
    identifiers move; the duplicate becomes `merged` with `merged_into`."""
    if body.duplicate_id == body.keep_id:
        raise Refused(422, "same_customer", "a customer cannot be merged into itself")
    central = _central(request)
    now = central.clock()
    now_ms = to_ms(now)
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        for customer_id in sorted([body.duplicate_id, body.keep_id]):
            row = _customer_row(conn, customer_id)
            if row.status in {"merged", "erased"}:
                raise Refused(409, "not_mergeable", f"customer {customer_id} is {row.status}")
        made = _lots.move(
            conn,
            f"customer:{body.duplicate_id}",
            f"customer:{body.keep_id}",
            now,
            f"customer {body.duplicate_id} merged into {body.keep_id}",
        )
        conn.execute(
            sa.update(t.identifiers)
            .where(t.identifiers.c.customer_id == body.duplicate_id)
            .values(customer_id=body.keep_id)
        )
        conn.execute(
            sa.update(t.customers)
            .where(t.customers.c.customer_id == body.duplicate_id)
            .values(status="merged", merged_into=body.keep_id, updated_ms=now_ms)
        )
        detail = {"into": body.keep_id, "entries": len(made), "reason": body.reason}
        audit(conn, who, "merge", body.duplicate_id, detail, now_ms)
        _publish_customer(conn, body.duplicate_id, now_ms)
        _publish_customer(conn, body.keep_id, now_ms)
        return customer_view(conn, body.keep_id)


class Adjustment(WireModel):
    points: Points
    reason: Reason
    asset: Annotated[str, Field(max_length=64)] = "points"


def adjust(conn: sa.Connection, account_key: str, amount: int, reason: str, now: datetime) -> str:
    if amount == 0:
        raise Refused(422, "zero_adjustment", "an adjustment must move something")
    entry = {
        "kind": "adjust",
        "account": _entries.account_of(account_key),
        "amount": amount,
        "reason": reason,
    }
    made = _entries.write(conn, [entry], now)
    return str(made[0].entry_id)


@_route("POST", "/customers/{customer_id}/adjustments", tags=["customers"])
def post_adjustment(request: Request, customer_id: str, body: Adjustment) -> dict[str, Any]:
    """Add or take points with a reason: an `adjust` entry from central, audited."""
    central = _central(request)
    now = central.clock()
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        _customer_row(conn, customer_id)
        entry_id = adjust(conn, f"customer:{customer_id}", body.points, body.reason, now)
        detail = {"points": body.points, "reason": body.reason, "entry_id": entry_id}
        audit(conn, who, "adjust", customer_id, detail, to_ms(now))
    return {"customer_id": customer_id, "entry_id": entry_id}


# --- rule sets ----------------------------------------------------------------------------

TomlText = Annotated[str, Body(media_type="text/plain", max_length=4 * 1024 * 1024)]


def _parse(text: str) -> Any:
    try:
        return parse_rule_set(text, source="upload")
    except RuleSetError as error:
        raise Refused(422, "invalid_rule_set", str(error)) from None


def _current(conn: sa.Connection, now_ms: int) -> Any:
    return conn.execute(
        sa.select(t.rule_sets)
        .where(t.rule_sets.c.effective_from_ms <= now_ms)
        .order_by(t.rule_sets.c.effective_from_ms.desc(), t.rule_sets.c.published_ms.desc())
        .limit(1)
    ).first()


@_route("POST", "/rule-sets/validate", tags=["rule sets"])
def validate_rule_set(request: Request, text: TomlText) -> dict[str, Any]:
    """Check a TOML rule set without publishing it: 422 with the first error, else its id and
    content hash."""
    rules = _parse(text)
    return {"valid": True, "rule_set_id": rules.rule_set_id, "content_hash": rules.content_hash}


@_route("POST", "/rule-sets/diff", tags=["rule sets"])
def diff_rule_set(request: Request, text: TomlText) -> dict[str, Any]:
    """A unified diff of the uploaded rule set against the one in force now."""
    rules = _parse(text)
    central = _central(request)
    with central.reader.begin() as conn:
        current = _current(conn, to_ms(central.clock()))
    new = json.dumps(rules.model_dump(mode="json"), indent=1, sort_keys=True).splitlines()
    old = (
        []
        if current is None
        else json.dumps(json.loads(current.document), indent=1, sort_keys=True).splitlines()
    )
    lines = list(
        difflib.unified_diff(
            old,
            new,
            "current" if current is None else current.rule_set_id,
            rules.rule_set_id,
            lineterm="",
        )
    )
    return {
        "current": None if current is None else current.rule_set_id,
        "candidate": rules.rule_set_id,
        "same": current is not None and current.content_hash == rules.content_hash,
        "diff": lines,
    }


@_route("POST", "/rule-sets/publish", tags=["rule sets"])
def publish_toml(
    request: Request,
    text: TomlText,
    effective_from: Annotated[AwareDatetime | None, Query()] = None,
) -> dict[str, Any]:
    """Publish a TOML rule set (immutable); `effective_from` replaces the one in the file.
    Tills receive it in the pull stream as a RuleSetChange."""
    rules = _parse(text)
    if effective_from is not None:
        rules = rules.model_copy(update={"effective_from": effective_from})
    document = rules.model_dump(mode="json")
    central = _central(request)
    now_ms = to_ms(central.clock())
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        digest = _directory.publish_rule_set(
            conn,
            rules.rule_set_id,
            rules.effective_from.isoformat(),
            to_ms(rules.effective_from),
            document,
            now_ms,
        )
        audit(conn, who, "publish_rule_set", rules.rule_set_id, {"hash": digest}, now_ms)
    return {
        "rule_set_id": rules.rule_set_id,
        "content_hash": digest,
        "effective_from": rules.effective_from.isoformat(),
    }


@_route("GET", "/rule-sets", tags=["rule sets"])
def list_rule_sets(request: Request) -> dict[str, Any]:
    central = _central(request)
    with central.reader.begin() as conn:
        rows = conn.execute(
            sa.select(
                t.rule_sets.c.rule_set_id,
                t.rule_sets.c.content_hash,
                t.rule_sets.c.effective_from,
                t.rule_sets.c.published_ms,
            ).order_by(t.rule_sets.c.effective_from_ms)
        ).all()
        current = _current(conn, to_ms(central.clock()))
    return {
        "current": None if current is None else current.rule_set_id,
        "rule_sets": [dict(r._mapping) for r in rows],
    }


# --- offline limits, stores, devices ------------------------------------------------------


@_route("GET", "/offline-limits", tags=["devices"])
def get_offline_limits(request: Request) -> dict[str, Any]:
    with _central(request).reader.begin() as conn:
        return _directory.offline_limits(conn).model_dump(mode="json")


@_route("GET", "/stores", tags=["devices"])
def list_stores(request: Request) -> list[dict[str, Any]]:
    with _central(request).reader.begin() as conn:
        rows = conn.execute(sa.select(t.stores).order_by(t.stores.c.store_id)).all()
    return [dict(r._mapping) for r in rows]


@_route("GET", "/devices/health", tags=["devices"])
def device_health(request: Request) -> list[dict[str, Any]]:
    """Each till: last seen, last acknowledged seq, outbox lag (how old the newest record it
    pushed was when it arrived), clock skew (its clock minus central's at the last push)."""
    central = _central(request)
    now_ms = to_ms(central.clock())
    with central.reader.begin() as conn:
        devices = _directory.list_devices(conn)
        for device in devices:
            last = conn.execute(
                sa.select(t.ledger.c.device_time_ms, t.ledger.c.received_ms)
                .where(
                    t.ledger.c.device_id == device["device_id"],
                    t.ledger.c.device_epoch == device["epoch"],
                )
                .order_by(t.ledger.c.device_seq.desc())
                .limit(1)
            ).first()
            seen = device["last_push_ms"]
            device["last_seen_ago_s"] = None if seen is None else (now_ms - int(str(seen))) // 1000
            device["outbox_lag_ms"] = (
                None if last is None else max(last.received_ms - last.device_time_ms, 0)
            )
    return devices


# --- conflicts and quarantine -------------------------------------------------------------


class ConflictAction(WireModel):
    action: Literal["review", "write_off", "adjust"]
    note: Reason
    points: Points | None = None
    """For `adjust`: the points to add (negative to take) on the conflict's account."""


def _conflict_account(row: Any) -> str | None:
    """The account a conflict is about: named in its detail, or by the record it holds."""
    if row.detail:
        detail = json.loads(row.detail)
        if isinstance(detail, dict) and detail.get("account_key"):
            return str(detail["account_key"])
    try:
        record = json.loads(row.incoming_payload)
    except ValueError:
        return None
    account = record.get("account") if isinstance(record, dict) else None
    return None if not account else _entries.key_of(account)


@_route("GET", "/conflicts/open", tags=["conflicts"])
def open_conflicts(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[dict[str, Any]]:
    with _central(request).reader.begin() as conn:
        rows = conn.execute(
            sa.select(t.conflicts)
            .where(t.conflicts.c.status == "open")
            .order_by(t.conflicts.c.id)
            .limit(limit)
        ).all()
    return [{k: v for k, v in r._mapping.items() if k != "incoming_payload"} for r in rows]


@_route("POST", "/conflicts/{conflict_id}/action", tags=["conflicts"])
def act_on_conflict(request: Request, conflict_id: int, body: ConflictAction) -> dict[str, Any]:
    """`review`: mark reviewed. `write_off`: bring the account's negative points balance to
    zero with an adjustment. `adjust`: add `points` to the account. All audited."""
    central = _central(request)
    now = central.clock()
    now_ms = to_ms(now)
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        row = conn.execute(
            sa.select(t.conflicts).where(t.conflicts.c.id == conflict_id).with_for_update()
        ).first()
        if row is None:
            raise Refused(404, "unknown_conflict", f"conflict {conflict_id} does not exist")
        if row.status != "open":
            raise Refused(409, "conflict_closed", f"conflict {conflict_id} is {row.status}")
        entry_id = None
        if body.action != "review":
            key = _conflict_account(row)
            if key is None:
                raise Refused(409, "no_account", "this conflict names no account to adjust")
            amount = body.points or 0
            if body.action == "write_off":
                balance = conn.execute(
                    sa.select(t.accounts.c.balance).where(
                        t.accounts.c.account_key == key, t.accounts.c.asset == "points"
                    )
                ).scalar_one_or_none()
                amount = max(-(balance or 0), 0)
            if amount != 0:
                entry_id = adjust(conn, key, amount, f"conflict {conflict_id}: {body.note}", now)
        status = {"review": "reviewed", "write_off": "written_off", "adjust": "adjusted"}
        conn.execute(
            sa.update(t.conflicts)
            .where(t.conflicts.c.id == conflict_id)
            .values(status=status[body.action], resolved_ms=now_ms)
        )
        detail = {"note": body.note, "points": body.points, "entry_id": entry_id}
        audit(conn, who, f"conflict_{body.action}", f"conflict:{conflict_id}", detail, now_ms)
    return {"conflict_id": conflict_id, "status": status[body.action], "entry_id": entry_id}


@_route("GET", "/quarantine", tags=["conflicts"])
def list_quarantine(
    request: Request, status: Annotated[str, Query(max_length=16)] = "open"
) -> list[dict[str, Any]]:
    with _central(request).reader.begin() as conn:
        rows = conn.execute(
            sa.select(t.quarantine)
            .where(t.quarantine.c.status == status)
            .order_by(t.quarantine.c.id)
            .limit(1000)
        ).all()
    return [
        {**{k: v for k, v in r._mapping.items() if k != "payload"}, "payload": r.payload.decode()}
        for r in rows
    ]


class QuarantineAction(WireModel):
    action: Literal["review", "adjust"]
    note: Reason
    customer_id: Id | None = None
    points: Points | None = None


@_route("POST", "/quarantine/{item_id}/action", tags=["conflicts"])
def act_on_quarantine(request: Request, item_id: int, body: QuarantineAction) -> dict[str, Any]:
    """`review`: mark reviewed. `adjust`: credit `points` to `customer_id` (for an entry that
    could not be applied), then mark it resolved. Audited."""
    central = _central(request)
    now = central.clock()
    now_ms = to_ms(now)
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        row = conn.execute(sa.select(t.quarantine).where(t.quarantine.c.id == item_id)).first()
        if row is None or row.status != "open":
            raise Refused(404, "unknown_item", f"no open quarantine item {item_id}")
        entry_id = None
        if body.action == "adjust":
            if body.customer_id is None or not body.points:
                raise Refused(422, "adjust_needs_target", "give customer_id and points")
            _customer_row(conn, body.customer_id)
            why = f"quarantine {item_id}: {body.note}"
            entry_id = adjust(conn, f"customer:{body.customer_id}", body.points, why, now)
        status = "reviewed" if body.action == "review" else "adjusted"
        conn.execute(
            sa.update(t.quarantine)
            .where(t.quarantine.c.id == item_id)
            .values(status=status, resolved_ms=now_ms)
        )
        detail = {"note": body.note, "entry_id": entry_id, "customer_id": body.customer_id}
        audit(conn, who, f"quarantine_{body.action}", f"quarantine:{item_id}", detail, now_ms)
    return {"item_id": item_id, "status": status, "entry_id": entry_id}


@_route("GET", "/audit", tags=["conflicts"])
def audit_log(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[dict[str, Any]]:
    with _central(request).reader.begin() as conn:
        rows = conn.execute(
            sa.select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]


# --- jobs ---------------------------------------------------------------------------------


@_route("GET", "/jobs", tags=["jobs"])
def job_states(request: Request) -> list[dict[str, Any]]:
    """Each job: runs, last start/finish/success, last error, items, lag, lease holder."""
    central = _central(request)
    with central.reader.begin() as conn:
        return _jobs.states(conn, to_ms(central.clock()))


@_route("POST", "/jobs/{name}/run", tags=["jobs"])
def run_job(request: Request, name: str) -> dict[str, Any]:
    """Run one job now (under its lease, like the scheduler)."""
    job = _jobs.BY_NAME.get(name)
    if job is None:
        raise Refused(404, "unknown_job", f"no job {name!r}; jobs: {sorted(_jobs.BY_NAME)}")
    central = _central(request)
    with central.writing():
        outcome = _jobs.run(central.engine, job, central.clock(), _jobs.holder_name())
    return outcome.__dict__


# --- CSV import and export ----------------------------------------------------------------

spool_memory_bytes = 8 * 1024 * 1024
_importers = {"customers": _csvio.import_customers, "history": _csvio.import_history}
_exporters = {
    "customers": _csvio.export_customers,
    "balances": _csvio.export_balances,
    "ledger": _csvio.export_ledger,
}


@_route("POST", "/import/{kind}", tags=["import and export"])
async def import_csv(request: Request, kind: Literal["customers", "history"]) -> Any:
    """Import a CSV (UTF-8, header row) streamed in the body. `customers`: customer_id,
    first_name, phone, card, birthday, tier, language, consent_marketing, consent_data, points,
    points_expire_at. `history`: customer_id, purchase_id, purchased_at, total_kopecks.
    Answers with the report: rows, imported, unchanged, entries, rejected (line, reason)."""
    central = _central(request)
    who = actor(request)
    spool = tempfile.SpooledTemporaryFile(max_size=spool_memory_bytes)  # noqa: SIM115
    async for chunk in request.stream():
        spool.write(chunk)
    spool.seek(0)

    def work() -> _csvio.Report:
        text = io.TextIOWrapper(spool, encoding="utf-8-sig", newline="")
        try:
            with central.writing():
                now = central.clock()
                try:
                    report = _importers[kind](central.engine, text, now)
                except (_csvio.BadRow, UnicodeDecodeError) as error:
                    raise Refused(422, "bad_csv", str(error)) from None
                with central.engine.begin() as conn:
                    summary = {k: v for k, v in report.__dict__.items() if k != "rejected"}
                    audit(conn, who, f"import_{kind}", kind, summary, to_ms(now))
            return report
        finally:
            text.close()

    report = await run_in_threadpool(work)
    return report.__dict__


@_route("GET", "/export/{kind}.csv", tags=["import and export"])
def export_csv(
    request: Request, kind: Literal["customers", "balances", "ledger"]
) -> StreamingResponse:
    """Stream customers, balances or the whole ledger as CSV, a page at a time."""
    engine = _db.reading(_central(request).engine)
    return StreamingResponse(
        _exporters[kind](engine),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{kind}.csv"'},
    )
