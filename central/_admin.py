"""The small admin API this issue needs (issue 7 builds HQ's full one). Admin token only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from pydantic import AwareDatetime, Field

from central import _directory
from central._audit import _central, actor, audit
from central._clock import to_ms
from central._credentials import bearer
from central._directory import Refused
from protocol import (
    CardRange,
    CustomerStatus,
    Identifier,
    OfflineLimits,
    RuleSetError,
    Store,
    WireModel,
    rule_set_from_data,
)
from protocol._base import Id


def admin(request: Request) -> None:
    """Passes only with an admin token in `Authorization: Bearer`; a device secret is not one."""
    token = bearer(request.headers.get("authorization"))
    central = request.app.state.central
    if token is not None:
        with central.reader.connect() as conn:
            if _directory.is_admin(conn, token):
                return
    raise Refused(401, "unauthorized", "an admin credential is required")


_routes: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []


def _route(method: str, path: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        _routes.append((method, path, endpoint, options))
        return endpoint

    return register


def install(app: FastAPI) -> None:
    """Add the admin routes straight to the app's route table, each guarded by `admin`."""
    for method, path, endpoint, options in _routes:
        app.add_api_route(
            "/admin" + path, endpoint, methods=[method], dependencies=[Depends(admin)], **options
        )


class NewCustomer(WireModel):
    """A customer to create, or the fields to change of one: an update writes only the fields
    it gives. Merging and erasing have routes of their own."""

    customer_id: Id
    status: Literal[CustomerStatus.active, CustomerStatus.blocked] = CustomerStatus.active
    tier: Id | None = None
    birthday: date | None = None
    first_name: Annotated[str, Field(max_length=64)] = ""
    language: Annotated[str, Field(pattern=r"^[a-z]{2}$")] = "ru"
    consent_marketing: bool = False
    consent_data: bool = False
    phones: tuple[Annotated[str, Field(max_length=32)], ...] = Field(default=(), max_length=5)
    identifiers: tuple[Identifier, ...] = Field(default=(), max_length=20)


class EnrollmentCode(WireModel):
    code: str
    store_id: Id
    expires_ms: int


class NewRuleSet(WireModel):
    rule_set_id: Id
    effective_from: AwareDatetime
    document: dict[str, Any]


class ChainSettings(WireModel):
    card_ranges: tuple[CardRange, ...] = Field(default=(), max_length=100)


@_route("POST", "/stores", response_model=Store)
def put_store(request: Request, body: Store) -> Store:
    central = _central(request)
    with central.writing(), central.engine.begin() as conn:
        now_ms = to_ms(central.clock())
        stored = _directory.put_store(conn, body, now_ms)
        audit(
            conn, actor(request), "store_put", body.store_id, body.model_dump(mode="json"), now_ms
        )
        return stored


@_route("POST", "/stores/{store_id}/enrollment-codes", response_model=EnrollmentCode)
def enrollment_code(request: Request, store_id: str) -> EnrollmentCode:
    central = _central(request)
    with central.writing(), central.engine.begin() as conn:
        now_ms = to_ms(central.clock())
        code, expires_ms = _directory.issue_enrollment_code(conn, store_id, now_ms)
        audit(conn, actor(request), "enrollment_code", store_id, {"expires_ms": expires_ms}, now_ms)
    return EnrollmentCode(code=code, store_id=store_id, expires_ms=expires_ms)


@_route("POST", "/customers")
def put_customer(request: Request, body: NewCustomer) -> dict[str, str]:
    central = _central(request)
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        idents = [i.model_dump(mode="json") for i in body.identifiers]
        phones = [_directory.phone_identity(conn, phone) for phone in body.phones]
        idents += [{"type": "phone_hash", "phone_hash": digest} for _, digest in phones]
        values = body.model_dump(mode="json", exclude={"phones", "identifiers"})
        given = body.model_dump(exclude={"phones", "identifiers"}, exclude_unset=True)
        now_ms = to_ms(central.clock())
        _directory.put_customer(conn, values, idents, now_ms, updating=set(given))
        if phones:
            _directory.put_contact(conn, body.customer_id, phones[0][0])
        changed = sorted(body.model_dump(exclude_unset=True))  # the fields, not their values
        audit(conn, who, "customer_put", body.customer_id, {"fields": changed}, now_ms)
    return {"customer_id": body.customer_id}


@_route("POST", "/customers/{customer_id}/erase")
def erase_customer(request: Request, customer_id: str) -> dict[str, str]:
    central = _central(request)
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        now_ms = to_ms(central.clock())
        _directory.erase_customer(conn, customer_id, now_ms)
        audit(conn, who, "erase", customer_id, {}, now_ms)
    return {"customer_id": customer_id, "status": "erased"}


@_route("GET", "/devices")
def list_devices(request: Request) -> list[dict[str, object]]:
    with _central(request).reader.begin() as conn:
        return _directory.list_devices(conn)


@_route("POST", "/devices/{device_id}/revoke")
def revoke_device(request: Request, device_id: str) -> dict[str, str]:
    central = _central(request)
    with central.writing(), central.engine.begin() as conn:
        now_ms = to_ms(central.clock())
        _directory.revoke(conn, device_id, now_ms)
        audit(conn, actor(request), "revoke_device", device_id, {}, now_ms)
    return {"device_id": device_id, "status": "revoked"}


@_route("PUT", "/offline-limits", response_model=OfflineLimits)
def set_offline_limits(request: Request, body: OfflineLimits) -> OfflineLimits:
    central = _central(request)
    with central.writing(), central.engine.begin() as conn:
        now_ms = to_ms(central.clock())
        _directory.set_offline_limits(conn, body, now_ms)
        audit(conn, actor(request), "offline_limits", "chain", body.model_dump(mode="json"), now_ms)
    return body


@_route("PUT", "/chain", response_model=ChainSettings)
def set_chain(request: Request, body: ChainSettings) -> ChainSettings:
    central = _central(request)
    with central.writing(), central.engine.begin() as conn:
        _directory.set_card_ranges(conn, body.card_ranges)
        detail = body.model_dump(mode="json")
        audit(conn, actor(request), "chain_settings", "chain", detail, to_ms(central.clock()))
    return body


@_route("POST", "/rule-sets")
def publish_rule_set(request: Request, body: NewRuleSet) -> dict[str, str]:
    """Publish a rule set given as JSON. It is validated and stored in its canonical form, so
    its hash is the one every till and the evaluator compute (`RuleSet.content_hash`)."""
    given = {**body.document, "rule_set_id": body.rule_set_id}
    given["effective_from"] = body.effective_from.isoformat()
    try:
        rules = rule_set_from_data(given, source="rule set")
    except RuleSetError as error:
        raise Refused(422, "bad_rule_set", str(error)) from None
    central = _central(request)
    with central.writing(), central.engine.begin() as conn:
        now_ms = to_ms(central.clock())
        digest = _directory.publish_rule_set(
            conn,
            body.rule_set_id,
            body.effective_from.isoformat(),
            to_ms(body.effective_from),
            rules.model_dump(mode="json"),
            now_ms,
        )
        audit(conn, actor(request), "publish_rule_set", body.rule_set_id, {"hash": digest}, now_ms)
    return {"rule_set_id": body.rule_set_id, "content_hash": digest}
