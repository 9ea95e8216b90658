#!/usr/bin/env bash
# Sets everything up and opens the dashboard on the demo model: http://localhost:5006/dashboard
# Extra arguments go to `panel serve`, e.g. scripts/run.sh --port 5007 --show
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh ui
echo "devinterp_ui dashboard: http://localhost:${PORT:-5006}/dashboard (Ctrl-C to quit)"
exec .venv/bin/panel serve app/dashboard.py --port "${PORT:-5006}" "$@"
