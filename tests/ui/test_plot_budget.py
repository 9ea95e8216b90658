"""Plots keep a fixed budget of points per chain, however long the run."""

import numpy as np
import pytest
import xarray as xr

from devinterp_ui.live.marker import StoreStatus
from devinterp_ui.live.reader import NewRows
from devinterp_ui.ui.decimate import BucketSeries
from devinterp_ui.ui.plots import LivePlots, cosine


def test_short_series_is_kept_point_for_point():
    s = BucketSeries(budget=100)
    s.extend(np.arange(50), np.arange(50) * 2.0)
    x, y = s.arrays()
    np.testing.assert_array_equal(x, np.arange(50))
    np.testing.assert_array_equal(y, np.arange(50) * 2.0)


def test_long_series_stays_within_budget_as_bucket_means():
    s = BucketSeries(budget=100)
    s.extend(np.arange(100_000), np.arange(100_000, dtype=float))
    x, y = s.arrays()
    assert len(x) <= 101
    assert s.width >= 100_000 // 100
    # A bucket's mean of a linear series is the value at its mean x.
    np.testing.assert_allclose(x, y)
    assert x[0] == pytest.approx((s.width - 1) / 2)


def test_take_new_streams_appends_and_resets_after_a_merge():
    s = BucketSeries(budget=4)
    s.extend(np.arange(3), np.ones(3))
    reset, x, _ = s.take_new()
    assert not reset and list(x) == [0, 1, 2]
    s.extend(np.arange(3, 4), np.ones(1))
    reset, x, _ = s.take_new()
    assert not reset and list(x) == [3]
    s.extend(np.arange(4, 5), np.ones(1))  # fifth closed bucket: pairs merge
    reset, x, _ = s.take_new()
    assert reset and list(x) == [0.5, 2.5]


def test_fed_in_pieces_equals_fed_at_once():
    whole, pieces = BucketSeries(budget=64), BucketSeries(budget=64)
    values = np.random.default_rng(0).normal(size=5000)
    whole.extend(np.arange(5000), values)
    for start in range(0, 5000, 37):
        pieces.extend(np.arange(start, min(start + 37, 5000)), values[start : start + 37])
    for a, b in zip(whole.arrays(), pieces.arrays(), strict=True):
        np.testing.assert_allclose(a, b)


def new_rows(chains: int, start: int, count: int, draws: bool = True) -> NewRows:
    steps = np.arange(start, start + count)
    chain = np.repeat(np.arange(chains), count)
    step = np.tile(steps, chains)
    values = np.sin(step / 50.0) + chain
    ds_steps = xr.Dataset(
        {
            "loss": ("row", values),
            "llc": ("row", values * 10),
            **{
                f"metrics_{m}": ("row", np.abs(values) + 1)
                for m in (
                    "scaled_grad",
                    "noise",
                    "localization",
                    "distance",
                    "weight_decay",
                    "unscaled_grad",
                )
            },
            **{
                f"metrics_{d}": ("row", values * 0.1)
                for d in ("dot_grad_prior", "dot_grad_noise", "dot_prior_noise")
            },
        },
        coords={"chain": ("row", chain), "step": ("row", step)},
    )
    ds_draws = xr.Dataset(
        {"loss_obs": ("row", values)},
        coords={"chain": ("row", chain), "draw": ("row", step), "step": ("row", step)},
    )
    status = StoreStatus(
        "running",
        "running",
        (start + count,) * chains,
        (start + count,) * chains,
        ("running",) * chains,
        (None,) * chains,
        None,
        10**6,
        10**6,
        False,
    )
    return NewRows(ds_steps, ds_draws if draws else ds_draws.isel(row=slice(0, 0)), status)


def test_live_plots_hold_a_bounded_number_of_points_through_100k_steps():
    plots = LivePlots(num_chains=4, observables=["obs"], burnin=100, budget=200)
    for start in range(0, 100_000, 2_000):
        plots.update(new_rows(4, start, 2_000))
    lines = len(plots.all_lines)
    assert plots.points() <= lines * 4 * 201
    assert min(len(s.data["x"]) for s in plots.loss.sources) >= 100
    # The newest step is on the plot (x of the last bucket is within the last bucket width).
    last_x = plots.loss.sources[0].data["x"][-1]
    assert last_x > 100_000 - 2 * plots.loss.series[0].width


def test_cosines_divide_dot_products_by_norms():
    metrics = {
        "dot_grad_noise": np.array([2.0]),
        "scaled_grad": np.array([1.0]),
        "noise": np.array([4.0]),
        "localization": np.array([3.0]),
        "weight_decay": np.array([0.0]),
        "dot_grad_prior": np.array([1.5]),
    }
    assert cosine(metrics, "dot_grad_noise", "scaled_grad", "noise")[0] == pytest.approx(0.5)
    assert cosine(metrics, "dot_grad_prior", "scaled_grad", "prior")[0] == pytest.approx(0.5)
