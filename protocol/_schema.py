"""JSON Schemas of the wire models, exported to `docs/protocol/` for integrators.

`python -m protocol._schema docs/protocol` rewrites them; a test fails when they drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from protocol import _ledger, _refund, _rules, _sale, _sync

WIRE_MODELS: tuple[type[BaseModel], ...] = (
    _sale.Store,
    _sale.Basket,
    _sale.CustomerState,
    _sale.RedeemRequest,
    _sale.Quote,
    _refund.Refund,
    _rules.RuleSet,
    _ledger.LedgerEntry,
    _ledger.ChequeDocument,
    _ledger.SignupRecord,
    _sync.ErrorBody,
    _sync.EnrollRequest,
    _sync.EnrollResponse,
    _sync.PushRequest,
    _sync.PushResponse,
    _sync.PullResponse,
    _sync.SnapshotRequired,
    _sync.SnapshotPage,
    _sync.OfflineLimits,
    _sync.HoldRequest,
    _sync.HoldResponse,
)


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema of each wire model."""
    return {f"{model.__name__}.json": model.model_json_schema() for model in WIRE_MODELS}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "docs/protocol")
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (folder / name).write_text(render(schema), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
