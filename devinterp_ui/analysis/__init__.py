"""Post-processing of sample trees: LLC, Bayesian influence functions, susceptibilities.

Everything here only reads trees (see STORE.md); the one-call helpers `llc`, `bif` and
`susceptibilities` run `sample()` first.
"""

from devinterp_ui.analysis.bif import bif, compute_bif
from devinterp_ui.analysis.llc import compute_llc, default_nbeta, llc
from devinterp_ui.analysis.mask_preview import MaskPreview, format_preview, preview_param_masks
from devinterp_ui.analysis.param_masks import create_param_masks, merge_param_masks
from devinterp_ui.analysis.susceptibilities import (
    compute_susceptibilities,
    susceptibilities,
    unflatten_susceptibilities,
)

__all__ = [
    "MaskPreview",
    "bif",
    "compute_bif",
    "compute_llc",
    "compute_susceptibilities",
    "create_param_masks",
    "default_nbeta",
    "format_preview",
    "llc",
    "merge_param_masks",
    "preview_param_masks",
    "susceptibilities",
    "unflatten_susceptibilities",
]
