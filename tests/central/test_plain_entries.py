"""The plain-entry reader (`central._plain_entries`) gives what the model path gives, or
leaves the payload to it: for any payload it reads, the model reads the same entry and push
makes the same ledger row, posting and checks of it; a payload it leaves gets the model's
verdict, as before."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from central import _plain_entries, _push
from protocol import EntryKind, LedgerEntry, UUIDv7Generator, canonical_json, sha256_hex

_make_id = UUIDv7Generator()
_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,70}", fullmatch=True)
_moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def _entry_data(draw: st.DrawFn) -> dict[str, Any]:
    """A valid entry's JSON data, often plain, sometimes with what sends it to the model."""
    kind = draw(st.sampled_from(list(EntryKind)))
    data: dict[str, Any] = {
        "record": "entry",
        "entry_id": str(_make_id()),
        "device_id": draw(st.sampled_from(["d-1", "till.7:a", "Z"])),
        "device_epoch": draw(st.integers(1, 2**31)),
        "device_seq": draw(st.integers(1, 2**62)),
        "kind": kind.value,
        "account": {"type": "customer", "customer_id": draw(_ids.filter(lambda s: len(s) <= 64))},
        "asset": draw(st.sampled_from(["points", "purchases", "rolling_spend", "stamps:cof_1"])),
        "amount": draw(st.integers(-(10**12), 10**12)),
        "grant_key": "g-1" if draw(st.booleans()) else None,
        "cheque_id": draw(st.none() | _ids.filter(lambda s: len(s) <= 64)),
        "rules": None,
        "activates_at": None,
        "expires_at": None,
        "reverses": None,
        "reason": None,
        "device_time": draw(_moments).isoformat().replace("+00:00", "Z"),
    }
    if draw(st.booleans()):
        data["expires_at"] = "2030-01-01T00:00:00Z"
    return data


_BAD_VALUES = st.sampled_from(
    [
        None,
        0,
        -1,
        2**31 + 1,
        2**62 + 1,
        10**12 + 1,
        1.0,
        True,
        "",
        "x" * 65,
        "bad id",
        "abc\n",
        "é",
        [],
        {},
        {"type": "card", "number": "ABC123"},
        {"type": "customer"},
        {"type": "customer", "customer_id": "c1", "x": 1},
        "01a24e07-3c69-41ed-acd9-3e5ca67dfb7b",  # a UUIDv4
        "01a24e07-3c69-71ed-0cd9-3e5ca67dfb7b",  # version 7, not the RFC 4122 variant
        "01A24E07-3C69-71ED-ACD9-3E5CA67DFB7B",
        "01a24e073c6971edacd93e5ca67dfb7b",
        "2026-11-25T12:00:00",
        "2026-11-25T12:00:00+03:00",
        "2026-02-30T12:00:00Z",
        "2026-11-25T24:00:00Z",
        "2026-11-25T12:00:60Z",
        "2026-11-25T12:00:00.1234567Z",
        "2026-11-25 12:00:00Z",
        "stamps:",
        "welcome",
        "counter",
        "earn",
        "entry",
        "signup",
    ]
)


@st.composite
def _payloads(draw: st.DrawFn) -> bytes:
    data = _entry_data(draw)
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([*data, "extra"]))
        if draw(st.booleans()) and key in data:
            del data[key]
        else:
            data[key] = draw(_BAD_VALUES)
    how = draw(st.sampled_from(["canonical", "canonical", "spaced", "unsorted", "duplicate"]))
    if how == "canonical":
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    if how == "spaced":
        return json.dumps(data, sort_keys=True).encode()
    if how == "unsorted":
        return orjson.dumps(dict(reversed(data.items())))
    text = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    return ('{"amount":1,' + text[1:]).encode()


def _model_item(payload: bytes, digest: str) -> _push._Item:
    return _push._Item(1, payload, digest, *_push._parse(payload))


@settings(max_examples=1500, deadline=None)
@given(payload=_payloads())
def test_a_payload_the_plain_reader_takes_reads_as_the_model_reads_it(payload: bytes) -> None:
    digest = sha256_hex(payload)
    plain = _plain_entries.read(payload, digest)
    model = _model_item(payload, digest)
    if plain is None:
        return  # the model's path, as before: nothing to compare
    assert model.problem is None, model.problem
    assert isinstance(model.record, LedgerEntry)
    fast = _push._Item(1, payload, digest, plain, None)
    assert fast.ledger == model.ledger
    assert fast.posting == model.posting
    assert (fast.record_id, fast.customer_id, fast.lot) == (
        model.record_id,
        model.customer_id,
        model.lot,
    )
    entry = model.record
    assert (plain.device_id, plain.device_epoch, plain.device_seq) == (
        entry.device_id,
        entry.device_epoch,
        entry.device_seq,
    )
    assert (plain.kind, plain.cheque_id, plain.grant_key) == (
        entry.kind,
        entry.cheque_id,
        entry.grant_key,
    )
    assert plain.kind is entry.kind


def _plain_entry(**changes: Any) -> LedgerEntry:
    fields: dict[str, Any] = {
        "entry_id": _make_id(),
        "device_id": "d-1",
        "device_epoch": 1,
        "device_seq": 7,
        "kind": EntryKind.burn,
        "account": {"type": "customer", "customer_id": "c1"},
        "amount": -10,
        "cheque_id": "pos-1",
        "device_time": datetime(2026, 11, 25, 12, 0, 0, 250_000, tzinfo=UTC),
    }
    return LedgerEntry.model_validate({**fields, **changes})


def test_the_plain_shape_takes_the_plain_path() -> None:
    for entry in (
        _plain_entry(),
        _plain_entry(kind=EntryKind.earn, amount=40, cheque_id=None),
        _plain_entry(kind=EntryKind.counter, amount=0, asset="purchases"),
        _plain_entry(device_time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=1)),
    ):
        payload = canonical_json(entry)
        plain = _plain_entries.read(payload, sha256_hex(payload))
        assert plain is not None, payload
        assert plain.ledger == _push._ledger_values(entry, payload, sha256_hex(payload))


def test_other_shapes_take_the_model_path() -> None:
    for entry in (
        _plain_entry(kind=EntryKind.welcome, amount=50, grant_key="welcome:c1"),
        _plain_entry(account={"type": "card", "number": "ABC123"}),
        _plain_entry(reverses=_make_id()),
        _plain_entry(reason="why"),
        _plain_entry(kind=EntryKind.earn, amount=5, expires_at=datetime(2030, 1, 1, tzinfo=UTC)),
    ):
        payload = canonical_json(entry)
        assert _plain_entries.read(payload, sha256_hex(payload)) is None, payload
