"""HQ's admin API for customers: search, cards, status, consent, merge, adjustments (who is
acting, and the audit log, are `central._audit`). Every route sits under
`/admin` behind the admin token (`central._admin`); OpenAPI at `/docs`. Rule sets, devices,
jobs and CSV are in `_hq_ops`, conflicts and quarantine in `_hq_conflicts`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Query, Request
from pydantic import Field, model_validator

from central import _changes, _directory, _entries, _lot_state, _lots
from central import _tables as t
from central._admin import _route
from central._audit import _central, actor, audit
from central._clock import to_ms
from central._directory import Refused, check_identifier_count
from protocol import (
    CardIdentifier,
    IdentifierRejected,
    WireModel,
    parse_card,
)
from protocol._base import Id, Points
from protocol._ledger import Asset

search_results_max = 100
Reason = Annotated[str, Field(min_length=3, max_length=500)]


def _customer_row(conn: sa.Connection, customer_id: str) -> Any:
    row = conn.execute(
        sa.select(t.customers).where(t.customers.c.customer_id == customer_id)
    ).first()
    if row is None:
        raise Refused(404, "unknown_customer", f"customer {customer_id!r} does not exist")
    return row


def _identifiable_row(conn: sa.Connection, customer_id: str) -> Any:
    """A customer a card may be linked to: not erased (it would identify them again) and not
    merged (no till or job reads a merged customer's account: name the customer kept)."""
    row = _customer_row(conn, customer_id)
    if row.status == "erased":
        raise Refused(409, "erased", f"customer {customer_id!r} was erased")
    if row.status == "merged":
        kept = _kept_customer(conn, customer_id)
        raise Refused(
            409,
            "customer_merged",
            f"customer {customer_id!r} was merged into {kept!r}: give the card to that one",
            {"kept_id": kept},
        )
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
        wanted = []  # (kind, value) of each identifier asked for, each its own join
        if phone is not None:
            wanted.append(("phone_hash", _directory.phone_identity(conn, phone)[1]))
        if card is not None:
            wanted.append(("card", card))
        for kind, value in wanted:
            found = t.identifiers.alias(f"by_{kind}")
            query = query.join(found, found.c.customer_id == t.customers.c.customer_id).where(
                found.c.kind == kind, found.c.value == value
            )
        if name is not None:  # a prefix as typed: % and _ are letters here
            query = query.where(t.customers.c.first_name.startswith(name, autoescape=True))
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
        key = f"customer:{customer_id}"
        folded = _lot_state.load(conn, [key])[key]  # kept with the entries: no ledger fold
        view["lots"] = [_lots.lot_dict(lot) for lot in folded.open_lots()]
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
        _identifiable_row(conn, customer_id)
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
    check_identifier_count(conn, customer_id)


class RemoveIdentifier(WireModel):
    """A card number or a phone (any format) of the customer, exactly one of them."""

    card: Annotated[str, Field(min_length=6, max_length=64)] | None = None
    phone: Annotated[str, Field(min_length=5, max_length=32)] | None = None
    reason: Reason

    @model_validator(mode="after")
    def _one(self) -> RemoveIdentifier:
        if (self.card is None) == (self.phone is None):
            raise ValueError("give either card or phone")
        return self


@_route("POST", "/customers/{customer_id}/identifiers/remove", tags=["customers"])
def remove_identifier(request: Request, customer_id: str, body: RemoveIdentifier) -> dict[str, Any]:
    """A card or phone stops identifying the customer (a phone number they gave up, one of too
    many): every till drops it with the next pull. A removed phone is no longer texted."""
    central = _central(request)
    now_ms = to_ms(central.clock())
    with central.writing(), central.engine.begin() as conn:
        _customer_row(conn, customer_id)
        if body.card is not None:
            kind, value, e164 = "card", _card(conn, body.card), None
        else:
            e164, value = _directory.phone_identity(conn, str(body.phone))
            kind = "phone_hash"
        gone = conn.execute(
            sa.delete(t.identifiers).where(
                t.identifiers.c.kind == kind,
                t.identifiers.c.value == value,
                t.identifiers.c.customer_id == customer_id,
            )
        ).rowcount
        if gone != 1:
            raise Refused(404, "unknown_identifier", f"that {kind} is not one of {customer_id}")
        if e164 is not None:
            conn.execute(
                sa.delete(t.contacts).where(
                    t.contacts.c.customer_id == customer_id, t.contacts.c.phone_e164 == e164
                )
            )
        detail = {"kind": kind, "reason": body.reason}  # the card or phone is not kept here
        audit(conn, actor(request), "remove_identifier", customer_id, detail, now_ms)
        _publish_customer(conn, customer_id, now_ms)
        return customer_view(conn, customer_id)


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
        _identifiable_row(conn, customer_id)
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


def _update_customer(
    request: Request, customer_id: str, values: dict[str, Any], action: str, detail: Any
) -> dict[str, Any]:
    """Change fields of a live customer, audited and announced to tills."""
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
            .values(**values, updated_ms=now_ms)
        )
        audit(conn, who, action, customer_id, detail, now_ms)
        _publish_customer(conn, customer_id, now_ms)
        return customer_view(conn, customer_id)


