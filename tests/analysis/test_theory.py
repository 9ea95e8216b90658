"""Closed-form learning coefficients: internal consistency and known special cases."""

import itertools

import pytest

from devinterp_ui.theory import (
    dln_learning_coefficient,
    normal_crossing_learning_coefficient,
    regular_learning_coefficient,
    rrr_learning_coefficient,
)


def test_two_layer_dln_equals_reduced_rank_regression_over_a_grid():
    for m, h, n in itertools.product(range(1, 8), repeat=3):
        for r in range(min(m, h, n) + 1):
            assert dln_learning_coefficient([m, h, n], r) == pytest.approx(
                rrr_learning_coefficient(M=m, N=n, H=h, r=r)
            ), (m, h, n, r)


def test_one_layer_dln_is_regular_in_times_out_over_two():
    for d_in, d_out in itertools.product(range(1, 7), repeat=2):
        for r in range(min(d_in, d_out) + 1):
            assert dln_learning_coefficient([d_in, d_out], r) == d_in * d_out / 2


def test_dln_at_rank_equal_to_narrowest_width_is_half_the_rank_r_manifold_dimension():
    # The product map is a submersion onto rank-r matrices there: lambda = r(in + out - r) / 2.
    for widths in itertools.product(range(1, 5), repeat=4):
        r = min(widths)
        expected = r * (widths[0] + widths[-1] - r) / 2
        assert dln_learning_coefficient(widths, r) == expected, widths


def test_dln_formula_is_defined_for_every_small_architecture():
    for depth in (3, 4, 5):
        for widths in itertools.product(range(1, 5), repeat=depth):
            for r in range(min(widths) + 1):
                lam = dln_learning_coefficient(widths, r)
                n_params = sum(a * b for a, b in itertools.pairwise(widths))
                assert 0 <= lam <= n_params / 2, (widths, r, lam)


def test_dln_values_used_by_the_accuracy_checks():
    assert dln_learning_coefficient([4, 3, 8], 0) == 6.0
    assert dln_learning_coefficient([5, 3, 9], 0) == 7.5
    assert dln_learning_coefficient([5, 3, 5], 0) == 6.5  # local value 15/2 at a generic teacher
    assert dln_learning_coefficient([4, 3, 6, 10], 0) == 6.0


def test_rrr_central_case_has_parity_correction():
    # M + N + H + r odd adds 1/8.
    assert rrr_learning_coefficient(M=3, N=3, H=3, r=0) == pytest.approx((2 * 3 * 6 - 9 + 1) / 8)
    assert rrr_learning_coefficient(M=4, N=4, H=2, r=0) == pytest.approx((2 * 2 * 8 - 4) / 8)


def test_dln_rejects_rank_above_narrowest_width():
    with pytest.raises(ValueError, match="rank"):
        dln_learning_coefficient([4, 2, 5], 3)


def test_dln_rejects_a_single_width():
    with pytest.raises(ValueError, match="widths"):
        dln_learning_coefficient([4], 0)


def test_normal_crossing_is_min_over_exponents():
    assert normal_crossing_learning_coefficient([1, 2]) == 0.25
    assert normal_crossing_learning_coefficient([1]) == 0.5
    assert normal_crossing_learning_coefficient([0, 3, 1]) == pytest.approx(1 / 6)


def test_normal_crossing_rejects_all_zero_exponents():
    with pytest.raises(ValueError, match="k_i"):
        normal_crossing_learning_coefficient([0, 0])


def test_regular_is_half_the_dimension():
    assert regular_learning_coefficient(10) == 5.0
