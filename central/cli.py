"""`kopilka-central`: the processing service's command line."""

from __future__ import annotations

import argparse
import sys

from central import _demo, _rules_cli, _serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kopilka-central", description="Kopilka central")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the main job on the embedded default")
    demo.add_argument("--examples", default=None, help="folder of example data")
    _serve.add_commands(commands)
    _rules_cli.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo.run(args.examples)
    if args.command in {"serve", "migrate", "enroll-code", "admin-token", "jobs"}:
        return _serve.run(args)
    if args.command == "rules":
        return _rules_cli.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
