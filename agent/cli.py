"""`kopilka-agent`: run the till agent, see its status, check its devices, sell by hand."""

from __future__ import annotations

import argparse
import functools
import json
import sqlite3
import sys
from importlib.metadata import version
from pathlib import Path

from agent._api import storage_problem
from agent._config import AgentSettings, ConfigError, load_settings
from agent._store import StorageError
from protocol import PROTOCOL_VERSION


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kopilka-agent", description="Kopilka till agent")
    parser.add_argument(
        "--version",
        action="version",
        version=f"kopilka-agent {version('kopilka')} (protocol {PROTOCOL_VERSION})",
    )
    parser.add_argument("--config", type=Path, default=None, help="agent.toml")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="agent.toml")
    commands = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(commands.add_parser, parents=[config])
    add("run", help="run the agent: POS API, devices, sync")
    status = add("status", help="online?, outbox depth, data age")
    status.add_argument("--json", action="store_true", help="machine-readable")
    doctor = add("doctor", help="check devices, printer and central")
    doctor.add_argument("--test-slip", action="store_true", help="print a test slip")
    till = add("till", help="manual till mode in the terminal")
    till.add_argument("--url", default=None, help="the agent's POS API (default from config)")
    fleet = commands.add_parser(
        "fleet", help="the main job: central and two tills with emulated devices"
    )
    fleet.add_argument("--demo", action="store_true", help="play the scripted story and exit")
    fleet.add_argument("--workdir", type=Path, default=None, help="folder for all their files")
    enroll = add("enroll", help="obtain this till's credential from central")
    enroll.add_argument("--central", required=True, help="central's URL")
    enroll.add_argument("--code", required=True, help="enrollment code from HQ")
    enroll.add_argument(
        "--restored",
        action="store_true",
        help="the data folder came back from a backup: continue in a new epoch",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "fleet":
        from agent._demo import main as fleet_main

        return fleet_main(args.demo, args.workdir)
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        return _bad_configuration(error)
    try:
        return _command(args, settings)
    except ConfigError as error:  # a file the configuration names, read as the command starts
        return _bad_configuration(error)
    except (sqlite3.Error, StorageError, PermissionError) as error:
        problem = storage_problem(error) if isinstance(error, sqlite3.Error) else str(error)
        print(f"kopilka-agent: cannot use {settings.data_dir}: {problem}", file=sys.stderr)
        return 2


def _bad_configuration(error: ConfigError) -> int:
    print(f"kopilka-agent: bad configuration:\n{error}", file=sys.stderr)
    return 2


def _command(args: argparse.Namespace, settings: AgentSettings) -> int:
    if args.command == "run":
        from agent._service import AgentService

        AgentService(settings).serve()
        return 0
    if args.command == "status":
        from agent._tools import print_status

        return print_status(settings, as_json=args.json)
    if args.command == "doctor":
        from agent._tools import doctor

        return doctor(settings, test_slip=args.test_slip)
    if args.command == "till":
        from agent._manual import manual_till

        return manual_till(settings, args.url)
    if args.command == "enroll":
        from agent._sync import enroll_cli

        return enroll_cli(settings, args.central, args.code, restored=args.restored)
    return 2


def dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


if __name__ == "__main__":
    sys.exit(main())
