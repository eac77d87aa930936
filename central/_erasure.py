"""What an erasure takes from central besides the customer's row, identifiers and contact:
the personal data in what central kept of them (PRODUCT.md, "Privacy and security": the
ledger stays, anonymised).

- Cheque documents carry the customer's state as the till saw it (birthday, referrer,
  segments). Their `payload_sha256` stays: replays are compared by hash, never by bytes.
- A sign-up at a till waits in the quarantine with the first name and the phone's hash.
- HQ's conflicts keep what a till pushed: such a document or sign-up, scrubbed alike.
- HQ's audit of the customer names the cards attached and replaced: those become `erased`.
- The change log keeps every customer change ever sent to the tills, with the name, birthday
  and identifiers: a till pulling from an old cursor (a new one, from 0) would get them. Those
  bodies are replaced by an erased one in place; the tombstone itself follows them in the log.
  Only rows of customer changes are read (`ix_change_log_customers`), not every push's
  balances: on SQLite the erasure holds the one writer's lock while it reads.
  Rows never change otherwise, and `ParsedRows` knows a row by its numbers and its length:
  taking personal data out shortens it, so no process serves a parsed copy from before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa

from central import _tables as t

erased_rows_per_read = 500
"""Change-log, cheque or quarantine rows read at a time while an erasure scrubs them."""


def erased_state(customer_id: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "status": "erased"}


def scrubbed_document(payload: bytes) -> bytes:
    """A cheque document's bytes with the customer's state reduced to id and status."""
    document = json.loads(payload)
    customer = document.get("customer") or {}
    if customer.get("customer_id"):
        document["customer"] = erased_state(customer["customer_id"])
    return orjson.dumps(document)


def forget(conn: sa.Connection, customer_id: str, account_keys: list[str]) -> None:
    """Inside the erasure's transaction. `account_keys`: the customer's account and those of
    the identifiers they had (a sign-up's sales were recorded against them)."""
    identifiers = {key.partition(":")[2] for key in account_keys}
    _scrub_cheques(conn, account_keys)
    _scrub_signups(conn, customer_id, identifiers)
    _scrub_conflicts(conn, customer_id, identifiers)
    _scrub_audit(conn, customer_id)
    _scrub_log(conn, customer_id)


def _scrub_cheques(conn: sa.Connection, account_keys: list[str]) -> None:
    rows = conn.execute(
        sa.select(t.cheques.c.id, t.cheques.c.payload).where(
            t.cheques.c.account_key.in_(account_keys)
        )
    ).all()
    for row in rows:
        conn.execute(
            sa.update(t.cheques)
            .where(t.cheques.c.id == row.id)
            .values(payload=scrubbed_document(row.payload))
        )


def _scrub_signups(conn: sa.Connection, customer_id: str, identifiers: set[str]) -> None:
    """Sign-ups in the quarantine that made this customer: by the provisional id the till gave
    (HQ may keep it) or by an identifier they share."""
    _scrub_payloads(
        conn,
        t.quarantine.c.payload,
        lambda payload: _scrubbed_signup(payload, customer_id, identifiers),
    )


def _scrub_conflicts(conn: sa.Connection, customer_id: str, identifiers: set[str]) -> None:
    """Conflicts keep the payload a till pushed: a cheque document of the customer's, or a
    sign-up that made them, as in the cheques and the quarantine. HQ's alarms are few: read
    them all, in pages."""
    _scrub_payloads(
        conn,
        t.conflicts.c.incoming_payload,
        lambda payload: _scrubbed_conflict(payload, customer_id, identifiers),
    )


def _scrub_payloads(
    conn: sa.Connection, column: sa.Column[Any], scrubbed: Callable[[bytes], bytes | None]
) -> None:
    """Every row of `column`'s table (keyed by `id`), in pages: `column` replaced by what
    `scrubbed` makes of it, where it makes something."""
    table = column.table
    after = 0
    while True:
        rows = conn.execute(
            sa.select(table.c.id, column)
            .where(table.c.id > after)
            .order_by(table.c.id)
            .limit(erased_rows_per_read)
        ).all()
        for row_id, payload in rows:
            kept = scrubbed(payload)
            if kept is not None:
                conn.execute(sa.update(table).where(table.c.id == row_id).values({column: kept}))
        if len(rows) < erased_rows_per_read:
            return
        after = rows[-1].id


def _scrubbed_conflict(payload: bytes, customer_id: str, identifiers: set[str]) -> bytes | None:
    try:
        record = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if record.get("record") == "cheque":
        customer = record.get("customer")
        if isinstance(customer, dict) and customer.get("customer_id") == customer_id:
            return scrubbed_document(payload)
        return None
    return _scrubbed_signup(payload, customer_id, identifiers)


_AUDITED_IDENTIFIERS = ("card", "old", "new")
"""The keys under which HQ's audit of a customer keeps card numbers (`attach_card`,
`replace_card`): kept while the customer is, erased with them."""


def _scrub_audit(conn: sa.Connection, customer_id: str) -> None:
    rows = conn.execute(
        sa.select(t.audit_log.c.id, t.audit_log.c.detail).where(
            t.audit_log.c.target == customer_id,
            t.audit_log.c.action.in_(["attach_card", "replace_card"]),
        )
    ).all()
    for row in rows:
        detail = json.loads(row.detail)
        kept = {key: "erased" if key in _AUDITED_IDENTIFIERS else v for key, v in detail.items()}
        conn.execute(
            sa.update(t.audit_log)
            .where(t.audit_log.c.id == row.id)
            .values(detail=json.dumps(kept, sort_keys=True))
        )


def _scrubbed_signup(payload: bytes, customer_id: str, identifiers: set[str]) -> bytes | None:
    try:
        record = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("record") != "signup":
        return None
    theirs = {str(value) for item in record.get("identifiers") or () for value in item.values()}
    if record.get("provisional_customer_id") != customer_id and not theirs & identifiers:
        return None
    return orjson.dumps(record | {"first_name": "", "identifiers": []})


def _scrub_log(conn: sa.Connection, customer_id: str) -> None:
    named = f'%"customer_id":{orjson.dumps(customer_id).decode()}%'
    after = 0
    while True:
        rows = conn.execute(
            sa.select(t.change_log.c.change_seq, t.change_log.c.body)
            .where(sa.text(t.CUSTOMER_ROWS), t.change_log.c.change_seq > after)
            .where(t.change_log.c.body.like(named))
            .order_by(t.change_log.c.change_seq)
            .limit(erased_rows_per_read)
        ).all()
        for row in rows:
            bodies = orjson.loads(row.body)
            kept = [_erased_body(body, customer_id) for body in bodies]
            if kept != bodies:
                conn.execute(
                    sa.update(t.change_log)
                    .where(t.change_log.c.change_seq == row.change_seq)
                    .values(body=orjson.dumps(kept).decode())
                )
        if len(rows) < erased_rows_per_read:
            return
        after = rows[-1].change_seq


def _erased_body(body: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """A customer change of `customer_id` without their personal data; others as they are."""
    state = body.get("state") or {}
    if body.get("type") != "customer" or state.get("customer_id") != customer_id:
        return body
    return {**body, "state": erased_state(customer_id), "identifiers": [], "first_name": ""}
