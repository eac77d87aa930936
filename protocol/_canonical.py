"""Canonical JSON bytes: the one definition of the bytes that are hashed and stored.

Keys sorted, no insignificant white space, UTF-8 (not ASCII escapes), no floats. A model
always serialises to the same bytes, so a hash over them names the content; and an entry's
payload hash is taken over the bytes as first stored, never over a re-serialisation.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError


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


_FLOAT_FREE_SCHEMAS = frozenset(
    {
        "bool", "date", "datetime", "default", "dict", "enum", "function-after", "int",
        "list", "literal", "model", "model-field", "model-fields", "no-info", "nullable",
        "set", "str", "tagged-union", "tuple", "union", "uuid",
    }
)  # fmt: skip
"""Core-schema node types that serialise to no float. `float`, `any`, `decimal`, custom
serialisers and anything not listed here send a model down the walk instead."""


def _schema_types(schema: Any) -> Iterator[str]:
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "serialization" in item:
                yield "custom serialisation"
            kind = item.get("type")
            if isinstance(kind, str):
                yield kind
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


@functools.cache
def _float_free(model: type[BaseModel]) -> bool:
    """Whether the schema of `model` has no way to put a float into its JSON form."""
    return all(
        kind in _FLOAT_FREE_SCHEMAS for kind in _schema_types(model.__pydantic_core_schema__)
    )


def _plain(value: BaseModel | dict[str, Any] | list[Any]) -> Any:
    """`value` as plain JSON data, checked to hold no float.

    A model whose schema cannot hold a float is dumped with serializer warnings as errors;
    anything else, or a model holding a value its schema does not expect (a float put into an
    int field past validation), is dumped as before and walked."""
    if isinstance(value, BaseModel):
        if _float_free(type(value)):
            with contextlib.suppress(PydanticSerializationError):
                return value.model_dump(mode="json", warnings="error")
        value = value.model_dump(mode="json")
    _reject_floats(value)
    return value


def canonical_json(value: BaseModel | dict[str, Any] | list[Any]) -> bytes:
    """The canonical bytes of a model or of plain JSON data.

    orjson writes them (sorted keys, compact, UTF-8); what it refuses (integers beyond 64 bits)
    goes through the standard library, which gives the same bytes for everything else."""
    data = _plain(value)
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")


def sha256_hex(payload: bytes) -> str:
    """The hash that names a payload: lowercase hex SHA-256 of its bytes."""
    return hashlib.sha256(payload).hexdigest()


def content_hash(value: BaseModel | dict[str, Any] | list[Any]) -> str:
    """SHA-256 of the canonical bytes of `value`."""
    return sha256_hex(canonical_json(value))
