"""Wire models: strict, closed, canonical; entry ids ordered by time."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import protocol
from protocol import (
    BasketLine,
    CustomerAccount,
    EntryKind,
    LedgerEntry,
    PushItem,
    PushRequest,
    UUIDv7Generator,
    canonical_json,
    content_hash,
    uuid7_time_ms,
)
from protocol._canonical import FloatInPayloadError, _float_free
from protocol._schema import WIRE_MODELS, json_schemas, render

from .samples import NOW, SAMPLES

ROOT = Path(__file__).resolve().parents[2]
FREE_MAPS = {"counters", "details", "balance_seqs"}


def test_every_wire_model_has_a_sample() -> None:
    assert set(WIRE_MODELS) == set(SAMPLES)


def _dicts(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict]]:
    if isinstance(node, dict):
        if not path or path[-1] not in FREE_MAPS:
            yield path, node
        for key, value in node.items():
            yield from _dicts(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _dicts(value, (*path, str(index)))


def _int_leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, bool):
        return
    if isinstance(node, int):
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _int_leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _int_leaves(value, (*path, str(index)))


def _set(data: Any, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[int(key)] if isinstance(data, list) else data[key]
    if isinstance(data, list):
        data[int(path[-1])] = value
    else:
        data[path[-1]] = value


@pytest.mark.parametrize("model", WIRE_MODELS, ids=lambda m: m.__name__)
def test_unknown_fields_refused_at_every_level(model: type[BaseModel]) -> None:
    data = json.loads(canonical_json(SAMPLES[model]))
    checked = 0
    for path, _ in list(_dicts(data)):
        tampered = json.loads(json.dumps(data))
        node = tampered
        for key in path:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node["surprise"] = 1
        with pytest.raises(ValidationError, match="surprise"):
            model.model_validate_json(json.dumps(tampered))
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("model", WIRE_MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("bad", ["1.0", "1e2", "true", '"1"'])
def test_integers_are_strict_everywhere(model: type[BaseModel], bad: str) -> None:
    data = json.loads(canonical_json(SAMPLES[model]))
    leaves = list(_int_leaves(data))
    for path in leaves:
        if bad == '"1"' and "details" in path:
            continue  # a free map of details may hold strings
        tampered = json.loads(json.dumps(data))
        _set(tampered, path, "__BAD__")
        text = json.dumps(tampered).replace('"__BAD__"', bad)
        with pytest.raises(ValidationError):
            model.model_validate_json(text)


def test_money_refuses_float_from_python_too() -> None:
    with pytest.raises(ValidationError, match="valid integer"):
        BasketLine(line_id="1", sku="x", quantity_milli=1000, unit_price=99.5, total=100)  # type: ignore[arg-type]


def test_line_total_must_match_quantity_and_price() -> None:
    with pytest.raises(ValidationError, match="rounded half up"):
        BasketLine(line_id="1", sku="x", quantity_milli=333, unit_price=100, total=34)
    line = BasketLine(line_id="1", sku="x", quantity_milli=335, unit_price=100, total=34)
    assert line.paid == 34


@pytest.mark.parametrize("model", WIRE_MODELS, ids=lambda m: m.__name__)
def test_canonical_bytes_survive_a_round_trip(model: type[BaseModel]) -> None:
    sample = SAMPLES[model]
    first = canonical_json(sample)
    again = canonical_json(model.model_validate_json(first))
    assert first == again
    assert b" " not in first.replace(b"\xd0", b"").split(b'"')[0]  # no padding outside strings


def test_canonical_bytes_ignore_input_key_order_and_keep_utf8() -> None:
    store = SAMPLES[protocol.Store]
    data = json.loads(canonical_json(store))
    reordered = json.dumps(dict(reversed(list(data.items()))), ensure_ascii=True)
    assert canonical_json(protocol.Store.model_validate_json(reordered)) == canonical_json(store)
    assert "Москва".encode() in canonical_json(store)


def test_canonical_json_refuses_floats() -> None:
    with pytest.raises(FloatInPayloadError):
        canonical_json({"amount": 1.5})


def test_canonical_json_refuses_a_float_put_into_a_model_past_validation() -> None:
    smuggled = SAMPLES[LedgerEntry].model_copy(update={"amount": 1.5})
    with pytest.warns(UserWarning, match="Expected `int`"), pytest.raises(FloatInPayloadError):
        canonical_json(smuggled)


class _Measured(BaseModel):
    weight_kg: float


class _Tagged(BaseModel):
    tags: dict[str, Any]


def test_only_models_that_cannot_hold_a_float_skip_the_walk() -> None:
    for record in (LedgerEntry, protocol.ChequeDocument, protocol.SignupRecord):
        assert _float_free(record), record.__name__
    assert not _float_free(_Measured)
    assert not _float_free(_Tagged)
    with pytest.raises(FloatInPayloadError):
        canonical_json(_Measured(weight_kg=1.5))
    with pytest.raises(FloatInPayloadError):
        canonical_json(_Tagged(tags={"deep": [{"weight": 0.5}]}))


_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: those take the standard library's path
    | st.text(st.characters(exclude_categories=("Cs",)))
)
_json_data = st.recursive(
    _json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=("Cs",))), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_json_data.map(lambda data: {"data": data}))
def test_canonical_bytes_are_the_standard_librarys_sorted_compact_utf8(data: Any) -> None:
    expected = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(data) == expected.encode("utf-8")


entries = st.builds(
    LedgerEntry,
    entry_id=st.builds(lambda: UUIDv7Generator()()),
    device_id=st.from_regex(r"[a-z][a-z0-9\-]{0,20}", fullmatch=True),
    device_epoch=st.integers(1, 2**31),
    device_seq=st.integers(1, 2**62),
    kind=st.sampled_from([EntryKind.earn, EntryKind.burn, EntryKind.adjust]),
    account=st.builds(CustomerAccount, customer_id=st.from_regex(r"c-[0-9]{1,9}", fullmatch=True)),
    amount=st.integers(-(10**12), 10**12).filter(bool),
    reason=st.none() | st.text(max_size=50),
    device_time=st.datetimes(timezones=st.just(UTC)),
)


@given(entries)
def test_entry_canonical_bytes_are_stable(entry: LedgerEntry) -> None:
    payload = canonical_json(entry)
    parsed = LedgerEntry.model_validate_json(payload)
    assert parsed == entry
    assert canonical_json(parsed) == payload
    assert content_hash(parsed) == content_hash(entry)


@given(st.lists(st.integers(0, 5), min_size=2, max_size=300))
def test_entry_ids_are_time_ordered_uuid7(steps: list[int]) -> None:
    clock = [1_790_000_000_000]

    def now_ms() -> int:
        clock[0] += random.choice(steps) - 1  # the clock may stand still or step back 1 ms
        return clock[0]

    make = UUIDv7Generator(clock_ms=now_ms)
    made = [make() for _ in steps]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in made)
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    times = [uuid7_time_ms(u) for u in made]
    assert times == sorted(times)


def test_entry_id_must_be_uuid7() -> None:
    sample = json.loads(canonical_json(SAMPLES[LedgerEntry]))
    sample["entry_id"] = str(uuid.uuid4())
    with pytest.raises(ValidationError, match="UUIDv7"):
        LedgerEntry.model_validate(sample)


def test_grant_entries_need_a_grant_key() -> None:
    with pytest.raises(ValidationError, match="grant_key"):
        LedgerEntry(
            entry_id=UUIDv7Generator()(),
            device_id="t",
            device_epoch=1,
            device_seq=1,
            kind=EntryKind.welcome,
            account=CustomerAccount(customer_id="c"),
            amount=100,
            device_time=NOW,
        )


def test_push_items_must_be_consecutive() -> None:
    item = PushItem(seq=1, payload="{}", payload_sha256="0" * 64)
    skipped = PushItem(seq=3, payload="{}", payload_sha256="0" * 64)
    with pytest.raises(ValidationError, match="consecutive"):
        PushRequest(device_id="t", device_epoch=1, items=(item, skipped), device_time=NOW)


def test_naive_times_refused() -> None:
    data = json.loads(canonical_json(SAMPLES[LedgerEntry]))
    data["device_time"] = (NOW.replace(tzinfo=None) + timedelta(0)).isoformat()
    with pytest.raises(ValidationError, match="timezone"):
        LedgerEntry.model_validate(data)


def test_exported_schemas_match_models() -> None:
    folder = ROOT / "docs" / "protocol"
    expected = json_schemas()
    on_disk = {p.name for p in folder.glob("*.json")}
    fix = "regenerate with: .venv/bin/python -m protocol._schema docs/protocol"
    assert on_disk == set(expected), fix
    for name, schema in expected.items():
        assert (folder / name).read_text(encoding="utf-8") == render(schema), f"{name}: {fix}"


def test_public_surface_is_pinned() -> None:
    assert len(protocol.__all__) == len(set(protocol.__all__))
    assert all(hasattr(protocol, name) for name in protocol.__all__)
    assert datetime.now(UTC) > NOW - timedelta(days=3650)
