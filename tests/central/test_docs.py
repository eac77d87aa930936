"""The JSON examples in docs/sync.md are valid wire messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

import protocol

DOC = Path(__file__).resolve().parents[2] / "docs" / "sync.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\s*```json\n(.*?)```", re.DOTALL)
EXAMPLES = EXAMPLE.findall(DOC.read_text(encoding="utf-8"))


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize(("model", "text"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_matches_its_model(model: str, text: str) -> None:
    cls: type[BaseModel] = getattr(protocol, model)
    cls.model_validate_json(text)


def test_push_example_hashes_are_the_payload_hashes() -> None:
    pushes = [
        protocol.PushRequest.model_validate_json(t) for m, t in EXAMPLES if m == "PushRequest"
    ]
    for push in pushes:
        for item in push.items:
            assert protocol.sha256_hex(item.payload.encode()) == item.payload_sha256
            protocol.LedgerEntry.model_validate_json(item.payload)
