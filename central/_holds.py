"""Online redemption holds: a till that reaches central holds the points it is about to spend,
so two online tills cannot spend the same points.

A hold is placed under the customer's account row lock (FOR UPDATE; on SQLite writers are
serial) against what the ledger says is spendable now, less the other live holds. It is
confirmed when the cheque's burn entry arrives by push, released when the cheque document says
voided, expired or spent nothing (or on the till's release call), and stops counting at its
expiry, which a job records. Phone-only redemption first needs a code sent to the phone.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request

from central import _bulk, _directory, _lots, _plain_entries
from central import _tables as t
from central._clock import from_ms, to_ms
from central._directory import Device, Refused
from central._gateway import MessageGateway
from protocol import (
    ChequeDocument,
    ChequeKind,
    ChequeState,
    EntryKind,
    HoldRequest,
    HoldResponse,
    LedgerEntry,
    new_entry_id,
)

hold_push_grace_s = 600
"""A hold outlives the reservation TTL by this much, for the till to push the burn."""
confirmation_code_ttl_s = 300
confirmation_attempts_max = 5
confirmation_resend_s = 60
confirmation_code_digits = 6
holds_per_batch_max = 1000


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def place(
    conn: sa.Connection, device: Device, asked: HoldRequest, now: datetime, gateway: MessageGateway
) -> HoldResponse | Refused:
    """Place (or return the live) hold for the cheque. A refusal is returned, not raised, so
    the caller commits what it recorded (a code sent, an attempt counted) before refusing."""
    now_ms = to_ms(now)
    status = conn.execute(
        sa.select(t.customers.c.status).where(t.customers.c.customer_id == asked.customer_id)
    ).scalar_one_or_none()
    if status is None:
        return Refused(404, "unknown_customer", f"customer {asked.customer_id!r} is not known")
    if status not in {"active", "provisional"}:
        return Refused(403, "customer_not_active", f"customer {asked.customer_id!r} is {status}")
    account_key = f"customer:{asked.customer_id}"
    conn.execute(
        sa.select(t.accounts.c.balance)
        .where(t.accounts.c.account_key == account_key, t.accounts.c.asset == "points")
        .with_for_update()
    ).first()
    live = conn.execute(
        sa.select(t.holds).where(
            t.holds.c.device_id == device.device_id, t.holds.c.cheque_id == asked.cheque_id
        )
    ).first()
    if (
        live is not None
        and live.state == "held"
        and live.expires_ms > now_ms
        and live.customer_id == asked.customer_id
    ):
        return HoldResponse(
            hold_id=live.hold_id, points=live.points, expires_at=from_ms(live.expires_ms)
        )
    available = _available(conn, account_key, now_ms, exclude=(device.device_id, asked.cheque_id))
    granted = min(asked.points, available)
    if granted <= 0:  # before the code: one sent or used for points not there is wasted
        return Refused(
            409,
            "insufficient_points",
            f"customer {asked.customer_id} has {available} points available to hold",
            {"available": available},
        )
    if asked.phone_only:
        refused = _check_code(conn, device, asked, now, gateway)
        if refused is not None:
            return refused
    ttl_s = _directory.offline_limits(conn).reservation_ttl_s + hold_push_grace_s
    expires_ms = now_ms + ttl_s * 1000
    values = {
        "customer_id": asked.customer_id,
        "account_key": account_key,
        "points": granted,
        "state": "held",
        "created_ms": now_ms,
        "expires_ms": expires_ms,
        "closed_ms": None,
    }
    if live is None:
        hold_id = str(new_entry_id())
        conn.execute(
            sa.insert(t.holds).values(
                hold_id=hold_id, device_id=device.device_id, cheque_id=asked.cheque_id, **values
            )
        )
    else:
        hold_id = live.hold_id
        conn.execute(sa.update(t.holds).where(t.holds.c.hold_id == hold_id).values(values))
    return HoldResponse(hold_id=hold_id, points=granted, expires_at=from_ms(expires_ms))


def _available(conn: sa.Connection, account_key: str, now_ms: int, exclude: tuple[str, str]) -> int:
    spendable = _lots.fold_account(conn, account_key).spendable(now_ms)
    held = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(t.holds.c.points), 0)).where(
            t.holds.c.account_key == account_key,
            t.holds.c.state == "held",
            t.holds.c.expires_ms > now_ms,
            sa.not_(sa.and_(t.holds.c.device_id == exclude[0], t.holds.c.cheque_id == exclude[1])),
        )
    ).scalar_one()
    return max(spendable - int(held), 0)


def _check_code(
    conn: sa.Connection, device: Device, asked: HoldRequest, now: datetime, gateway: MessageGateway
) -> Refused | None:
    now_ms = to_ms(now)
    # A code belongs to the customer at this till, not to one cheque: the till cannot ask
    # again under the cheque id it used to ask for the code (a till never reuses a cheque id
    # for different contents), so the POS reserves again under a new one with the code.
    key = (
        t.confirmation_codes.c.device_id == device.device_id,
        t.confirmation_codes.c.customer_id == asked.customer_id,
        t.confirmation_codes.c.used_ms.is_(None),
        t.confirmation_codes.c.expires_ms > now_ms,
    )
    latest = conn.execute(
        sa.select(t.confirmation_codes).where(*key).order_by(t.confirmation_codes.c.id.desc())
    ).first()
    if asked.confirmation_code is None:
        if latest is None or now_ms - latest.created_ms >= confirmation_resend_s * 1000:
            return _send_code(conn, device, asked, now, gateway)
        return Refused(
            409, "confirmation_required", "a code was sent to the customer's phone; ask for it"
        )
    if latest is None or latest.attempts >= confirmation_attempts_max:
        return Refused(403, "bad_confirmation_code", "no live code for this cheque; ask again")
    if not secrets.compare_digest(latest.code_sha256, _digest(asked.confirmation_code)):
        conn.execute(
            sa.update(t.confirmation_codes)
            .where(t.confirmation_codes.c.id == latest.id)
            .values(attempts=t.confirmation_codes.c.attempts + 1)
        )
        return Refused(403, "bad_confirmation_code", "the confirmation code is wrong")
    conn.execute(
        sa.update(t.confirmation_codes)
        .where(t.confirmation_codes.c.id == latest.id)
        .values(used_ms=now_ms)
    )
    return None


def _send_code(
    conn: sa.Connection, device: Device, asked: HoldRequest, now: datetime, gateway: MessageGateway
) -> Refused:
    phone = conn.execute(
        sa.select(t.contacts.c.phone_e164).where(t.contacts.c.customer_id == asked.customer_id)
    ).scalar_one_or_none()
    if phone is None:
        return Refused(
            409, "no_phone", f"central has no phone to send a code to for {asked.customer_id}"
        )
    code = f"{secrets.randbelow(10**confirmation_code_digits):0{confirmation_code_digits}d}"
    now_ms = to_ms(now)
    conn.execute(
        sa.insert(t.confirmation_codes).values(
            customer_id=asked.customer_id,
            device_id=device.device_id,
            cheque_id=asked.cheque_id,
            code_sha256=_digest(code),
            created_ms=now_ms,
            expires_ms=now_ms + confirmation_code_ttl_s * 1000,
            attempts=0,
        )
    )
    gateway.send(phone, f"Kopilka: code {code} to pay with points", now)
    return Refused(
        409,
        "confirmation_required",
        "a code was sent to the customer's phone; place the hold again with it",
        {"expires_in_s": confirmation_code_ttl_s},
    )


def release(conn: sa.Connection, device: Device, hold_id: str, now_ms: int) -> str:
    row = conn.execute(
        sa.select(t.holds.c.state).where(
            t.holds.c.hold_id == hold_id, t.holds.c.device_id == device.device_id
        )
    ).first()
    if row is None:
        raise Refused(404, "unknown_hold", f"hold {hold_id} is not a hold of this device")
    if row.state == "held":
        conn.execute(
            sa.update(t.holds)
            .where(t.holds.c.hold_id == hold_id, t.holds.c.state == "held")
            .values(state="released", closed_ms=now_ms)
        )
        return "released"
    return str(row.state)


def settle(
    conn: sa.Connection,
    device_id: str,
    entries: Iterable[LedgerEntry | _plain_entries.PlainEntry],
    documents: Iterable[ChequeDocument],
    now_ms: int,
    deferred: _bulk.Deferred | None = None,
) -> None:
    """Called by push in the batch's transaction: a burn confirms its cheque's hold; a
    document that says the cheque was voided, expired or spent nothing releases it. The
    updates go to `deferred` when given."""
    confirmed = {e.cheque_id for e in entries if e.kind is EntryKind.burn and e.cheque_id}
    released = {
        d.cheque_id
        for d in documents
        if d.kind is ChequeKind.sale
        and (
            d.state in {ChequeState.voided, ChequeState.expired}
            or (d.state is ChequeState.confirmed and (d.quote is None or d.quote.burn_points == 0))
        )
    }
    sink = deferred or _bulk.Deferred(conn)
    for state, cheques in (("confirmed", confirmed), ("released", released - confirmed)):
        if cheques:
            where, listed = _bulk.among(conn, "cheque_id", cheques)
            sink.execute(
                "UPDATE holds SET state = %s, closed_ms = %s "
                f"WHERE device_id = %s AND state = 'held' AND {where}",
                (state, now_ms, device_id, listed),
            )
    if deferred is None:
        sink.flush()


def expire(engine: sa.Engine, now: datetime) -> tuple[int, int | None]:
    """Record holds past their expiry as expired (they stopped counting at expiry already)."""
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(t.holds)
            .where(t.holds.c.state == "held", t.holds.c.expires_ms <= to_ms(now))
            .values(state="expired", closed_ms=to_ms(now))
        ).rowcount
    return int(done), 0


def _me(request: Request) -> Device:
    from central._app import device

    return device(request)


DeviceAuth = Annotated[Device, Depends(_me)]


def install(app: FastAPI) -> None:
    """`POST /sync/holds` and `POST /sync/holds/{hold_id}/release` for tills."""

    @app.post("/sync/holds", response_model=HoldResponse, tags=["sync"])
    def place_hold(request: Request, body: HoldRequest, me: DeviceAuth) -> Any:
        if body.device_id != me.device_id:
            raise Refused(403, "wrong_device", "device_id is not the authenticated device")
        central = request.app.state.central
        gateway = request.app.state.gateway
        with central.writing(), central.engine.begin() as conn:
            answer = place(conn, me, body, central.clock(), gateway)
        if isinstance(answer, Refused):
            raise answer
        return answer

    @app.post("/sync/holds/{hold_id}/release", tags=["sync"])
    def release_hold(request: Request, hold_id: str, me: DeviceAuth) -> dict[str, str]:
        central = request.app.state.central
        with central.writing(), central.engine.begin() as conn:
            state = release(conn, me, hold_id, to_ms(central.clock()))
        return {"hold_id": hold_id, "state": state}
