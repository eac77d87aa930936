"""The plainest pushed ledger entries, read without a pydantic model.

Most of what tills push is one shape: an entry on a customer account, without a grant key,
rules, activation, expiry, reversal or reason. `read` takes such a payload straight from its
JSON to its ledger row, with every field checked as strictly as `protocol.LedgerEntry`
checks it, and only when the payload is exactly the canonical JSON of its data (sorted keys,
compact, as `protocol.canonical_json` writes it: so no duplicate key and no other spelling of
a value). Anything else gives None and goes through the model, which gives the verdict and
its precise error; tests/central/test_plain_entries.py holds the two paths together.
"""

from __future__ import annotations

import re
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from central._clock import to_ms
from protocol import EntryKind
from protocol._base import id_chars_max, points_max, seq_max
from protocol._ledger import GRANT_KINDS

__all__ = ["PlainEntry", "read"]

_KEYS = (
    "account",
    "activates_at",
    "amount",
    "asset",
    "cheque_id",
    "device_epoch",
    "device_id",
    "device_seq",
    "device_time",
    "entry_id",
    "expires_at",
    "grant_key",
    "kind",
    "reason",
    "record",
    "reverses",
    "rules",
)
_fields = itemgetter(*_KEYS)
_PLAIN = ("entry", None, None, None, None, None, None)
"""`record`, and the fields a plain entry has null: activates_at, expires_at, grant_key,
reason, reverses, rules."""
_KINDS = {kind.value: kind for kind in EntryKind if kind not in GRANT_KINDS}
"""Kinds a plain entry may have: a grant needs a grant key, so it takes the model's path."""
_ZERO_KINDS = frozenset({EntryKind.counter, EntryKind.activate})
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")
_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
"""A UUIDv7 as `str(uuid.UUID)` writes it (version 7, RFC 4122 variant)."""
_ASSET = re.compile(r"points|purchases|rolling_spend|stamps:[A-Za-z0-9_\-]{1,40}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
_epoch_max = 2**31


class PlainEntry(NamedTuple):
    """What push reads of a plain entry: its ledger row (`_push.LEDGER_COLUMNS` but
    `received_ms`, as `_push._ledger_values` makes it) and what the batch checks use."""

    entry_id: str
    device_id: str
    device_epoch: int
    device_seq: int
    kind: EntryKind
    customer_id: str
    cheque_id: str | None
    ledger: tuple[Any, ...]
    grant_key: None = None


def read(payload: bytes, digest: str) -> PlainEntry | None:
    """The entry, when `payload` is a plain entry in canonical JSON; None otherwise."""
    try:
        data = orjson.loads(payload)
        fields = _fields(data) if type(data) is dict and len(data) == len(_KEYS) else None
    except (orjson.JSONDecodeError, KeyError):
        return None
    if fields is None:
        return None
    (account, activates, amount, asset, cheque_id, epoch, device_id, seq) = fields[:8]
    (device_time, entry_id, expires, grant_key, kind_text, reason, record) = fields[8:15]
    (reverses, rules) = fields[15:]
    if (record, activates, expires, grant_key, reason, reverses, rules) != _PLAIN:
        return None
    customer_id = _customer(account)
    kind = _KINDS.get(kind_text) if type(kind_text) is str else None
    if (
        customer_id is None
        or kind is None
        or not (_whole(amount, -points_max, points_max) and (amount or kind in _ZERO_KINDS))
        or not _whole(epoch, 1, _epoch_max)
        or not _whole(seq, 1, seq_max)
        or not _is_id(device_id)
        or not (cheque_id is None or _is_id(cheque_id))
        or not (type(asset) is str and _ASSET.fullmatch(asset))
        or not (type(entry_id) is str and _UUID7.fullmatch(entry_id))
    ):
        return None
    device_time_ms = _time_ms(device_time)
    if device_time_ms is None or orjson.dumps(data, option=orjson.OPT_SORT_KEYS) != payload:
        return None
    ledger = (
        entry_id,
        device_id,
        epoch,
        seq,
        kind.value,
        f"customer:{customer_id}",
        asset,
        amount,
        None,
        cheque_id,
        None,
        device_time_ms,
        payload,
        digest,
    )
    return PlainEntry(entry_id, device_id, epoch, seq, kind, customer_id, cheque_id, ledger)


def _whole(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _is_id(value: Any) -> bool:
    return type(value) is str and len(value) <= id_chars_max and _ID.fullmatch(value) is not None


def _customer(account: Any) -> str | None:
    if type(account) is not dict or len(account) != 2 or account.get("type") != "customer":
        return None
    customer_id = account.get("customer_id")
    return customer_id if _is_id(customer_id) else None


time_texts_max = 4096
"""Device times kept read (tills push runs of entries made in the same second)."""
_times_ms: dict[str, int] = {}


def _time_ms(text: Any) -> int | None:
    """`to_ms` of the time as the model reads it, for the one spelling plain entries use."""
    if type(text) is not str:
        return None
    known = _times_ms.get(text)
    if known is not None:
        return known
    if _TIME.fullmatch(text) is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if len(_times_ms) >= time_texts_max:
        _times_ms.clear()
    _times_ms[text] = ms = to_ms(moment)
    return ms
