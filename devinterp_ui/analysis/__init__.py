"""Post-processing of sample trees: LLC, diagnostics and health flags, Bayesian influence
functions, susceptibilities, and the lr advisor.

Everything here only reads trees (see STORE.md); the one-call helpers `llc`, `bif` and
`susceptibilities` run `sample()` first; `suggest_lr` reads the model's curvature.
"""

from devinterp_ui.analysis.bif import bif, compute_bif
from devinterp_ui.analysis.diagnostics import diagnose
from devinterp_ui.analysis.health import Flag, health, worst_severity
from devinterp_ui.analysis.llc import compute_llc, default_nbeta, llc
from devinterp_ui.analysis.lr_advisor import LrAdvice, suggest_lr
from devinterp_ui.analysis.mask_preview import MaskPreview, format_preview, preview_param_masks
from devinterp_ui.analysis.param_masks import create_param_masks, merge_param_masks
from devinterp_ui.analysis.susceptibilities import (
    compute_susceptibilities,
    susceptibilities,
    unflatten_susceptibilities,
)

__all__ = [
    "Flag",
    "LrAdvice",
    "MaskPreview",
    "bif",
    "compute_bif",
    "compute_llc",
    "compute_susceptibilities",
    "create_param_masks",
    "default_nbeta",
    "diagnose",
    "format_preview",
    "health",
    "llc",
    "merge_param_masks",
    "preview_param_masks",
    "suggest_lr",
    "susceptibilities",
    "unflatten_susceptibilities",
    "worst_severity",
]
