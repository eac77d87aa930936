#!/usr/bin/env bash
# The installer's check, too slow for the main suite (`python3 dev.py test`, which skips it):
# builds the agent with installer/build.sh and runs tests/installer/test_build.py against the
# build (a sale by phone through the local API, a slip on a file printer, a restart). CI runs it
# after the suite. Size and start-up time: build/installer/report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/pytest ]; then
    python3 -c 'import dev; dev._bootstrap()'
fi
set +e
KOPILKA_INSTALLER_TEST=1 .venv/bin/pytest -m installer tests/installer/test_build.py
code=$?
set -e
if [ -f build/installer/report.json ]; then
    echo "installer report:"
    cat build/installer/report.json
fi
if [ "$code" -eq 5 ]; then
    echo "installer/check.sh: pytest ran no tests, which counts as a failure"
    exit 1
fi
exit "$code"
