"""docs/devices.md: its TOML examples are valid configs and its code-page table is ours."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from drivers import CODEPAGE_NUMBERS, DevicesConfig

DOC = (Path(__file__).parents[2] / "docs" / "devices.md").read_text("utf-8")
TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", DOC, flags=re.DOTALL)


def test_the_page_has_examples() -> None:
    assert len(TOML_BLOCKS) >= 3


@pytest.mark.parametrize("block", TOML_BLOCKS)
def test_every_toml_example_is_a_valid_devices_config(block: str) -> None:
    config = DevicesConfig.model_validate(tomllib.loads(block)["devices"])
    assert config.readers or config.printers


def test_the_code_page_table_matches_the_code() -> None:
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| (\d+|—) \| (\d+|—) \|$", DOC, flags=re.MULTILINE)
    documented = {
        model: {k: int(v) for k, v in (("cp866", cp866), ("cp1251", cp1251)) if v != "—"}
        for model, cp866, cp1251 in rows
    }
    assert documented == CODEPAGE_NUMBERS
