#!/usr/bin/env bash
# Sets everything up for the notebook widget (JupyterLab included) and opens JupyterLab on
# notebooks/. Extra arguments go to `jupyter lab`, e.g. scripts/notebook.sh --port 8890
# JupyterLab listens on localhost with its token login (the URL it prints carries the token).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh notebook
exec .venv/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks "$@"
