#!/usr/bin/env bash
# Builds the till agent with PyInstaller into dist/kopilka-agent/ (one folder, stripped).
#
#   installer/build.sh                      # -> dist/kopilka-agent/kopilka-agent
#   KOPILKA_DIST_DIR=/tmp/out installer/build.sh
#
# Needs only Python 3.11 (PYTHON, default python3) and the package registry: the build runs in
# its own virtual environment, build/installer/venv, made from pyproject.toml's `installer` extra
# and reused while pyproject.toml is unchanged.
#
# Never add -O here (or PYTHONOPTIMIZE): assertions guard invariants in the agent.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
DIST=${KOPILKA_DIST_DIR:-$ROOT/dist}
WORK=${KOPILKA_BUILD_DIR:-$ROOT/build/installer}
VENV=$WORK/venv
STAMP=$VENV/kopilka-stamp
NAME=kopilka-agent

if [ -n "${PYTHONOPTIMIZE:-}" ]; then
    echo "build.sh: PYTHONOPTIMIZE is set; the agent must keep its assertions" >&2
    exit 2
fi

wanted_stamp() {
    { "$PYTHON" -c 'import sys; print(sys.version_info[:2])'; sha256sum "$ROOT/pyproject.toml"; } \
        | sha256sum | cut -d' ' -f1
}

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$(wanted_stamp)" ]; then
    echo "build.sh: preparing $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${ROOT}[installer]"
    wanted_stamp >"$STAMP"
fi

# What goes into the build is in installer/kopilka-agent.spec. The sources are taken from the work
# tree (the spec's pathex), not from the copy pip installed, which is there for its metadata (the
# version `--version` prints).
cd "$ROOT"
"$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$WORK/pyinstaller" \
    "$ROOT/installer/kopilka-agent.spec"

# escpos's printer database, parsed once here instead of at every start (see agent_main.py);
# the pickle must be newer than the JSON for escpos to take it.
ESCPOS_DIR=$DIST/$NAME/_internal/escpos
ESCPOS_CAPABILITIES_PICKLE_DIR=$ESCPOS_DIR ESCPOS_CAPABILITIES_FILE=$ESCPOS_DIR/capabilities.json \
    "$VENV/bin/python" -c 'import escpos.capabilities'
touch "$ESCPOS_DIR"/*.capabilities.pickle

echo "build.sh: $DIST/$NAME ($(du -sh "$DIST/$NAME" | cut -f1))"
