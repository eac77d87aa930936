"""Who is who at central: stores, devices and their credentials, customers, chain settings."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from central import _changes, _credentials, _erasure
from central import _tables as t
from central._clock import to_ms
from protocol import (
    CENTRAL_DEVICE_ID,
    CardRange,
    EnrollRequest,
    EnrollResponse,
    IdentifierRejected,
    OfflineLimits,
    PhoneHasher,
    RuleSet,
    Store,
    content_hash,
    effective_rule_set,
    normalize_phone,
)
from protocol._sync import identifiers_per_customer_max

enrollment_code_ttl_ms = 7 * 86400 * 1000
phone_hash_key_bytes = 32


class Refused(Exception):
    """An operating error with an HTTP status, a stable code and a sentence for a person."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, int | str | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


# --- chain settings -----------------------------------------------------------------------


def setting(conn: sa.Connection, name: str) -> str | None:
    return conn.execute(
        sa.select(t.settings.c.value).where(t.settings.c.name == name)
    ).scalar_one_or_none()


def put_setting(conn: sa.Connection, name: str, value: str) -> None:
    if setting(conn, name) is None:
        conn.execute(sa.insert(t.settings).values(name=name, value=value))
    else:
        conn.execute(sa.update(t.settings).where(t.settings.c.name == name).values(value=value))


def ensure_chain(conn: sa.Connection, now_ms: int) -> None:
    """Create the chain's phone-hash key and central's pseudo-device on first start."""
    if setting(conn, "phone_hash_key_hex") is None:
        put_setting(conn, "phone_hash_key_hex", secrets.token_hex(phone_hash_key_bytes))
    present = conn.execute(
        sa.select(t.devices.c.device_id).where(t.devices.c.device_id == CENTRAL_DEVICE_ID)
    ).first()
    if present is None:
        conn.execute(
            sa.insert(t.devices).values(
                device_id=CENTRAL_DEVICE_ID,
                store_id=None,
                status="enrolled",
                current_epoch=1,
                secret_sha256=None,
                hostname="central",
                created_ms=now_ms,
            )
        )
        conn.execute(
            sa.insert(t.device_epochs).values(
                device_id=CENTRAL_DEVICE_ID, epoch=1, acked_seq=0, started_ms=now_ms
            )
        )


def offline_limits(conn: sa.Connection) -> OfflineLimits:
    raw = setting(conn, "offline_limits")
    return OfflineLimits() if raw is None else OfflineLimits.model_validate_json(raw)


def set_offline_limits(conn: sa.Connection, limits: OfflineLimits, now_ms: int) -> None:
    put_setting(conn, "offline_limits", limits.model_dump_json())
    _changes.append(conn, [_changes.limits_body(limits)], now_ms)


def rule_set_in_force(conn: sa.Connection, now: datetime) -> Any:
    """The row of the rule set in force at `now`, chosen by the evaluator's own rule
    (`protocol.effective_rule_set`: the latest `effective_from`, ties to the greater
    `rule_set_id`), so HQ is shown the rules tills and recomputation use. It is chosen among
    the few rows that can win: those starting in the millisecond of `now` (one may start
    later within it) and those of the latest earlier millisecond."""
    now_ms = to_ms(now)
    starts = t.rule_sets.c.effective_from_ms
    earlier = sa.select(sa.func.max(starts)).where(starts < now_ms).scalar_subquery()
    rows = conn.execute(
        sa.select(t.rule_sets).where(starts <= now_ms, starts >= sa.func.coalesce(earlier, now_ms))
    ).all()
    by_id = {row.rule_set_id: row for row in rows}
    chosen = effective_rule_set([RuleSet.model_validate_json(row.document) for row in rows], now)
    return None if chosen is None else by_id[chosen.rule_set_id]


def card_ranges(conn: sa.Connection) -> tuple[CardRange, ...]:
    raw = setting(conn, "card_ranges")
    return () if raw is None else tuple(CardRange.model_validate(item) for item in json.loads(raw))


def set_card_ranges(conn: sa.Connection, ranges: tuple[CardRange, ...]) -> None:
    put_setting(conn, "card_ranges", json.dumps([r.model_dump(mode="json") for r in ranges]))


# --- stores -------------------------------------------------------------------------------


def store(conn: sa.Connection, store_id: str) -> Store | None:
    row = conn.execute(sa.select(t.stores).where(t.stores.c.store_id == store_id)).first()
    if row is None:
        return None
    return Store(store_id=row.store_id, name=row.name, timezone=row.timezone, currency=row.currency)


