"""compute_llc on hand-built trees: exact values, devinterp parity, partial runs, errors."""

import math

import numpy as np
import pytest
import xarray as xr

from devinterp_ui.analysis import compute_llc, default_nbeta


def _reference_per_chain(tree, first_step):
    ds = tree.to_dataset()
    micro = ds["sampling_loss_micro"].values.astype(np.float64)[:, first_step:]
    init = ds["init_loss"].values.astype(np.float64).mean()
    return ds.attrs["metadata"]["config"]["sampler"]["n_beta"] * (micro.mean(axis=(1, 2, 3)) - init)


def test_llc_per_chain_is_n_beta_times_post_burnin_mean_loss_minus_init_loss(make_tree):
    tree = make_tree(num_burnin_steps=4)
    out = compute_llc(tree)
    np.testing.assert_allclose(
        out["llc_per_chain"].values, _reference_per_chain(tree, 4), rtol=1e-5
    )


def test_llc_mean_and_std_are_taken_over_chains_with_ddof_0(make_tree):
    out = compute_llc(make_tree())
    per_chain = out["llc_per_chain"].values
    assert float(out["llc_mean"]) == pytest.approx(per_chain.mean(), rel=1e-6)
    assert float(out["llc_std"]) == pytest.approx(per_chain.std(ddof=0), rel=1e-5)


def test_include_burnin_reproduces_devinterp_2x_exactly(make_tree):
    tree = make_tree(num_burnin_steps=4)
    ds = tree.to_dataset()
    # devinterp 2.x compute_llc: every step, init_loss averaged over chains, xarray reductions.
    n_beta = float(ds.metadata["config"]["sampler"]["n_beta"])
    init_loss_mean = float(ds.init_loss.values.mean())
    loss_trace = ds.sampling_loss_micro.mean(dim=["batch_sampling", "token_pos"])
    per_chain = n_beta * (loss_trace.mean(dim="step") - init_loss_mean)

    out = compute_llc(tree, include_burnin=True)
    np.testing.assert_array_equal(out["llc_per_chain"].values, per_chain.values)
    assert float(out["llc_mean"]) == float(per_chain.mean())
    assert float(out["llc_std"]) == float(per_chain.std())
    assert float(out["init_loss"]) == init_loss_mean
    np.testing.assert_array_equal(out["loss_trace"].values, loss_trace.values)
    assert float(out["llc_scalar"]) == pytest.approx(
        n_beta * (float(ds.sampling_loss_micro.mean()) - init_loss_mean), rel=1e-5
    )


def test_burnin_steps_change_the_estimate_only_when_excluded(make_tree):
    tree = make_tree(num_burnin_steps=4)
    with_burnin = compute_llc(tree, include_burnin=True)["llc_per_chain"].values
    np.testing.assert_allclose(with_burnin, _reference_per_chain(tree, 0), rtol=1e-5)
    assert not np.allclose(with_burnin, compute_llc(tree)["llc_per_chain"].values)


def test_loss_trace_has_chain_and_step_dims_and_marks_burnin(make_tree):
    out = compute_llc(make_tree(num_chains=2, num_draws=10, num_burnin_steps=3))
    assert out["loss_trace"].dims == ("chain", "step")
    assert out["loss_trace"].shape == (2, 13)
    assert out["burnin"].values.tolist() == [True] * 3 + [False] * 10


def test_chain_with_unwritten_rows_averages_over_its_written_rows(make_tree):
    tree = make_tree(num_chains=3, num_draws=20, num_burnin_steps=4)
    ds = tree.to_dataset()
    ds["sampling_loss_micro"][1, 15:] = np.nan  # chain 1 stopped after step 14
    out = compute_llc(xr.DataTree(ds))

    micro = ds["sampling_loss_micro"].values.astype(np.float64)
    init = ds["init_loss"].values.mean()
    expected = 7.5 * (micro[1, 4:15].mean() - init)
    assert float(out["llc_per_chain"][1]) == pytest.approx(expected, rel=1e-5)
    assert out["n_steps_used"].values.tolist() == [20, 11, 20]


def test_non_finite_rows_are_skipped(make_tree):
    tree = make_tree(num_burnin_steps=0)
    ds = tree.to_dataset()
    ds["sampling_loss_micro"][0, 3] = np.inf
    out = compute_llc(xr.DataTree(ds))
    micro = ds["sampling_loss_micro"].values.astype(np.float64)
    rows = np.delete(micro[0], 3, axis=0)
    expected = 7.5 * (rows.mean() - ds["init_loss"].values.mean())
    assert float(out["llc_per_chain"][0]) == pytest.approx(expected, rel=1e-5)


def test_chain_without_post_burnin_rows_is_nan_and_left_out_of_the_mean(make_tree):
    tree = make_tree(num_chains=3, num_burnin_steps=4)
    ds = tree.to_dataset()
    ds["sampling_loss_micro"][2, 4:] = np.nan
    out = compute_llc(xr.DataTree(ds))
    per_chain = out["llc_per_chain"].values
    assert np.isnan(per_chain[2])
    assert float(out["llc_mean"]) == pytest.approx(per_chain[:2].mean(), rel=1e-6)


