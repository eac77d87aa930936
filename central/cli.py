"""`kopilka-central`: the processing service's command line."""

from __future__ import annotations

import argparse
import sys

from central import _rules_cli, _serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kopilka-central", description="Kopilka central")
    commands = parser.add_subparsers(dest="command", required=True)
    _serve.add_commands(commands)
    _rules_cli.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command in {
        "serve",
        "migrate",
        "enroll-code",
        "admin-token",
        "restored",
        "jobs",
        "import",
        "export",
    }:
        return _serve.run(args)
    if args.command == "rules":
        return _rules_cli.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