def put_store(conn: sa.Connection, new: Store, now_ms: int) -> Store:
    if store(conn, new.store_id) is None:
        conn.execute(sa.insert(t.stores).values(**new.model_dump(), created_ms=now_ms))
    else:
        values = new.model_dump(exclude={"store_id"})
        conn.execute(sa.update(t.stores).where(t.stores.c.store_id == new.store_id).values(values))
    return new


# --- enrollment and devices ---------------------------------------------------------------


def issue_enrollment_code(conn: sa.Connection, store_id: str, now_ms: int) -> tuple[str, int]:
    """A one-time code for a till of `store_id`; returns it and its expiry (ms)."""
    if store(conn, store_id) is None:
        raise Refused(404, "unknown_store", f"store {store_id!r} does not exist")
    code = _credentials.new_enrollment_code()
    expires_ms = now_ms + enrollment_code_ttl_ms
    conn.execute(
        sa.insert(t.enrollment_codes).values(
            code_sha256=_credentials.digest(code),
            store_id=store_id,
            created_ms=now_ms,
            expires_ms=expires_ms,
        )
    )
    return code, expires_ms


def enroll(conn: sa.Connection, request: EnrollRequest, now_ms: int) -> EnrollResponse:
    code_hash = _credentials.digest(_credentials.normalize_code(request.code))
    row = conn.execute(
        sa.select(t.enrollment_codes)
        .where(t.enrollment_codes.c.code_sha256 == code_hash)
        .with_for_update()
    ).first()
    if row is None or row.used_ms is not None or row.expires_ms < now_ms:
        raise Refused(401, "bad_enrollment_code", "the enrollment code is unknown, used or expired")
    secret = _credentials.new_device_secret()
    device_id, epoch = _device_for(conn, request, row.store_id, secret, now_ms)
    conn.execute(
        sa.update(t.enrollment_codes)
        .where(t.enrollment_codes.c.code_sha256 == code_hash)
        .values(used_ms=now_ms, used_by=device_id)
    )
    shop = store(conn, row.store_id)
    if shop is None:
        raise AssertionError("an enrollment code names a store that does not exist")
    key = setting(conn, "phone_hash_key_hex")
    if key is None:
        raise AssertionError("the chain's phone-hash key is missing; run migrate")
    return EnrollResponse(
        device_id=device_id,
        device_epoch=epoch,
        secret=secret,
        store=shop,
        phone_hash_key_hex=key,
        card_ranges=card_ranges(conn),
    )


def _device_for(
    conn: sa.Connection, request: EnrollRequest, store_id: str, secret: str, now_ms: int
) -> tuple[str, int]:
    """A new device, or a new epoch of the previous one (a reinstalled or restored till)."""
    previous = None
    if request.previous_device_id is not None:
        previous = conn.execute(
            sa.select(t.devices)
            .where(t.devices.c.device_id == request.previous_device_id)
            .with_for_update()
        ).first()
        if previous is None or previous.store_id != store_id or previous.status != "enrolled":
            raise Refused(
                409, "bad_previous_device", "the previous device is unknown, revoked or elsewhere"
            )
    if previous is None and request.device_id is not None:
        taken = conn.execute(
            sa.select(t.devices.c.device_id).where(t.devices.c.device_id == request.device_id)
        ).first()
        if taken is not None:
            raise Refused(409, "device_id_taken", "another till already uses this device id")
    if previous is None:
        device_id = request.device_id or f"d-{uuid.uuid4().hex[:20]}"
        epoch = request.device_epoch or 1
        conn.execute(
            sa.insert(t.devices).values(
                device_id=device_id,
                store_id=store_id,
                status="enrolled",
                current_epoch=epoch,
                secret_sha256=_credentials.digest(secret),
                hostname=request.hostname,
                created_ms=now_ms,
            )
        )
    else:
        device_id, epoch = previous.device_id, previous.current_epoch + 1
        conn.execute(
            sa.update(t.devices)
            .where(t.devices.c.device_id == device_id)
            .values(
                current_epoch=epoch,
                secret_sha256=_credentials.digest(secret),
                hostname=request.hostname,
            )
        )
    conn.execute(
        sa.insert(t.device_epochs).values(
            device_id=device_id, epoch=epoch, acked_seq=0, started_ms=now_ms
        )
    )
    return device_id, epoch


@dataclass(frozen=True)
class Device:
    device_id: str
    store_id: str
    epoch: int


def device_by_secret(conn: sa.Connection, secret: str) -> Device | None:
    """The enrolled (not revoked) device whose secret this is."""
    if not secret.startswith(_credentials.DEVICE_PREFIX):
        return None
    row = conn.execute(
        sa.select(t.devices.c.device_id, t.devices.c.store_id, t.devices.c.current_epoch).where(
            t.devices.c.secret_sha256 == _credentials.digest(secret),
            t.devices.c.status == "enrolled",
        )
    ).first()
    return None if row is None else Device(row.device_id, row.store_id, row.current_epoch)


