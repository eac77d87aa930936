"""What an erasure takes from the till's history besides its cache: the personal data in the
documents it kept (PRODUCT.md, "Privacy and security": the ledger stays, anonymised).

A cheque document carries the customer's state as the sale saw it (birthday, referrer,
segments); a sign-up record the first name and the phone's hash; a reservation the identifier
the POS sent (a card number; a phone only as its keyed hash) and that state; a sign-up's stored
answer the first name. Records still `local` in the outbox are not touched: they go to central
as stored, under the hash taken when they were made (bytes changed before the push would be a
conflict if central already had them), and are scrubbed here once central acknowledges them.
Acknowledged records keep their hash: central compares hashes, never sends them back.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlite_utils


def _erased(path: str) -> str:
    """The customer the record's `path` names is erased on this till (a key lookup)."""
    return (
        "EXISTS (SELECT 1 FROM customers WHERE status = 'erased' "
        f"AND customer_id = json_extract(payload, '{path}'))"
    )


_SCRUB_CHEQUE = (
    "json_set(payload, '$.customer', json_object('customer_id', "
    "json_extract(payload, '$.customer.customer_id'), 'status', 'erased'))"
)
_SCRUB_SIGNUP = "json_set(payload, '$.first_name', '', '$.identifiers', json('[]'))"
_HISTORY = (
    f"UPDATE outbox SET payload = {_SCRUB_CHEQUE} WHERE record = 'cheque' AND state != 'local' "
    f"AND {_erased('$.customer.customer_id')}",
    f"UPDATE outbox SET payload = {_SCRUB_SIGNUP} WHERE record = 'signup' AND state != 'local' "
    f"AND {_erased('$.provisional_customer_id')}",
)


def forget(db: sqlite_utils.Database, customer_ids: Iterable[str]) -> None:
    """Inside the write that erased `customer_ids` from the cache: their personal data out of
    the reservations, the sign-ups' answers and the acknowledged outbox records."""
    for customer_id in customer_ids:
        db.execute(
            "UPDATE reservations SET document = json_set(document, "
            "'$.customer', json_object('customer_id', ?1, 'status', 'erased'), "
            "'$.request.customer', json_object('type', 'customer', 'value', ?1)) "
            "WHERE json_extract(document, '$.customer.customer_id') = ?1",
            [customer_id],
        )
        db.execute(
            "UPDATE signups SET response = json_set(response, '$.first_name', '') "
            "WHERE customer_id = ?",
            [customer_id],
        )
    for statement in _HISTORY:
        db.execute(statement)


def forget_acknowledged(db: sqlite_utils.Database, epoch: int, seqs: tuple[int, int]) -> None:
    """Inside the write that acknowledged `epoch`'s records `seqs` (first, last): those of
    customers erased meanwhile lose their personal data now that central has them."""
    for statement in _HISTORY:
        db.execute(f"{statement} AND epoch = ? AND seq BETWEEN ? AND ?", [epoch, *seqs])
