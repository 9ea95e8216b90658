"""health(): each flag fires on a trace made to show its problem, and stays quiet on a healthy one.

Traces are built as the rows a StoreReader returns (chain, step, loss), with the initial loss
and n_beta as attrs; the real-run checks on the demo LM are in test_health_demo.py.
"""

import math

import numpy as np
import pytest
import xarray as xr

from devinterp_ui.analysis import Flag, LrAdvice, diagnose, health, worst_severity
from devinterp_ui.analysis.health import (
    BELOW_INIT_SHARE,
    DISTANCE_GROWTH_MAX,
    LOCALIZATION_RATIO_MAX,
    RHAT_MAX,
    SPIKE_K,
    STEP_BIAS_MAX,
)

INIT = 2.0
N_BETA = 10.0


def rows_of(loss, *, metrics=None, **attrs):
    """Reader-style rows of a (chain, step) loss array."""
    loss = np.asarray(loss, dtype=np.float64)
    chains, steps = loss.shape
    chain, step = np.meshgrid(np.arange(chains), np.arange(steps), indexing="ij")
    data = {"loss": ("row", loss.ravel())}
    for name, values in (metrics or {}).items():
        data[f"metrics_{name}"] = ("row", np.asarray(values, dtype=np.float64).ravel())
    ds = xr.Dataset(data, coords={"chain": ("row", chain.ravel()), "step": ("row", step.ravel())})
    ds.attrs.update(n_beta=N_BETA, init_loss=INIT, **attrs)
    return ds


def healthy(chains=4, steps=400, level=0.3, sd=0.05, seed=0):
    """Stationary, independent draws a little above the initial loss: nothing to say."""
    rng = np.random.default_rng(seed)
    return INIT + level + sd * rng.standard_normal((chains, steps))


def codes(flags, severity=None):
    return {f.code for f in flags if severity is None or f.severity == severity}


def test_a_healthy_run_has_no_flag():
    assert health(rows_of(healthy())) == []
    assert worst_severity(health(rows_of(healthy()))) == "ok"


def test_flags_are_frozen_and_carry_value_threshold_message_and_advice():
    flags = health(rows_of(healthy(level=-0.3)))
    assert flags and all(isinstance(f, Flag) for f in flags)
    f = flags[0]
    with pytest.raises(AttributeError):
        f.code = "x"  # frozen
    assert f.message and f.advice and f.severity in ("info", "warn", "error")


def test_worst_severity_orders_info_warn_error():
    def flag(sev):
        return Flag("x", sev, (), None, None, "m", "a")

    assert worst_severity([]) == "ok"
    assert worst_severity([flag("info")]) == "info"
    assert worst_severity([flag("info"), flag("error"), flag("warn")]) == "error"


# --- nonfinite ---------------------------------------------------------------------------------


def test_nonfinite_fires_for_a_failed_chain_and_quotes_the_samplers_words():
    loss = healthy()
    loss[2, 50:] = np.nan
    status = ["completed", "completed", "failed", "completed"]
    errors = [None, None, "non-finite sampling loss at step 50", None]
    flags = health(rows_of(loss, chain_status=status, chain_errors=errors))
    (f,) = [f for f in flags if f.code == "nonfinite"]
    assert f.severity == "error" and f.chains == (2,)
    assert "step 50" in f.message and "lr" in f.advice
    assert flags[0].code == "nonfinite"  # errors first


def test_chains_failed_without_a_reason_are_not_said_to_have_hit_nan():
    """A run that raised (its loss_fn, say) marks every chain failed with no error text: the
    flag still fires, but does not claim a NaN/Inf loss nor offer lr as the only cure."""
    loss = healthy()
    loss[:, 50:] = np.nan
    flags = health(rows_of(loss, chain_status=["failed"] * 4, chain_errors=[None] * 4))
    (f,) = [f for f in flags if f.code == "nonfinite"]
    assert f.severity == "error" and f.chains == (0, 1, 2, 3)
    assert "NaN/Inf loss" not in f.message and "no reason" in f.message
    assert f.advice.startswith("If the run raised an error")


def test_nonfinite_is_quiet_when_every_chain_completed():
    status = ["completed"] * 4
    assert "nonfinite" not in codes(health(rows_of(healthy(), chain_status=status)))


# --- below_init / negative_llc ------------------------------------------------------------------


def test_below_init_and_negative_llc_fire_when_the_chains_find_lower_loss():
    flags = health(rows_of(healthy(level=-0.3)))
    assert {"below_init", "negative_llc"} <= codes(flags, "warn")
    (f,) = [f for f in flags if f.code == "below_init"]
    assert f.value > BELOW_INIT_SHARE and f.chains == (0, 1, 2, 3)


