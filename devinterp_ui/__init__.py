"""devinterp_ui: live SGLD sampling for Singular Learning Theory research.

The core (this package without `devinterp_ui.ui`) never imports a UI library.
"""

__version__ = "0.1.0"

from devinterp_ui.analysis import (
    bif,
    compute_bif,
    compute_llc,
    compute_susceptibilities,
    create_param_masks,
    default_nbeta,
    llc,
    preview_param_masks,
    susceptibilities,
    unflatten_susceptibilities,
)
from devinterp_ui.config import (
    METHOD_KWARGS,
    SETTINGS,
    SamplerConfig,
    setting_errors,
    validate_settings,
)
from devinterp_ui.live import JobProgress, NewRows, SamplingJob, StoreReader, StoreStatus
from devinterp_ui.runner import StepSummary
from devinterp_ui.sample import sample
from devinterp_ui.store.cache import StoreConflictError
from devinterp_ui.study import Study, llc_trajectory, sweep
from devinterp_ui.tokenize import tokenize_and_concatenate

__all__ = [
    "METHOD_KWARGS",
    "SETTINGS",
    "JobProgress",
    "NewRows",
    "SamplerConfig",
    "SamplingJob",
    "StepSummary",
    "StoreConflictError",
    "StoreReader",
    "StoreStatus",
    "Study",
    "__version__",
    "bif",
    "compute_bif",
    "compute_llc",
    "compute_susceptibilities",
    "create_param_masks",
    "default_nbeta",
    "llc",
    "llc_trajectory",
    "preview_param_masks",
    "sample",
    "setting_errors",
    "susceptibilities",
    "sweep",
    "tokenize_and_concatenate",
    "unflatten_susceptibilities",
    "validate_settings",
]
