"""`kopilka-central import customers|history FILE` and `kopilka-central export
customers|balances|ledger [FILE]`: the CSV import and export without HTTP (no size limit)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import sqlalchemy as sa

from central import _csvio
from central._clock import system_clock


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    imports = commands.add_parser("import", help="import a CSV of customers or their history")
    imports.add_argument("kind", choices=["customers", "history"])
    imports.add_argument("file", help="UTF-8 CSV with a header row")
    imports.add_argument("--db", default="sqlite:///var/central.db")
    exports = commands.add_parser("export", help="export customers, balances or the ledger")
    exports.add_argument("kind", choices=["customers", "balances", "ledger"])
    exports.add_argument("file", nargs="?", default="-", help="output file (stdout by default)")
    exports.add_argument("--db", default="sqlite:///var/central.db")


def run(engine: sa.Engine, args: Any) -> int:
    """Run the command, then close the engine's connections (the process is done with it)."""
    try:
        return _run(engine, args)
    finally:
        engine.dispose()


def _run(engine: sa.Engine, args: Any) -> int:
    if args.command == "import":
        importer = _csvio.import_customers if args.kind == "customers" else _csvio.import_history
        with open(args.file, "rb") as raw:
            try:
                report = importer(engine, _csvio.utf8_lines(raw), system_clock())
            except _csvio.BadRow as error:
                print(f"refused: {error}", file=sys.stderr)
                return 2
        print(json.dumps(report.__dict__, ensure_ascii=False, indent=1))
        return 0 if report.rejected_count == 0 and report.stopped is None else 1
    exporter = {
        "customers": _csvio.export_customers,
        "balances": _csvio.export_balances,
        "ledger": _csvio.export_ledger,
    }[args.kind]
    if args.file == "-":
        sys.stdout.writelines(exporter(engine))
        return 0
    with open(args.file, "w", encoding="utf-8", newline="") as out:
        out.writelines(exporter(engine))
    return 0
