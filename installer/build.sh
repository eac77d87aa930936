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

# Pillow comes with python-escpos, which imports it at start; the slips we print are text and
# ESC/POS commands, so the image codecs with large libraries (AVIF, WebP, FreeType) stay out.
# Pillow itself treats a missing codec module as an unsupported format.
#
# The sources are taken from the work tree (--paths), not from the copy pip installed, which is
# there for its metadata (the version `--version` prints).
cd "$ROOT"
"$VENV/bin/pyinstaller" \
    --noconfirm --clean --log-level WARN \
    --onedir --name "$NAME" \
    --distpath "$DIST" --workpath "$WORK/pyinstaller" --specpath "$WORK" \
    --paths "$ROOT" \
    --additional-hooks-dir "$ROOT/installer/hooks" \
    --collect-data escpos \
    --copy-metadata kopilka \
    --exclude-module central \
    --exclude-module sqlalchemy --exclude-module alembic \
    --exclude-module psycopg --exclude-module psycopg_binary --exclude-module psycopg_c \
    --exclude-module phonenumbers.geodata --exclude-module phonenumbers.geocoder \
    --exclude-module phonenumbers.carrierdata --exclude-module phonenumbers.carrier \
    --exclude-module phonenumbers.tzdata --exclude-module phonenumbers.timezone \
    --exclude-module tkinter \
    --exclude-module PIL._avif --exclude-module PIL._webp --exclude-module PIL._imagingft \
    --exclude-module PIL._imagingtk --exclude-module PIL.ImageTk --exclude-module PIL.ImageQt \
    --strip \
    "$ROOT/installer/agent_main.py"

# escpos's printer database, parsed once here instead of at every start (see agent_main.py);
# the pickle must be newer than the JSON for escpos to take it.
ESCPOS_DIR=$DIST/$NAME/_internal/escpos
ESCPOS_CAPABILITIES_PICKLE_DIR=$ESCPOS_DIR ESCPOS_CAPABILITIES_FILE=$ESCPOS_DIR/capabilities.json \
    "$VENV/bin/python" -c 'import escpos.capabilities'
touch "$ESCPOS_DIR"/*.capabilities.pickle

echo "build.sh: $DIST/$NAME ($(du -sh "$DIST/$NAME" | cut -f1))"
