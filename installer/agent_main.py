"""PyInstaller's entry script: the `kopilka-agent` executable of the one-folder bundle.

It runs exactly the command line a developer runs as `kopilka-agent` from the virtual
environment, with one thing arranged first: python-escpos parses its 96 KB printer database with
a pure-Python YAML parser on every import (0.2–0.4 s of CPU) unless it finds a pickle
of it in `ESCPOS_CAPABILITIES_PICKLE_DIR`. `installer/build.sh` puts that pickle beside
`capabilities.json` in the bundle; escpos only reads it while it is newer than the JSON, which
holds as long as the folder is copied with its times (`cp -a`, as `install.sh` does). Otherwise
escpos would rewrite it, so the bundle's own folder is then not offered.

The agent's sync process (`agent/_syncprocess.py`) is started with multiprocessing's `spawn`:
from the bundle, that runs this executable again with multiprocessing's own arguments, which
`multiprocessing.freeze_support()` recognises (and then runs the child instead of the CLI).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
from pathlib import Path

PICKLE_DIR_VARIABLE = "ESCPOS_CAPABILITIES_PICKLE_DIR"


def _bundled_escpos_pickle_dir() -> Path | None:
    """The bundle's escpos folder when its capabilities pickle can be read as it is."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is None:
        return None
    folder = Path(bundle) / "escpos"
    pickled = folder / f"{platform.python_version()}.capabilities.pickle"
    try:
        if pickled.stat().st_mtime >= (folder / "capabilities.json").stat().st_mtime:
            return folder
    except OSError:
        return None
    return None


def _main() -> int:
    multiprocessing.freeze_support()  # returns at once unless this is a spawned child
    if PICKLE_DIR_VARIABLE not in os.environ:
        folder = _bundled_escpos_pickle_dir()
        if folder is not None:
            os.environ[PICKLE_DIR_VARIABLE] = str(folder)
    from agent.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
