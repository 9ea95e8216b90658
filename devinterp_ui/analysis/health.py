"""Health flags of an SGLD run: what a careful colleague would say looking at the traces.

`health(source)` returns a list of `Flag`s, each with what was measured, the threshold it was
judged against, a one-line message and one line of advice. The thresholds are the named
constants of `health_thresholds.py` (re-exported here); docs/tuning.md explains each flag and what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from devinterp_ui.analysis.diagnostics import MIN_DRAWS, diagnose
from devinterp_ui.analysis.health_checks import (
    chain_quarters,
    minibatch_noise,
    robust_jumps,
)
from devinterp_ui.analysis.health_thresholds import (
    BELOW_INIT_NOISE_K,
    BELOW_INIT_SHARE,
    DISTANCE_GROWTH_MAX,
    ESS_PER_CHAIN,
    LOCALIZATION_RATIO_MAX,
    LOW_ESS_MIN,
    NOT_CONVERGED_Z,
    RHAT_MAX,
    SPIKE_K,
    STEP_BIAS_MAX,
)

__all__ = [
    "BELOW_INIT_NOISE_K",
    "BELOW_INIT_SHARE",
    "ESS_PER_CHAIN",
    "LOCALIZATION_RATIO_MAX",
    "DISTANCE_GROWTH_MAX",
    "LOW_ESS_MIN",
    "NOT_CONVERGED_Z",
    "RHAT_MAX",
    "SPIKE_K",
    "STEP_BIAS_MAX",
    "Flag",
    "Severity",
    "health",
    "worst_severity",
]

Severity = Literal["info", "warn", "error"]
_RANK = {"ok": 0, "info": 1, "warn": 2, "error": 3}


@dataclass(frozen=True)
class Flag:
    """One finding. value/threshold are in the units the message states (None when n/a).

    chains: the chains concerned (empty when the finding is about the run as a whole).
    """

    code: str
    severity: Severity
    chains: tuple[int, ...]
    value: float | None
    threshold: float | None
    message: str
    advice: str


def worst_severity(flags: list[Flag]) -> str:
    """ "ok" without flags, else the worst of "info" < "warn" < "error"."""
    worst = "ok"
    for f in flags:
        if _RANK[f.severity] > _RANK[worst]:
            worst = f.severity
    return worst


def health(
    source: xr.DataTree | xr.Dataset,
    *,
    burnin: int | None = None,
    advice: Any | None = None,
    rel_precision: float | None = None,
    diagnostics: xr.Dataset | None = None,
) -> list[Flag]:
    """Flags for a run: a sample tree, a reader's rows (see `diagnose`), or the Dataset that
    `diagnose` returned (then `burnin` is already applied).

    advice: an `LrAdvice` from `suggest_lr` for this checkpoint; enables `step_bias` (the
        bias is predicted at the run's lr).
    rel_precision: also ask `low_ess` for an MCSE within this fraction of |LLC| (e.g. 0.05).

    Order: errors first, then warnings, then info; within a severity, the order of the checks.
    """
    diag = diagnostics if diagnostics is not None else _diagnostics(source, burnin)
    flags: list[Flag] = []
    for check in (
        _nonfinite,
        _below_init,
        _not_converged,
        _chains_disagree,
        _spikes,
        _localization,
        _negative,
    ):
        flags += check(diag)
    flags += _low_ess(diag, rel_precision)
    if advice is not None:
        flags += _step_bias(diag, advice)
    flags += _early_drift(diag)
    return sorted(flags, key=lambda f: -_RANK[f.severity])


def _diagnostics(source, burnin) -> xr.Dataset:
    if isinstance(source, xr.Dataset) and "rhat" in source and "loss" in source:
        return source
    return diagnose(source, burnin)


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


def _nonfinite(d: xr.Dataset) -> list[Flag]:
    status = list(d.attrs.get("chain_status", []))
    errors = list(d.attrs.get("chain_errors", [None] * len(status)))
    failed = tuple(i for i, s in enumerate(status) if s == "failed")
    if not failed:
        return []
    first = next((e for i, e in enumerate(errors) if i in failed and e), None)
    advice = "Lower lr (try /10), raise localization, or set bounding_box_size."
    if first is None:
        # The sampler records a reason for each chain it stops on a NaN/Inf loss; a run that
        # raised (a loss_fn error) marks every chain failed without one, and no lr fixes that.
        message = (
            f"{len(failed)} of {len(status)} chains failed; the store records no reason per "
            "chain (an error the run raised is shown with the run)."
        )
        advice = "If the run raised an error, fix what it says; if the loss went NaN/Inf: " + (
            advice[0].lower() + advice[1:]
        )
    else:
        message = (
            f"{len(failed)} of {len(status)} chains failed on a NaN/Inf loss. "
            f"The sampler said: {_one_line(first)}"
        )
    return [Flag("nonfinite", "error", failed, float(len(failed)), 0.0, message, advice)]


def _below_init(d: xr.Dataset) -> list[Flag]:
    loss = d["loss"].values
    noise = minibatch_noise(loss)
    if not _finite(noise):
        return []
    cut = float(d["init_loss"]) - BELOW_INIT_NOISE_K * noise
    shares = []
    for row in loss:
        row = row[np.isfinite(row)]
        shares.append(float((row < cut).mean()) if row.size >= MIN_DRAWS else 0.0)
    chains = tuple(i for i, s in enumerate(shares) if s > BELOW_INIT_SHARE)
    if not chains:
        return []
    worst = max(shares)
    return [
        Flag(
            "below_init",
            "warn",
            chains,
            worst,
            BELOW_INIT_SHARE,
            f"{worst:.0%} of draws lie below the initial loss by more than "
            f"{BELOW_INIT_NOISE_K:g}x the minibatch noise ({noise:.3g}).",
            "The checkpoint is not at a local minimum, or lr is too high: raise localization, "
            "lower lr, or train the checkpoint further.",
        )
    ]


def _not_converged(d: xr.Dataset) -> list[Flag]:
    flags = []
    q = chain_quarters(d)
    if q is not None:
        drift, se = q["late_drift"], q["late_se"]
        if _finite(drift) and _finite(se) and abs(drift) > NOT_CONVERGED_Z * se:
            flags.append(
                Flag(
                    "not_converged",
                    "warn",
                    tuple(d.attrs.get("rhat_chains", [])),
                    drift,
                    NOT_CONVERGED_Z * se,
                    f"The LLC still moves: the last quarter of draws differs from the third by "
                    f"{drift:+.3g} (more than {NOT_CONVERGED_Z:g} standard errors, {se:.3g}).",
                    "Take more draws, or raise lr (within the stability limit) so the chains "
                    "equilibrate sooner.",
                )
            )
    if "distance_growth" in d and not flags:
        growth = d["distance_growth"].values
        chains = tuple(int(i) for i in np.flatnonzero(growth > DISTANCE_GROWTH_MAX))
        if chains:
            worst = float(np.nanmax(growth))
            flags.append(
                Flag(
                    "not_converged",
                    "warn",
                    chains,
                    worst,
                    DISTANCE_GROWTH_MAX,
                    f"The chains still spread out from the checkpoint: their distance grew by "
                    f"{worst:.0%} from the third to the last quarter of the draws.",
                    "Raise lr (the chains move too slowly to equilibrate), or take many more "
                    "draws.",
                )
            )
    return flags


def _early_drift(d: xr.Dataset) -> list[Flag]:
    q = chain_quarters(d)
    if q is None:
        return []
    drift, se = q["early_drift"], q["early_se"]
    late_ok = abs(q["late_drift"]) <= NOT_CONVERGED_Z * q["late_se"]
    if not (_finite(drift) and _finite(se)) or abs(drift) <= NOT_CONVERGED_Z * se or not late_ok:
        return []
    return [
        Flag(
            "burnin_short",
            "info",
            tuple(d.attrs.get("rhat_chains", [])),
            drift,
            NOT_CONVERGED_Z * se,
            f"The first half of the draws differs from the second by {drift:+.3g} in LLC "
            "(the chains were still equilibrating early on).",
            "Move the burn-in later (slider, or num_burnin_steps) to drop the early draws.",
        )
    ]


def _chains_disagree(d: xr.Dataset) -> list[Flag]:
    rhat = float(d["rhat"])
    if not _finite(rhat) or rhat <= RHAT_MAX:
        return []
    llc = d["llc"].values
    centre = np.nanmedian(llc)
    spread = np.nanstd(llc)
    odd = tuple(int(i) for i in np.flatnonzero(np.abs(llc - centre) > spread)) if spread else ()
    return [
        Flag(
            "chains_disagree",
            "warn",
            odd,
            rhat,
            RHAT_MAX,
            f"R-hat {rhat:.3f} > {RHAT_MAX:g}: chains (or halves of chains) disagree.",
            "Take more draws or burn-in; if one chain stands out, it found another basin: "
            "raise localization.",
        )
    ]


def _spikes(d: xr.Dataset) -> list[Flag]:
    z = robust_jumps(d["loss"].values)
    chains = tuple(i for i, v in enumerate(z) if _finite(v) and v > SPIKE_K)
    if not chains:
        return []
    worst = float(np.nanmax(z))
    return [
        Flag(
            "spikes",
            "warn",
            chains,
            worst,
            SPIKE_K,
            f"The loss jumps by {worst:.3g} robust deviations in one step (limit {SPIKE_K:g}).",
            "Lower lr, or set bounding_box_size to keep chains from jumping out.",
        )
    ]


def _low_ess(d: xr.Dataset, rel_precision: float | None) -> list[Flag]:
    ess = float(d["ess_bulk"])
    mean, mcse = float(d["llc_mean"]), float(d["mcse"])
    chains = max(len(d.attrs.get("rhat_chains", [])), 1)
    needed, why = LOW_ESS_MIN, "for any trustworthy error bar"
    if rel_precision is not None and _finite(ess) and _finite(mcse) and mean:
        # MCSE scales as 1/sqrt(ESS): the ESS that would bring it to the stated precision.
        for_precision = ess * (mcse / (rel_precision * abs(mean))) ** 2
        if for_precision > needed:
            needed, why = for_precision, f"for an MCSE of {rel_precision:.0%} of the LLC"
    if not _finite(ess) or ess < needed:
        shown = f"{ess:.0f}" if _finite(ess) else "unknown (too few draws)"
        return [
            Flag(
                "low_ess",
                "warn",
                (),
                ess if _finite(ess) else None,
                float(needed),
                f"Effective draws {shown}; at least {needed:.0f} are needed {why}.",
                "Take more draws or chains; if the trace is sticky, raise lr within the "
                "stability limit.",
            )
        ]
    recommended = ESS_PER_CHAIN * chains
    if ess < recommended:
        return [
            Flag(
                "low_ess",
                "info",
                (),
                ess,
                recommended,
                f"Effective draws {ess:.0f}, under the {ESS_PER_CHAIN:.0f} per chain "
                "recommended before reporting.",
                "Take more draws for a final figure.",
            )
        ]
    return []


def _localization(d: xr.Dataset) -> list[Flag]:
    if "localization_ratio" not in d:
        return []
    ratio = d["localization_ratio"].values
    chains = tuple(int(i) for i in np.flatnonzero(ratio > LOCALIZATION_RATIO_MAX))
    if not chains:
        return []
    worst = float(np.nanmax(ratio))
    return [
        Flag(
            "localization_dominates",
            "warn",
            chains,
            worst,
            LOCALIZATION_RATIO_MAX,
            f"The localization term is {worst:.3g}x the gradient term: the chains are held by "
            "the prior.",
            "Lower localization (or raise n_beta): the estimate measures the prior, not the model.",
        )
    ]


def _negative(d: xr.Dataset) -> list[Flag]:
    llc = d["llc"].values
    chains = tuple(int(i) for i in np.flatnonzero(llc < 0))
    if not chains:
        return []
    mean = float(d["llc_mean"])
    return [
        Flag(
            "negative_llc",
            "warn",
            chains,
            mean,
            0.0,
            f"The LLC is negative on {len(chains)} chain(s) (mean {mean:.3g}): the chains found "
            "lower loss than the checkpoint.",
            "The checkpoint is not at a local minimum: raise localization or lower lr; with "
            "num_init_loss_batches small, take more init-loss batches.",
        )
    ]


def _step_bias(d: xr.Dataset, advice: Any) -> list[Flag]:
    lr = d.attrs.get("lr")
    if lr is None:
        return []
    bias = float(advice.bias_at(float(lr)))
    if math.isfinite(bias) and bias <= STEP_BIAS_MAX:
        return []
    shown = f"{bias:.0%}" if math.isfinite(bias) else "unbounded (lr past the stability limit)"
    return [
        Flag(
            "step_bias",
            "warn",
            (),
            bias if math.isfinite(bias) else None,
            STEP_BIAS_MAX,
            f"Predicted step-size bias of the LLC at lr={float(lr):.3g}: {shown}.",
            f"Lower lr to about {advice.lr_suggested:.3g} (the advisor's suggestion).",
        )
    ]


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= 300 else line[:297] + "..."
