"""The samplers of `sample()` as `torch.optim.Optimizer`s: `SGLD`, `RMSpropSGLD`, `SGNHT`.

Same terms and the same update functions as `sample()` (devinterp_ui.kernel); see
`devinterp_ui.optim.samplers` and docs/sampling.md.
"""

from devinterp_ui.optim.samplers import SGLD, SGNHT, RMSpropSGLD

__all__ = ["SGLD", "SGNHT", "RMSpropSGLD"]
