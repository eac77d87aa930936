"""Shared building blocks of every wire model: strictness, bounded integers, identifiers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.types import Strict

# Bounds. Names carry their unit last; every integer on the wire is bounded.
kopecks_max = 10**13  # 100 billion roubles: far beyond any cheque or balance
points_max = 10**12
quantity_milli_max = 10**9  # a million units
seq_max = 2**62
cheque_lines_max = 500
labels_per_line_max = 16
text_chars_max = 500
id_chars_max = 64

Kopecks = Annotated[int, Strict(), Field(ge=-kopecks_max, le=kopecks_max)]
"""A signed amount of money in minor units (kopecks)."""
NonNegKopecks = Annotated[int, Strict(), Field(ge=0, le=kopecks_max)]
Points = Annotated[int, Strict(), Field(ge=-points_max, le=points_max)]
NonNegPoints = Annotated[int, Strict(), Field(ge=0, le=points_max)]
QuantityMilli = Annotated[int, Strict(), Field(gt=0, le=quantity_milli_max)]
"""A quantity in thousandths of a unit (1 piece = 1000, 0.250 kg = 250)."""
Seq = Annotated[int, Strict(), Field(ge=1, le=seq_max)]
Epoch = Annotated[int, Strict(), Field(ge=1, le=2**31)]
Count = Annotated[int, Strict(), Field(ge=0, le=10**9)]
Cursor = Annotated[int, Strict(), Field(ge=0, le=seq_max)]
"""A place in central's numbered changes (0: before the first). Numbered like `Seq`: a chain
logs more than a billion changes in its years, and `kopilka-central restored` moves the
numbers on by far more than that."""
StrictBool = Annotated[bool, Strict()]

Id = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=id_chars_max, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"
    ),
]
"""An opaque identifier chosen by someone else (POS cheque id, SKU, store id, rule id)."""
Text = Annotated[str, StringConstraints(max_length=text_chars_max)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class WireModel(BaseModel):
    """Every message: immutable, unknown fields refused, integers strict."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)