def test_below_init_ignores_single_batches_below_init_within_the_noise():
    # Level just above init: many single draws fall below init, none by more than 2 noise sd.
    flags = health(rows_of(healthy(level=0.02, sd=0.05)))
    assert "below_init" not in codes(flags)
    assert "negative_llc" not in codes(flags)


def test_negative_llc_names_only_the_chains_below_zero():
    loss = healthy()
    loss[1] -= 0.4
    (f,) = [f for f in health(rows_of(loss)) if f.code == "negative_llc"]
    assert f.chains == (1,)


# --- not_converged / burnin_short ---------------------------------------------------------------


def test_not_converged_fires_while_the_trace_still_trends():
    loss = healthy() + np.linspace(0, 0.5, 400)[None, :]
    (f,) = [f for f in health(rows_of(loss)) if f.code == "not_converged"]
    assert f.severity == "warn" and f.value > f.threshold > 0


def test_not_converged_is_quiet_on_a_stationary_trace():
    assert "not_converged" not in codes(health(rows_of(healthy())))


def test_not_converged_fires_while_the_chains_still_diffuse_away_from_the_checkpoint():
    steps = np.arange(1, 401)
    walk = np.sqrt(steps)[None, :] * np.ones((4, 1))  # free diffusion: distance ~ sqrt(t)
    rows = rows_of(healthy(), metrics={"distance": walk, "scaled_grad": walk, "localization": walk})
    (f,) = [f for f in health(rows) if f.code == "not_converged"]
    assert f.value == pytest.approx(
        np.sqrt(steps[300:]).mean() / np.sqrt(steps[200:300]).mean() - 1
    )
    assert f.threshold == DISTANCE_GROWTH_MAX


def test_not_converged_is_quiet_once_the_distance_levels_off():
    steps = np.arange(1, 401)
    level = (1 - np.exp(-steps / 20.0))[None, :] * np.ones((4, 1))
    rows = rows_of(healthy(), metrics={"distance": level})
    assert "not_converged" not in codes(health(rows))


def test_an_early_ramp_gives_an_info_to_raise_the_burnin_not_a_warning():
    ramp = np.minimum(np.arange(1000) / 100.0, 1.0)
    loss = INIT + 0.5 * ramp[None, :] + 0.02 * np.random.default_rng(1).standard_normal((4, 1000))
    flags = health(rows_of(loss))
    assert "burnin_short" in codes(flags, "info")
    assert "not_converged" not in codes(flags)
    # Moving the burn-in past the ramp clears it.
    assert "burnin_short" not in codes(health(rows_of(loss), burnin=150))


# --- chains_disagree -----------------------------------------------------------------------------


def test_chains_disagree_fires_when_one_chain_sits_elsewhere():
    loss = healthy()
    loss[3] += 0.3
    (f,) = [f for f in health(rows_of(loss)) if f.code == "chains_disagree"]
    assert f.value > RHAT_MAX and f.chains == (3,)


def test_chains_disagree_is_quiet_when_chains_agree():
    assert "chains_disagree" not in codes(health(rows_of(healthy())))


# --- spikes -------------------------------------------------------------------------------------


def test_spikes_fire_on_a_jump_far_beyond_the_chains_own_jumps():
    loss = healthy()
    loss[1, 200] += 2.0  # 40 sd
    (f,) = [f for f in health(rows_of(loss)) if f.code == "spikes"]
    assert f.chains == (1,) and f.value > SPIKE_K


def test_spikes_are_quiet_on_gaussian_noise():
    assert "spikes" not in codes(health(rows_of(healthy(steps=2000))))


def test_on_a_long_run_the_scale_comes_from_a_sample_and_every_jump_is_still_judged():
    """Past MAX_SCALE_SAMPLES differences the median/MAD use every k-th one (bounded cost);
    the scale hardly moves, and a single spike anywhere, not on the sampled grid, still fires."""
    from devinterp_ui.analysis.health_checks import (
        MAD_TO_SD,
        MAX_SCALE_SAMPLES,
        minibatch_noise,
        robust_jumps,
    )

    loss = healthy(chains=2, steps=3 * MAX_SCALE_SAMPLES + 7, seed=5)
    diffs = np.diff(loss, axis=1).ravel()
    full = MAD_TO_SD * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2.0)
    assert minibatch_noise(loss) == pytest.approx(full, rel=0.02)
    assert minibatch_noise(loss) == pytest.approx(0.05, rel=0.03)
    assert np.all(robust_jumps(loss) < SPIKE_K)
    loss[0, 40_001] += 2.0  # 40 sd, at an odd step
    z = robust_jumps(loss)
    assert z[0] > SPIKE_K and z[1] < SPIKE_K