def revoke(conn: sa.Connection, device_id: str, now_ms: int) -> None:
    done = conn.execute(
        sa.update(t.devices)
        .where(t.devices.c.device_id == device_id, t.devices.c.device_id != CENTRAL_DEVICE_ID)
        .values(status="revoked", revoked_ms=now_ms)
    ).rowcount
    if done != 1:
        raise Refused(404, "unknown_device", f"device {device_id!r} does not exist")


def list_devices(conn: sa.Connection) -> list[dict[str, object]]:
    rows = conn.execute(
        sa.select(t.devices).where(t.devices.c.device_id != CENTRAL_DEVICE_ID).order_by("device_id")
    ).all()
    acked = {
        (row.device_id, row.epoch): row.acked_seq
        for row in conn.execute(sa.select(t.device_epochs)).all()
    }
    return [
        {
            "device_id": row.device_id,
            "store_id": row.store_id,
            "status": row.status,
            "epoch": row.current_epoch,
            "acked_seq": acked.get((row.device_id, row.current_epoch), 0),
            "hostname": row.hostname,
            "last_push_ms": row.last_push_ms,
            "clock_skew_ms": row.clock_skew_ms,
        }
        for row in rows
    ]


# --- admin tokens -------------------------------------------------------------------------


def issue_admin_token(conn: sa.Connection, label: str, now_ms: int) -> str:
    token = _credentials.new_admin_token()
    conn.execute(
        sa.insert(t.admin_tokens).values(
            token_sha256=_credentials.digest(token), label=label, created_ms=now_ms
        )
    )
    return token


def revoke_admin_tokens(conn: sa.Connection, label: str, now_ms: int) -> int:
    """Every live admin token of `label` stops working at once; how many there were."""
    return int(
        conn.execute(
            sa.update(t.admin_tokens)
            .where(t.admin_tokens.c.label == label, t.admin_tokens.c.revoked_ms.is_(None))
            .values(revoked_ms=now_ms)
        ).rowcount
    )


def is_admin(conn: sa.Connection, token: str) -> bool:
    if not token.startswith(_credentials.ADMIN_PREFIX):
        return False
    row = conn.execute(
        sa.select(t.admin_tokens.c.label).where(
            t.admin_tokens.c.token_sha256 == _credentials.digest(token),
            t.admin_tokens.c.revoked_ms.is_(None),
        )
    ).first()
    return row is not None


# --- customers ----------------------------------------------------------------------------


def identifier_key(identifier: dict[str, str]) -> tuple[str, str]:
    kind = identifier["type"]
    field = {"card": "number", "phone_hash": "phone_hash", "qr": "token"}[kind]
    return kind, identifier[field]


def put_customer(
    conn: sa.Connection,
    customer: dict[str, object],
    identifier_list: list[dict[str, str]],
    now_ms: int,
    updating: Collection[str] | None = None,
) -> None:
    """Create or update a customer with identifiers, and log the change for pull. An update
    writes only the fields in `updating` (all when None); a merged customer is refused."""
    customer_id = str(customer["customer_id"])
    values = {key: value for key, value in customer.items() if key != "customer_id"}
    exists = conn.execute(
        sa.select(t.customers.c.status, t.customers.c.merged_into).where(
            t.customers.c.customer_id == customer_id
        )
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(t.customers).values(
                customer_id=customer_id, created_ms=now_ms, updated_ms=now_ms, **values
            )
        )
    elif exists.status == "erased":
        raise Refused(409, "erased", f"customer {customer_id!r} was erased")
    elif exists.status == "merged":
        raise Refused(
            409,
            "customer_merged",
            f"customer {customer_id!r} was merged into {exists.merged_into!r}: change that one",
        )
    else:
        if updating is not None:
            values = {key: value for key, value in values.items() if key in updating}
        conn.execute(
            sa.update(t.customers)
            .where(t.customers.c.customer_id == customer_id)
            .values(updated_ms=now_ms, **values)
        )
    for identifier in identifier_list:
        kind, value = identifier_key(identifier)
        owner = conn.execute(
            sa.select(t.identifiers.c.customer_id).where(
                t.identifiers.c.kind == kind, t.identifiers.c.value == value
            )
        ).scalar_one_or_none()
        if owner is None:
            conn.execute(
                sa.insert(t.identifiers).values(
                    kind=kind, value=value, customer_id=customer_id, created_ms=now_ms
                )
            )
        elif owner != customer_id:
            raise Refused(409, "identifier_taken", f"{kind} identifier belongs to another customer")
    check_identifier_count(conn, customer_id)
    _changes.append(conn, [_changes.customer_body(conn, customer_id)], now_ms)