@_route("POST", "/customers/{customer_id}/status", tags=["customers"])
def set_status(request: Request, customer_id: str, body: StatusBody) -> dict[str, Any]:
    """Block or unblock a customer (a blocked customer earns nothing new and cannot spend)."""
    detail = {"reason": body.reason}
    return _update_customer(
        request, customer_id, {"status": body.status}, f"status_{body.status}", detail
    )


class ConsentBody(WireModel):
    consent_marketing: bool
    consent_data: bool


@_route("PUT", "/customers/{customer_id}/consent", tags=["customers"])
def set_consent(request: Request, customer_id: str, body: ConsentBody) -> dict[str, Any]:
    """Record the customer's consent to marketing messages and to data processing."""
    return _update_customer(request, customer_id, body.model_dump(), "consent", body.model_dump())


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
        check_identifier_count(conn, body.keep_id)
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
    """The amount to add (negative to take), in the unit of `asset`."""
    reason: Reason
    asset: Asset = "points"
    """`points`, or a counter: `purchases`, `rolling_spend` (kopecks), `stamps:<card>`."""


def adjust(
    conn: sa.Connection,
    account_key: str,
    amount: int,
    reason: str,
    now: datetime,
    asset: str = "points",
) -> str:
    """Write an `adjust` entry from central on one asset of an account. Points may go
    negative (a debt, as a push's overspending does); a counter may not, since the tills
    and the evaluator read a counter as a count that is never below zero. A merged
    customer's account is refused (`_refuse_merged`)."""
    if amount == 0:
        raise Refused(422, "zero_adjustment", "an adjustment must move something")
    # Before the status and the balance are read, as every writer of entries locks: a
    # merge that commits first is seen, one that commits later moves what this writes.
    _lots.lock_for_moves(conn, [account_key])
    _refuse_merged(conn, account_key)
    if asset != "points":
        _check_counter(conn, account_key, asset, amount)
    entry = {
        "kind": "adjust",
        "account": _entries.account_of(account_key),
        "asset": asset,
        "amount": amount,
        "reason": reason,
    }
    made = _entries.write(conn, [entry], now)
    return str(made[0].entry_id)


def _refuse_merged(conn: sa.Connection, account_key: str) -> None:
    """Refuse an adjustment of a merged customer: its account is read by no till and moved
    by no job (a merge moves what is there once; `resolve` moves identifiers' accounts), so
    what it received would be lost. Crediting the customer kept instead would move money
    to someone HQ did not name, in an audit record that names another; HQ is told whom."""
    kind, _, customer_id = account_key.partition(":")
    if kind != "customer":
        return
    kept = _kept_customer(conn, customer_id)
    if kept != customer_id:
        raise Refused(
            409,
            "customer_merged",
            f"customer {customer_id} was merged into {kept}: its account is never read again,"
            f" so an adjustment there would be lost; adjust {kept} instead",
            {"kept_id": kept},
        )


def _kept_customer(conn: sa.Connection, customer_id: str) -> str:
    """The customer a merged one ended in (a customer kept may have been merged since:
    merges are followed, at most `_lots.merge_hops_max`); any other customer itself."""
    for _ in range(_lots.merge_hops_max):
        into = conn.execute(
            sa.select(t.customers.c.merged_into).where(
                t.customers.c.customer_id == customer_id, t.customers.c.status == "merged"
            )
        ).scalar_one_or_none()
        if into is None:
            return customer_id
        customer_id = into
    return customer_id


def _check_counter(conn: sa.Connection, account_key: str, asset: str, amount: int) -> None:
    balance = conn.execute(
        sa.select(t.accounts.c.balance).where(
            t.accounts.c.account_key == account_key, t.accounts.c.asset == asset
        )
    ).scalar_one_or_none()
    have = int(balance or 0)
    if have + amount < 0:
        raise Refused(
            422,
            "counter_below_zero",
            f"{asset} of {account_key} is {have}: taking {-amount} would leave it below zero,"
            f" which a counter cannot be; take at most {have}",
            {"asset": asset, "balance": have},
        )


@_route("POST", "/customers/{customer_id}/adjustments", tags=["customers"])
def post_adjustment(request: Request, customer_id: str, body: Adjustment) -> dict[str, Any]:
    """Add or take points, or a counter (`asset`), with a reason: an `adjust` entry from
    central, audited."""
    central = _central(request)
    now = central.clock()
    who = actor(request)
    with central.writing(), central.engine.begin() as conn:
        _customer_row(conn, customer_id)
        key = f"customer:{customer_id}"
        entry_id = adjust(conn, key, body.points, body.reason, now, body.asset)
        detail = {
            "points": body.points,
            "asset": body.asset,
            "reason": body.reason,
            "entry_id": entry_id,
        }
        audit(conn, who, "adjust", customer_id, detail, to_ms(now))
    return {"customer_id": customer_id, "asset": body.asset, "entry_id": entry_id}
