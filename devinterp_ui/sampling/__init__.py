"""`sample()` in pieces with one job each: `api` (the function), `inputs` and `observables`
(checks before any compute), `checkpoint` (device and model mode), `probe` (the checks that
need one forward pass), `init_loss`, `identity` (what the store records about its run)."""

from devinterp_ui.sampling.api import sample
from devinterp_ui.sampling.inputs import batch_size_error, check_run_options

__all__ = ["batch_size_error", "check_run_options", "sample"]
