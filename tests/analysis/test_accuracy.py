"""Known-answer accuracy of sample() + compute_llc, and proof that the checks catch wrong updates.

Reduced sizes by default (each check a few seconds); DEVINTERP_UI_FULL=1 runs the documented
sizes and tolerances of docs/accuracy.md (minutes).
"""

import os

import pytest
import torch
from known_answers import (
    deep_linear_network,
    localized_regular_model,
    normal_crossing,
    regular_model,
    run_known_answer,
)
from sampler_mutants import wrong_update

SIZE = "full" if os.environ.get("DEVINTERP_UI_FULL") == "1" else "reduced"
MUTANT_DRAWS = 1_000


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Tiny tensors: a second intra-op thread only adds contention (10x slower on a busy box).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _check(problem, **overrides):
    result = run_known_answer(problem, SIZE, **overrides)
    low, high = result.tolerance
    assert result.passed, (
        f"{result.name}: estimate {result.estimate:.4f} (chains {result.per_chain}) vs true "
        f"{result.true_lambda:.4f}: relative error {result.relative_error:+.3f} outside "
        f"[{low:+.2f}, {high:+.2f}]"
    )
    return result


@pytest.mark.slow
def test_regular_model_llc_is_half_the_dimension():
    _check(regular_model())


@pytest.mark.slow
def test_localized_regular_model_matches_the_exact_localized_posterior():
    _check(localized_regular_model())


@pytest.mark.slow
def test_two_layer_dln_4_3_8_matches_aoyagi():
    _check(deep_linear_network([4, 3, 8]))


@pytest.mark.slow
def test_two_layer_dln_5_3_9_matches_aoyagi():
    _check(deep_linear_network([5, 3, 9]))


@pytest.mark.slow
def test_three_layer_dln_4_3_6_10_matches_aoyagi():
    _check(deep_linear_network([4, 3, 6, 10]))


@pytest.mark.slow
def test_normal_crossing_llc_is_near_one_quarter():
    _check(normal_crossing())


@pytest.mark.parametrize("kind", ["drift", "noise", "no_localization"])
def test_a_wrong_update_fails_the_localized_regular_check(kind):
    problem = localized_regular_model()
    with wrong_update(kind):
        result = run_known_answer(problem, "reduced", num_draws=MUTANT_DRAWS)
    assert not result.passed, f"mutant {kind!r} passed: estimate {result.estimate:.3f}"


def test_the_correct_update_passes_the_same_shortened_check():
    # Same size as the mutant runs: their failure is the mutation's, not the budget's.
    result = run_known_answer(localized_regular_model(), "reduced", num_draws=MUTANT_DRAWS)
    assert result.passed, f"estimate {result.estimate:.3f} vs {result.true_lambda:.3f}"


def test_wrong_update_restores_the_sampler():
    from devinterp_ui import sgld

    original = sgld.sgld_step
    with wrong_update("noise"):
        assert sgld.sgld_step is not original
    assert sgld.sgld_step is original
