"""Suggested ``sample()`` keyword arguments for the demos, and why they are what they are.

Both follow SAMPLING.md's rule of thumb ``n_beta = n / ln n`` and keep ``lr * n_beta * h_max``
well below 1 (``h_max`` = largest Hessian eigenvalue of the loss at the checkpoint),
so the step-size bias ``1 / (1 - lr n_beta h / 4)`` stays small.
"""

from __future__ import annotations

from typing import Any

from devinterp_ui.analysis.llc import default_nbeta


def tiny_lm_sampler_settings(n_train_sequences: int) -> dict[str, Any]:
    """Settings for the tiny LM demo (any checkpoint; tuned on the final one).

    ``n`` is the number of training *sequences* (16384): the checkpoint was fit to that data set,
    and the per-token loss is a mean over a sequence whose tokens are far from independent (a
    ``repeat`` row is fixed by its first period), so sequences, not tokens (508k, which would
    give ``n_beta`` ~ 4e4 and a chain that cannot move at a stable step size), are the samples.
    ``n_beta = n / ln n`` = 1689.

    ``lr`` = 3e-5: the largest Hessian eigenvalue of the per-token loss at the final checkpoint
    is about 3.9 (power iteration), so ``lr * n_beta * h_max`` ~ 0.2. ``localization`` = 1000
    keeps each parameter within ~1/sqrt(1000) ~ 0.03 of the checkpoint (the estimate is *local*)
    and sets how fast the flat directions equilibrate (``lr * localization`` = 0.03 per step):
    the loss rises for ~60 steps and then levels off, about 0.1 nats above the checkpoint's
    (final checkpoint: LLC ~ 149, chains within ~2 %; see bench/demo_run.py).

    ``num_init_loss_batches`` = 200, the number of SGLD steps: the sampler takes the initial
    loss over the first batches of the same feed the chains step through, so the checkpoint's
    loss is averaged over exactly the sampled batches. The training mixture makes a batch's loss
    vary by ~0.2 nats with its mix of languages; with the default 32 batches the initial loss
    would carry an error of ~0.04 nats, i.e. ~60 in the LLC, shared by all chains.

    A hotter choice, ``n`` = one batch of tokens (32 * 31, ``n_beta`` = 144), does not hold the
    chain near the checkpoint: with localization 100 the loss climbs to ~3.2 nats, close to the
    untrained model's 3.47, and only a localization so strong that it dominates the estimate
    keeps it close.
    ``batch_size`` = 32 sequences keeps 4 chains x 200 draws at ~26 s of CPU time.
    """
    return {
        "lr": 3e-5,
        "n_beta": round(default_nbeta(n_train_sequences), 3),
        "localization": 1000.0,
        "num_chains": 4,
        "num_draws": 200,
        "num_burnin_steps": 0,
        "num_steps_bw_draws": 1,
        "num_init_loss_batches": 200,
        "batch_size": 32,
    }


def dln_sampler_settings(n: int, curvature: float) -> dict[str, Any]:
    """Settings for the DLN demo; ``n`` = number of training rows (the likelihood's n).

    ``n`` is the dataset size here because the data are an i.i.d. regression sample and the
    loss is a per-sample negative log-likelihood, so ``n_beta = n / ln n`` is the textbook
    choice. ``curvature`` = the Hessian scale in the first layer's directions
    (``teacher_scale ** 2`` for two layers); ``lr`` makes ``lr * n_beta * curvature = 0.05``
    (step-size bias ~ 1.3 %), which also sets the relaxation time (~2 / 0.05 = 40 steps for the
    first layer, ~20 for the loss), hence 200 burn-in steps, and the autocorrelation of the
    loss (~40 steps): 1000 draws x 4 chains give ~100 effective samples, a standard error of
    ~4 % on lambda. ``localization`` is tiny against ``n_beta * curvature`` so it does not bias the
    estimate; it only stops the flat directions (later layers) from drifting.
    """
    n_beta = default_nbeta(n)
    return {
        # Three significant digits, as the form shows and a researcher would type it.
        "lr": float(f"{0.05 / (n_beta * curvature):.3g}"),
        "n_beta": round(n_beta, 3),
        "localization": 1.0,
        "num_chains": 4,
        "num_draws": 1000,
        "num_burnin_steps": 200,
        "num_steps_bw_draws": 1,
        "batch_size": 256,
    }
