"""From what the customer presented to whose account a sale moves."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from agent._cache import CachedCustomer, find_customer_id, get_customer
from agent._models import IdentifierInput
from protocol import (
    AccountRef,
    CardIdentifier,
    CardRange,
    CustomerAccount,
    CustomerStatus,
    Identifier,
    IdentifierRejected,
    PhoneHasher,
    PhoneHashIdentifier,
    QrIdentifier,
    normalize_phone,
    parse_card,
    parse_qr_token,
)


@dataclass(frozen=True)
class IdentityRules:
    card_ranges: tuple[CardRange, ...]
    phone_region: str = "RU"
    phone_hasher: PhoneHasher | None = None


@dataclass(frozen=True)
class Resolved:
    """The account a sale moves and what the till knows of its owner (None: unknown)."""

    account: AccountRef
    customer: CachedCustomer | None
    phone_only: bool


def parse_identifier(rules: IdentityRules, given: IdentifierInput) -> Identifier | None:
    """The protocol identifier for `given`; None for a bare customer id."""
    if given.type == "card":
        number, _ = parse_card(given.value, rules.card_ranges)
        return CardIdentifier(number=number)
    if given.type == "qr":
        return QrIdentifier(token=parse_qr_token(given.value))
    if given.type == "phone":
        return _phone(rules, given.value)
    if given.type == "barcode":
        return _barcode(rules, given.value)
    return None


def _phone(rules: IdentityRules, raw: str) -> PhoneHashIdentifier:
    e164 = normalize_phone(raw, default_region=rules.phone_region)
    if rules.phone_hasher is None:
        raise IdentifierRejected(
            "phone_unavailable", "this till is not enrolled yet: identify by card instead"
        )
    return PhoneHashIdentifier(phone_hash=rules.phone_hasher(e164))


PHONE_HASHED = "hashed:"
"""How a typed phone is kept in what the till stores (a reservation's request, the hash of a
request): `hashed:` and its keyed hash. PRODUCT.md: a till stores phone numbers only so."""


def kept_identifier(rules: IdentityRules, given: IdentifierInput | None) -> IdentifierInput | None:
    """`given` as the till may store it: a typed phone as its keyed hash, anything else as
    given. Raises `IdentifierRejected` for a phone that is not one (as identifying would)."""
    if given is None or given.type != "phone":
        return given
    hashed = _phone(rules, given.value).phone_hash
    return IdentifierInput(type="phone", value=PHONE_HASHED + hashed)


def _barcode(rules: IdentityRules, raw: str) -> Identifier:
    if raw.strip().upper().startswith("KQ"):
        return QrIdentifier(token=parse_qr_token(raw))
    number, _ = parse_card(raw, rules.card_ranges)
    return CardIdentifier(number=number)


def _provisional_account(db: sqlite_utils.Database, cached: CachedCustomer) -> Identifier:
    """Entries of a customer central does not know yet go to an identifier it can resolve:
    the card when there is one, else the phone hash."""
    rows = db.execute(
        "SELECT kind, value FROM identifiers WHERE customer_id = ? ORDER BY kind",
        [cached.state.customer_id],
    ).fetchall()
    found = dict(rows)
    if "card" in found:
        return CardIdentifier(number=found["card"])
    return PhoneHashIdentifier(phone_hash=found["phone_hash"])


def resolve(db: sqlite_utils.Database, rules: IdentityRules, given: IdentifierInput) -> Resolved:
    """Raises `IdentifierRejected` for input that cannot be any customer's identifier."""
    identifier = parse_identifier(rules, given)
    customer_id = given.value if identifier is None else find_customer_id(db, identifier)
    cached = get_customer(db, customer_id) if customer_id is not None else None
    if cached is not None and cached.state.status in {
        CustomerStatus.blocked,
        CustomerStatus.erased,
    }:
        raise IdentifierRejected(
            f"customer_{cached.state.status}", f"this customer is {cached.state.status}"
        )
    phone_only = identifier is not None and identifier.type == "phone_hash"
    if cached is not None and cached.state.status is CustomerStatus.provisional:
        return Resolved(_provisional_account(db, cached), cached, phone_only)
    if cached is not None and cached.state.customer_id is not None:
        return Resolved(CustomerAccount(customer_id=cached.state.customer_id), cached, phone_only)
    if identifier is None:
        raise IdentifierRejected("customer_unknown", "no such customer on this till")
    return Resolved(identifier, None, phone_only)
