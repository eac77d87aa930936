"""Canonical JSON bytes: the one definition of the bytes that are hashed and stored.

Keys sorted, no insignificant white space, UTF-8 (not ASCII escapes), no floats. A model
always serialises to the same bytes, so a hash over them names the content; and an entry's
payload hash is taken over the bytes as first stored, never over a re-serialisation.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel


class FloatInPayloadError(TypeError):
    """A float reached canonical JSON; money and points are integers everywhere."""


_LEAVES = frozenset({str, int, bool, type(None)})


def _reject_floats(value: Any) -> None:
    """Walk plain JSON data (a loop, not recursion: documents have hundreds of nodes)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _LEAVES:
            continue
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, float):
            raise FloatInPayloadError(f"float {item!r} in a canonical payload")


def canonical_json(value: BaseModel | dict[str, Any] | list[Any]) -> bytes:
    """The canonical bytes of a model or of plain JSON data."""
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    _reject_floats(data)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def sha256_hex(payload: bytes) -> str:
    """The hash that names a payload: lowercase hex SHA-256 of its bytes."""
    return hashlib.sha256(payload).hexdigest()


def content_hash(value: BaseModel | dict[str, Any] | list[Any]) -> str:
    """SHA-256 of the canonical bytes of `value`."""
    return sha256_hex(canonical_json(value))