# --- low_ess ------------------------------------------------------------------------------------


def _ar1(chains, steps, rho, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((chains, steps))
    for t in range(1, steps):
        x[:, t] = rho * x[:, t - 1] + rng.standard_normal(chains) * math.sqrt(1 - rho**2)
    return INIT + 0.3 + 0.05 * x


def test_low_ess_warns_below_100_effective_draws():
    (f,) = [f for f in health(rows_of(_ar1(2, 100, 0.95))) if f.code == "low_ess"]
    assert f.severity == "warn" and f.value < 100 and f.threshold == 100


def test_low_ess_warns_when_too_few_draws_to_tell():
    (f,) = [f for f in health(rows_of(healthy(steps=3))) if f.code == "low_ess"]
    assert f.severity == "warn" and f.value is None


def test_low_ess_notes_under_100_per_chain_as_info():
    flags = health(rows_of(_ar1(4, 400, 0.7)))
    (f,) = [f for f in flags if f.code == "low_ess"]
    assert f.severity == "info" and 100 <= f.value < 400 and f.threshold == 400


def test_low_ess_holds_the_llc_to_a_stated_precision_when_asked():
    rows = rows_of(healthy(sd=0.5))
    assert "low_ess" not in codes(health(rows))
    (f,) = [f for f in health(rows, rel_precision=0.001) if f.code == "low_ess"]
    assert f.severity == "warn" and f.threshold > f.value


def test_low_ess_is_quiet_with_plenty_of_independent_draws():
    assert "low_ess" not in codes(health(rows_of(healthy())))


# --- localization_dominates ---------------------------------------------------------------------


def test_localization_dominates_fires_when_the_prior_term_dwarfs_the_gradient_term():
    grad = np.ones((4, 400))
    rows = rows_of(healthy(), metrics={"scaled_grad": grad, "localization": 30 * grad})
    (f,) = [f for f in health(rows) if f.code == "localization_dominates"]
    assert f.value == pytest.approx(30) and f.threshold == LOCALIZATION_RATIO_MAX


def test_localization_dominates_is_quiet_for_a_ratio_of_a_few():
    grad = np.ones((4, 400))
    rows = rows_of(healthy(), metrics={"scaled_grad": grad, "localization": 3 * grad})
    assert "localization_dominates" not in codes(health(rows))


def test_localization_dominates_needs_save_metrics_data():
    assert "localization_ratio" not in diagnose(rows_of(healthy()))


# --- step_bias ----------------------------------------------------------------------------------


def _advice(h_max=1.0):
    return LrAdvice(
        h_max=h_max,
        n_beta=N_BETA,
        localization=0.0,
        target_bias=0.05,
        lr_stable_max=0.4,
        lr_suggested=0.019,
        lr=None,
        bias=None,
        iterations=5,
        converged=True,
        num_batches=1,
        batch_size=1,
    )


def test_step_bias_fires_when_the_advisor_predicts_more_than_10_percent():
    rows = rows_of(healthy(), settings={"lr": 0.05})  # bias 1/(1 - 0.125) - 1 = 14%
    (f,) = [f for f in health(rows, advice=_advice()) if f.code == "step_bias"]
    assert f.value == pytest.approx(1 / (1 - 0.05 * 10 / 4) - 1)
    assert f.threshold == STEP_BIAS_MAX and "0.019" in f.advice


def test_step_bias_says_unbounded_past_the_stability_limit():
    rows = rows_of(healthy(), settings={"lr": 1.0})
    (f,) = [f for f in health(rows, advice=_advice()) if f.code == "step_bias"]
    assert f.value is None and "stability" in f.message


def test_step_bias_is_quiet_at_a_small_lr_and_without_advice():
    rows = rows_of(healthy(), settings={"lr": 0.01})  # bias 2.6%
    assert "step_bias" not in codes(health(rows, advice=_advice()))
    assert "step_bias" not in codes(health(rows_of(healthy(), settings={"lr": 0.05})))


def test_health_accepts_the_diagnostics_dataset_itself():
    rows = rows_of(healthy(level=-0.3))
    assert codes(health(diagnose(rows))) == codes(health(rows))


def test_a_run_with_one_draw_per_chain_is_judged_without_error():
    # A study cell or a live run that has just started: one finite row per chain.
    flags = health(rows_of(np.full((4, 1), INIT + 0.01)))
    assert all(isinstance(f, Flag) for f in flags)
    assert worst_severity(flags) in ("ok", "info", "warn", "error")
