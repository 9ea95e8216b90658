#!/usr/bin/env bash
# Creates .venv and installs devinterp_ui with everything it needs; safe to rerun.
# Usage: scripts/bootstrap.sh [extra[,extra]]
#   (none)    the core: sample(), the analysis
#   ui        + the dashboard (panel serve app/dashboard.py; what scripts/run.sh installs)
#   notebook  + the notebook widget and JupyterLab: then .venv/bin/jupyter lab notebooks/
#   test      + everything the test suite needs (what scripts/test.sh installs)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras="${1:-}"
spec="."
[ -n "$extras" ] && spec=".[$extras]"

# torch first, pinned: 2.13.0 is the CPU build (a plain "torch" can pull a multi-GB CUDA build).
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e "$spec"
if [[ ",$extras," == *",notebook,"* ]]; then
  echo "Notebook widget installed. Start JupyterLab with: .venv/bin/jupyter lab notebooks/"
fi
