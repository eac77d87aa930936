"""`kopilka-agent`: the till agent's command line."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from protocol import PROTOCOL_VERSION


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kopilka-agent", description="Kopilka till agent")
    parser.add_argument(
        "--version",
        action="version",
        version=f"kopilka-agent {version('kopilka')} (protocol {PROTOCOL_VERSION})",
    )
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