def test_running_llc_is_nan_in_burnin_and_ends_at_llc_per_chain(make_tree):
    out = compute_llc(make_tree(num_burnin_steps=4))
    running = out["llc_running"].values
    assert np.isnan(running[:, :4]).all()
    np.testing.assert_allclose(running[:, -1], out["llc_per_chain"].values, rtol=1e-5)


def test_compute_llc_reads_a_tree_opened_from_zarr(make_tree, tmp_path):
    tree = make_tree()
    path = tmp_path / "run.zarr"
    tree.to_zarr(path, consolidated=False)
    opened = xr.open_datatree(path, engine="zarr", consolidated=False)
    np.testing.assert_array_equal(
        compute_llc(opened)["llc_per_chain"].values, compute_llc(tree)["llc_per_chain"].values
    )


def test_compute_llc_without_sampling_loss_micro_names_the_missing_array(make_tree):
    ds = make_tree().to_dataset().drop_vars("sampling_loss_micro")
    with pytest.raises(KeyError, match="sampling_loss_micro"):
        compute_llc(xr.DataTree(ds))


def test_compute_llc_without_n_beta_says_where_it_is_read(make_tree):
    ds = make_tree().to_dataset().drop_vars("n_beta")
    ds.attrs = {}
    with pytest.raises(KeyError, match="n_beta"):
        compute_llc(xr.DataTree(ds))


def test_n_beta_falls_back_to_the_scalar_array(make_tree):
    tree = make_tree()
    ds = tree.to_dataset()
    ds.attrs["metadata"]["config"]["sampler"].pop("n_beta")
    assert compute_llc(xr.DataTree(ds)).attrs["n_beta"] == 7.5


def test_default_nbeta_is_n_over_log_n():
    assert default_nbeta(1000) == pytest.approx(1000 / math.log(1000))


def test_default_nbeta_rejects_n_of_one():
    with pytest.raises(ValueError, match="n > 1"):
        default_nbeta(1)


# --- the marker is the truth: rows beyond its counts are not part of the run -----------------


def with_marker(tree, steps_written, draws_written):
    ds = tree.to_dataset()
    ds.attrs["progress"] = {
        "status": "running",
        "chains": {"steps_written": steps_written, "draws_written": draws_written},
    }
    return ds


def test_rows_beyond_the_progress_marker_are_ignored(make_tree):
    ds = with_marker(make_tree(num_chains=2, num_burnin_steps=4), [10, 24], [6, 20])
    out = compute_llc(ds)
    micro = ds["sampling_loss_micro"].values.astype(np.float64)
    init = ds["init_loss"].values.mean()
    expected = 7.5 * (micro[0, 4:10].mean() - init)
    assert float(out["llc_per_chain"][0]) == pytest.approx(expected, rel=1e-5)
    assert out["n_steps_used"].values.tolist() == [6, 20]
    assert np.isnan(out["loss_trace"].values[0, 10:]).all()


def test_mask_unwritten_sets_float_rows_beyond_the_marker_to_nan(make_tree):
    from devinterp_ui.store import mask_unwritten

    ds = with_marker(make_tree(num_chains=2, num_burnin_steps=4), [10, 24], [6, 20])
    masked = mask_unwritten(ds)
    assert masked["sampling_loss_micro"].dims == ds["sampling_loss_micro"].dims
    assert np.isfinite(masked["sampling_loss_micro"].values[0, :10]).all()
    assert np.isnan(masked["sampling_loss_micro"].values[0, 10:]).all()
    assert np.isfinite(masked["sampling_loss_micro"].values[1]).all()
    assert np.isnan(masked["loss_a"].values[0, 6:]).all()
    assert np.isfinite(masked["loss_a"].values[0, :6]).all()
    np.testing.assert_array_equal(masked["init_loss"].values, ds["init_loss"].values)
    assert mask_unwritten(make_tree()).identical(make_tree().to_dataset())  # no marker


# --- one estimator for the live and the final figures ------------------------------------------


def test_llc_from_loss_trace_is_what_compute_llc_computes(make_tree):
    from devinterp_ui.analysis.llc import llc_from_loss_trace

    tree = make_tree(num_burnin_steps=4)
    ds = tree.to_dataset()
    trace = ds["sampling_loss_micro"].mean(["batch_sampling", "token_pos"])
    direct = llc_from_loss_trace(trace, ds["init_loss"], n_beta=7.5, num_burnin_steps=4)
    xr.testing.assert_identical(direct, compute_llc(tree))


def test_compute_llc_takes_a_loss_trace_of_accumulated_rows(make_tree):
    ds = make_tree(num_burnin_steps=4).to_dataset()
    rows = xr.Dataset(
        {
            "loss_trace": ds["sampling_loss_micro"].mean(["batch_sampling", "token_pos"]),
            "init_loss": ds["init_loss"],
        },
        attrs=ds.attrs,
    )
    xr.testing.assert_identical(compute_llc(rows), compute_llc(ds))


def test_init_loss_is_one_mean_over_chains_even_when_chains_saw_different_batches(make_tree):
    ds = make_tree(num_chains=3, num_burnin_steps=0).to_dataset()
    ds["init_loss"][:] = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    out = compute_llc(ds)
    assert float(out["init_loss"]) == pytest.approx(2.0)
    chain_means = ds["sampling_loss_micro"].values.astype(np.float64).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(out["llc_per_chain"].values, 7.5 * (chain_means - 2.0), atol=1e-4)