def check_identifier_count(conn: sa.Connection, customer_id: str) -> None:
    """Inside the write that added identifiers: refuse more than a till takes for one customer
    (`identifiers_per_customer_max`). Logged, such a customer would be a change every till
    refuses to read, and no later change would reach them."""
    count = conn.execute(
        sa.select(sa.func.count())
        .select_from(t.identifiers)
        .where(t.identifiers.c.customer_id == customer_id)
    ).scalar_one()
    if count > identifiers_per_customer_max:
        raise Refused(
            422,
            "too_many_identifiers",
            f"customer {customer_id!r} would have {count} cards and phones; at most "
            f"{identifiers_per_customer_max}: remove some first (POST …/identifiers/remove)",
        )


def phone_identity(conn: sa.Connection, phone: str) -> tuple[str, str]:
    """`phone` as E.164 and as the chain's phone hash (what tills and identifiers hold); a
    number that is not a customer's phone is 422 `bad_phone`."""
    key = setting(conn, "phone_hash_key_hex")
    if key is None:
        raise AssertionError("the chain's phone-hash key is missing; run migrate")
    try:
        e164 = normalize_phone(phone)
    except IdentifierRejected as error:
        raise Refused(422, "bad_phone", f"phone {phone!r}: {error.reason}") from None
    return e164, PhoneHasher(bytes.fromhex(key))(e164)


def put_contact(conn: sa.Connection, customer_id: str, phone_e164: str) -> None:
    """The phone central may send messages to (confirmation codes)."""
    conn.execute(sa.delete(t.contacts).where(t.contacts.c.customer_id == customer_id))
    conn.execute(sa.insert(t.contacts).values(customer_id=customer_id, phone_e164=phone_e164))


def erase_customer(conn: sa.Connection, customer_id: str, now_ms: int) -> None:
    """Remove personal data, keep the anonymised ledger, send a tombstone to every till. The
    duplicates merged into the customer are the same person: erased with them."""
    idents = _changes.identifier_bodies(conn, customer_id)
    held = conn.execute(
        sa.select(t.identifiers.c.kind, t.identifiers.c.value).where(
            t.identifiers.c.customer_id == customer_id
        )
    ).all()
    done = conn.execute(
        sa.update(t.customers)
        .where(t.customers.c.customer_id == customer_id)
        .values(
            status="erased",
            first_name="",
            birthday=None,
            tier=None,
            referred_by=None,
            consent_marketing=False,
            consent_data=False,
            updated_ms=now_ms,
        )
    ).rowcount
    if done != 1:
        raise Refused(404, "unknown_customer", f"customer {customer_id!r} does not exist")
    conn.execute(sa.delete(t.identifiers).where(t.identifiers.c.customer_id == customer_id))
    conn.execute(sa.delete(t.contacts).where(t.contacts.c.customer_id == customer_id))
    keys = [f"customer:{customer_id}", *(f"{kind}:{value}" for kind, value in held)]
    _erasure.forget(conn, customer_id, keys)
    body = {"type": "erasure", "customer_id": customer_id, "identifiers": idents}
    _changes.append(conn, [body], now_ms)
    duplicates = conn.execute(
        sa.select(t.customers.c.customer_id).where(
            t.customers.c.merged_into == customer_id, t.customers.c.status == "merged"
        )
    ).scalars()
    for duplicate in list(duplicates):
        erase_customer(conn, duplicate, now_ms)


def publish_rule_set(
    conn: sa.Connection,
    rule_set_id: str,
    effective_from: str,
    effective_from_ms: int,
    document: dict[str, object],
    now_ms: int,
) -> str:
    """Publish an immutable rule-set version; returns its content hash."""
    digest = content_hash(document)
    exists = conn.execute(
        sa.select(t.rule_sets.c.content_hash).where(t.rule_sets.c.rule_set_id == rule_set_id)
    ).scalar_one_or_none()
    if exists is not None:
        if exists == digest:
            return digest
        raise Refused(409, "rule_set_exists", f"rule set {rule_set_id!r} is already published")
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    row = {
        "rule_set_id": rule_set_id,
        "content_hash": digest,
        "effective_from_ms": effective_from_ms,
        "effective_from": effective_from,
        "document": text,
        "published_ms": now_ms,
    }
    conn.execute(sa.insert(t.rule_sets).values(row))
    _changes.append(conn, [_changes.rule_set_body(row)], now_ms)
    return digest
