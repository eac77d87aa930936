"""Who is acting on the admin API, and the audit log of what they did (`GET /admin/audit`)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from fastapi import Request

from central import _credentials
from central import _tables as t


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
