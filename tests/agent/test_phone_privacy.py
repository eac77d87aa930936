"""A till stores phone numbers only as a keyed hash (PRODUCT.md, "Identifier"): not in the
reservations it keeps, nor in a plain hash of a request that a guess of the phone would match."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agent._errors import Conflict
from agent._models import (
    ConfirmRequest,
    IdentifierInput,
    RefundLine,
    RefundRequest,
    ReserveRequest,
    SignupRequest,
)
from agent._sales import Till
from agent._store import MIGRATIONS, TillStore
from protocol import content_hash

from .conftest import PHONE
from .test_sales import basket

TYPED = "8 (916) 123-45-67"
"""`PHONE` as a cashier types it."""
NEW_MEMBER = "+79035550101"
KNOWN = {"customer_id": "c-1"}


def _digits_anywhere(data_dir: Path, text: str) -> list[str]:
    """The till's files (database, WAL) that hold `text` in any byte."""
    return [
        path.name
        for path in data_dir.iterdir()
        if path.is_file() and text.encode() in path.read_bytes()
    ]


def _by_phone(cheque_id: str, phone: str = TYPED) -> ReserveRequest:
    return ReserveRequest(
        cheque_id=cheque_id,
        customer=IdentifierInput(type="phone", value=phone),
        basket=basket(10000),
    )


def test_no_phone_number_reaches_the_tills_files(till: Till) -> None:
    """Neither as typed nor in E.164, nor as a plain hash of the request that held it."""
    sale, unknown = _by_phone("p-1"), _by_phone("p-2", "+7 903 555-01-02")
    till.reserve(sale)
    till.confirm(ConfirmRequest(cheque_id="p-1", fiscal_document="FD-1"))
    till.reserve(unknown)  # nobody's: an unknown phone accrues
    joining = SignupRequest(signup_id="s-1", phone=NEW_MEMBER, consent_data=True)
    till.signup(joining)
    foreign = RefundRequest(
        refund_id="r-1",
        cheque_id="elsewhere-1",
        lines=(RefundLine(line_id="1", quantity_milli=1000),),
        original_basket=basket(10000),
        customer=IdentifierInput(type="phone", value=TYPED),
    )
    till.refund(foreign)
    till.store.checkpoint()
    data_dir = till.store.path.parent
    for text in (TYPED, "+7 903 555-01-02", NEW_MEMBER, "9161234567", "9035550102"):
        assert _digits_anywhere(data_dir, text) == [], text
    guessable = {content_hash(request) for request in (sale, unknown, joining, foreign)}
    with till.store.read() as db:
        kept = {
            row[0]
            for table in ("cheques", "signups", "refunds")
            for row in db.execute(f"SELECT request_hash FROM {table}").fetchall()
        }
    assert kept
    assert not kept & guessable


def test_a_reserve_by_phone_is_the_same_request_however_the_phone_is_typed(till: Till) -> None:
    first = till.reserve(_by_phone("p-1"))
    assert till.reserve(_by_phone("p-1", PHONE)) == first
    with pytest.raises(Conflict) as other:
        till.reserve(_by_phone("p-1", "+79035550102"))
    assert other.value.code == "cheque_id_reused"


def test_requests_stored_by_an_agent_from_before_are_still_recognised(till: Till) -> None:
    """Reservations, sign-ups and refunds hashed with the phone itself, as agents before
    this one did: the POS's retry after the upgrade gets the stored answer, not a refusal."""
    request = _by_phone("p-1")
    first = till.reserve(request)
    signup = SignupRequest(signup_id="s-1", phone=NEW_MEMBER, consent_data=True)
    joined = till.signup(signup)
    with till.store.write() as db:
        db.execute("UPDATE cheques SET request_hash = ?", [content_hash(request)])
        db.execute("UPDATE signups SET request_hash = ?", [content_hash(signup)])
    assert till.reserve(request) == first
    assert till.signup(signup) == joined


def test_the_upgrade_takes_the_phones_out_of_reservations_made_before(tmp_path: Path) -> None:
    path = tmp_path / "till.db"
    with sqlite3.connect(path, isolation_level=None) as raw:
        raw.execute("PRAGMA journal_mode=WAL")
        for number, script in enumerate(MIGRATIONS[:12], start=1):
            raw.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
        documents = {
            "a": {"request": {"customer": {"type": "phone", "value": PHONE}}, "customer": KNOWN},
            "b": {"request": {"customer": {"type": "phone", "value": "89035550102"}}},
            "c": {"request": {"customer": {"type": "card", "value": "2770000000017"}}},
        }
        raw.executemany(
            "INSERT INTO reservations(cheque_id, document) VALUES (?, ?)",
            [(cheque_id, json.dumps(document)) for cheque_id, document in documents.items()],
        )
    raw.close()
    store = TillStore(path)
    with store.read() as db:
        kept = dict(
            db.execute(
                "SELECT cheque_id, json_extract(document, '$.request.customer') FROM reservations"
            ).fetchall()
        )
    store.close()
    assert kept == {
        "a": '{"type":"customer","value":"c-1"}',
        "b": '{"type":"phone","value":"removed"}',
        "c": '{"type":"card","value":"2770000000017"}',
    }
