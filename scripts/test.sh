#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (what CI runs: .ci/run calls this).
# Extra arguments go to pytest, e.g. scripts/test.sh tests/core -x
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh test
scripts/install-browser.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
