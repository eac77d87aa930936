"""Sign-up at the till: a provisional customer the till can sell to at once, and a record
that tells central. Idempotent by the POS's `signup_id`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlite_utils

from agent import _outbox
from agent._cache import find_customer_id, put_customer, remember_signup
from agent._errors import Conflict, TillError
from agent._identify import PHONE_HASHED, parse_identifier
from agent._models import Identification, IdentifierInput, SignupRequest
from protocol import (
    CardIdentifier,
    CustomerState,
    CustomerStatus,
    Identifier,
    IdentifierRejected,
    PhoneHashIdentifier,
    SignupRecord,
    content_hash,
    parse_card,
)

if TYPE_CHECKING:
    from agent._sales import Till


def _identifiers(till: Till, request: SignupRequest) -> tuple[Identifier, ...]:
    rules = till.settings.identity
    phone = parse_identifier(rules, IdentifierInput(type="phone", value=request.phone))
    assert phone is not None
    found: list[Identifier] = [phone]
    if request.card is not None:
        number, _ = parse_card(request.card, rules.card_ranges)
        found.insert(0, CardIdentifier(number=number))
    return tuple(found)


def _hashes(request: SignupRequest, identifiers: tuple[Identifier, ...]) -> tuple[str, str]:
    """The hash the till keeps of `request`, taken with the phone as its keyed hash (a plain
    hash of a request holding a phone would give the phone away to a guess of it), and the
    one an agent from before kept, of the request itself."""
    hashed = next(i.phone_hash for i in identifiers if isinstance(i, PhoneHashIdentifier))
    kept = request.model_copy(update={"phone": PHONE_HASHED + hashed})
    return content_hash(kept), content_hash(request)


def _refuse_taken(db: sqlite_utils.Database, identifiers: tuple[Identifier, ...]) -> None:
    for identifier in identifiers:
        if find_customer_id(db, identifier) is not None:
            what = "card" if identifier.type == "card" else "phone"
            raise Conflict(f"{what}_taken", f"this {what} already belongs to a member")


def signup(till: Till, request: SignupRequest) -> Identification:
    if not request.consent_data:
        raise TillError("consent_required", "joining needs the customer's consent to data use")
    identifiers = _identifiers(till, request)
    hashes = _hashes(request, identifiers)
    with till.store.write() as db:
        row = db.execute(
            "SELECT request_hash, response FROM signups WHERE signup_id = ?", [request.signup_id]
        ).fetchone()
        if row is not None:
            if row[0] not in hashes:
                raise Conflict("signup_id_reused", "this sign-up id was used for another one")
            return Identification.model_validate_json(row[1])
        _refuse_taken(db, identifiers)
        answer = _create(till, db, request, identifiers)
        db.execute(
            "INSERT INTO signups(signup_id, request_hash, customer_id, response) VALUES (?,?,?,?)",
            [request.signup_id, hashes[0], answer.customer_id, answer.model_dump_json()],
        )
    return answer


def _create(
    till: Till,
    db: sqlite_utils.Database,
    request: SignupRequest,
    identifiers: tuple[Identifier, ...],
) -> Identification:
    now = till.clock.wall()
    customer_id = f"p-{till.make_id().hex}"
    state = CustomerState(
        customer_id=customer_id,
        status=CustomerStatus.provisional,
        consent_marketing=request.consent_marketing,
        consent_data=request.consent_data,
        language=request.language,
        enrolled_at=now,
    )
    put_customer(db, state, identifiers, first_name=request.first_name)
    remember_signup(db, customer_id, identifiers)
    record = SignupRecord(
        signup_id=till.make_id(),
        device_id=till.seat.device_id,
        device_epoch=till.seat.epoch,
        device_seq=_outbox.next_seq(db, till.seat.epoch),
        store_id=till.settings.store.store_id,
        provisional_customer_id=customer_id,
        identifiers=identifiers,
        consent_marketing=request.consent_marketing,
        consent_data=request.consent_data,
        language=request.language,
        first_name=request.first_name,
        device_time=now,
    )
    _outbox.append(db, record, offline=False)
    return Identification(
        known=True, customer_id=customer_id, first_name=request.first_name, phone_only=False
    )


__all__ = ["IdentifierRejected", "signup"]
