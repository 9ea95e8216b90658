"""`sample()` and the input checks the dashboard and `SamplingJob` share.

The implementation lives in `devinterp_ui.sampling` (one module per job); this module keeps
`from devinterp_ui.sample import sample, batch_size_error, check_run_options` working.
"""

from devinterp_ui.sampling.api import sample
from devinterp_ui.sampling.inputs import batch_size_error, check_run_options

__all__ = ["batch_size_error", "check_run_options", "sample"]
