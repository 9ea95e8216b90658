#!/usr/bin/env bash
# Sets everything up and opens the dashboard on the demo model: http://localhost:5006/dashboard
# It listens on localhost only (127.0.0.1 and ::1) unless you pass --address yourself; read the
# README's "Exposing the dashboard" first. Extra arguments go to `panel serve`, e.g.
#   scripts/run.sh --port 5007 --show
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh ui
port="${PORT:-5006}"
# "localhost" binds both 127.0.0.1 and ::1; the browser origin Bokeh accepts by default is
# then localhost:<port>.
bind=(--address localhost)
for arg in "$@"; do
  case "$arg" in
    --address|--address=*) bind=() ;;  # the user chose where to listen: say nothing more
  esac
done
echo "devinterp_ui dashboard: http://localhost:${port}/dashboard (Ctrl-C to quit)"
exec .venv/bin/panel serve app/dashboard.py --port "${port}" "${bind[@]}" "$@"
