"""health() on real runs of the demo LM: quiet at its suggested settings, and the expected flags
with lr x100, lr / 1000, and localization 0 at an early checkpoint.

Reduced size by default (2 chains x 120 draws, batch 16: a few seconds each on an idle CPU);
DEVINTERP_UI_FULL=1 runs the suggested 4 x 200 at batch 32.
"""

import os
import warnings

import pytest

from devinterp_ui import sample
from devinterp_ui.analysis import health, suggest_lr, worst_severity
from devinterp_ui.demo import load_demo

FULL = os.environ.get("DEVINTERP_UI_FULL") == "1"
EARLY_STEP = 26


@pytest.fixture(scope="module")
def demo():
    return load_demo("tiny_lm")


def _run(demo, model=None, **changes):
    settings = dict(demo.sampler_settings)
    if not FULL:
        settings.update(num_chains=2, num_draws=120, batch_size=16, num_init_loss_batches=32)
    settings.update(changes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failing chain warns; the flags are what we check
        tree = sample(
            model if model is not None else demo.model,
            demo.datasets["train"],
            {},
            save_metrics=True,
            progress_bar=False,
            **settings,
        )
    return tree


@pytest.fixture(scope="module")
def advice(demo):
    s = demo.sampler_settings
    return suggest_lr(
        demo.model,
        demo.datasets["train"],
        n_beta=s["n_beta"],
        localization=s["localization"],
        batch_size=16,
        num_batches=2,
        max_iters=20,
        rtol=1e-2,
    )


def _codes(flags, *severities):
    return {f.code for f in flags if f.severity in severities}


@pytest.mark.slow
def test_suggested_settings_show_no_warning(demo, advice):
    flags = health(_run(demo), advice=advice)
    assert worst_severity(flags) in ("ok", "info"), flags


@pytest.mark.slow
def test_lr_x100_fails_the_chains_and_predicts_a_step_size_bias(demo, advice):
    flags = health(_run(demo, lr=demo.sampler_settings["lr"] * 100), advice=advice)
    codes = _codes(flags, "warn", "error")
    assert {"nonfinite", "step_bias"} <= codes, flags
    assert worst_severity(flags) == "error"


@pytest.mark.slow
def test_lr_divided_by_1000_has_not_converged(demo, advice):
    flags = health(_run(demo, lr=demo.sampler_settings["lr"] / 1000), advice=advice)
    assert "not_converged" in _codes(flags, "warn"), flags
    assert "step_bias" not in _codes(flags, "warn")


@pytest.mark.slow
def test_localization_0_at_an_early_checkpoint_has_not_converged(demo):
    flags = health(_run(demo, model=demo.model_at(EARLY_STEP), localization=0.0))
    assert "not_converged" in _codes(flags, "warn"), flags
