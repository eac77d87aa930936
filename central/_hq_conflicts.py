"""HQ's admin API for conflicts and quarantine, with audited actions (review, write off,
adjust), and the audit log itself."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Path, Query, Request

from central import _entries
from central import _tables as t
from central._admin import _route
from central._audit import _central, actor, audit
from central._clock import to_ms
from central._directory import Refused
from central._hq import Reason, _customer_row, adjust
from protocol import WireModel
from protocol._base import Id, Points

# --- conflicts and quarantine -------------------------------------------------------------


RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
"""A conflict's or quarantine item's number: what a BIGINT holds."""


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


@_route("GET", "/conflicts", tags=["conflicts"])
def list_conflicts(request: Request) -> list[dict[str, Any]]:
    """Every conflict, open or not (the first 1,000)."""
    with _central(request).reader.begin() as conn:
        rows = conn.execute(t.conflicts.select().order_by(t.conflicts.c.id).limit(1000)).all()
    return [_conflict_view(row) for row in rows]


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
    return [_conflict_view(row) for row in rows]


def _conflict_view(row: Any) -> dict[str, Any]:
    """A conflict for HQ: its account, and its detail as JSON (not JSON in a string); the
    payload that raised it is kept at central, not listed."""
    view = {k: v for k, v in row._mapping.items() if k != "incoming_payload"}
    view["detail"] = None if row.detail is None else json.loads(row.detail)
    view["account_key"] = _conflict_account(row)
    return view


@_route("POST", "/conflicts/{conflict_id}/action", tags=["conflicts"])
def act_on_conflict(request: Request, conflict_id: RowId, body: ConflictAction) -> dict[str, Any]:
    """`review`: mark reviewed. `write_off`: bring the account's negative points balance to
    zero with an adjustment. `adjust`: add `points` to the account (a merged customer's is
    refused, naming the customer kept). All audited."""
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
        if body.action == "adjust" and not body.points:
            raise Refused(422, "adjust_needs_points", "give the points to add (negative to take)")
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
def act_on_quarantine(request: Request, item_id: RowId, body: QuarantineAction) -> dict[str, Any]:
    """`review`: mark reviewed. `adjust`: credit `points` to `customer_id` (for an entry that
    could not be applied), then mark it resolved; a merged customer is refused, naming the
    customer kept (`_hq.adjust`). Audited."""
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
    return [{**r._mapping, "detail": json.loads(r.detail)} for r in rows]
