"""`panel serve app/dashboard.py`: the live SGLD dashboard on the shipped demos.

Every browser session runs this script anew, so each tab gets its own Dashboard, job and plots.
Runs are written under ./runs (or $DEVINTERP_UI_RUNS_DIR).
"""

import os

import panel as pn
import torch

from devinterp_ui.ui.app import dashboard_page

# Leave a core to the server and the browser: torch's busy-waiting intra-op threads otherwise
# compete with them and sampling slows several-fold on small machines.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))

pn.extension(notifications=False)
dashboard_page().servable(title="devinterp_ui: live SGLD")
