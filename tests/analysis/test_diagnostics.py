"""diagnose(): arviz-stats figures of the loss trace, compute_llc's LLC, trees and reader rows."""

import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr
from arviz_stats.base import array_stats
from tiny_models import TinyLM

from devinterp_ui import sample
from devinterp_ui.analysis import compute_llc, diagnose
from devinterp_ui.analysis.diagnostics import MIN_DRAWS, TAIL_PROB
from devinterp_ui.live.reader import StoreReader


def _trace(tree, first):
    """The (chain, draw) trace as compute_llc reduces it (stored float32 means), in float64."""
    micro = tree.to_dataset()["sampling_loss_micro"]
    return micro.mean(dim=["batch_sampling", "token_pos"]).values.astype(np.float64)[:, first:]


def test_rhat_ess_and_mcse_equal_arviz_stats_on_the_same_array(make_tree):
    tree = make_tree(num_chains=4, num_draws=60, num_burnin_steps=5)
    d = diagnose(tree)
    x = _trace(tree, 5)
    beta = 7.5
    assert float(d["rhat"]) == pytest.approx(
        float(array_stats.rhat(x, chain_axis=0, draw_axis=1, method="rank")), rel=1e-12
    )
    assert float(d["ess_bulk"]) == pytest.approx(
        float(array_stats.ess(x, chain_axis=0, draw_axis=1, method="bulk")), rel=1e-12
    )
    assert float(d["ess_tail"]) == pytest.approx(
        float(array_stats.ess(x, chain_axis=0, draw_axis=1, method="tail", prob=TAIL_PROB)),
        rel=1e-12,
    )
    assert float(d["mcse"]) == pytest.approx(
        beta * float(array_stats.mcse(x, chain_axis=0, draw_axis=1, method="mean")), rel=1e-12
    )
    for c in range(4):
        one = x[c : c + 1]
        assert float(d["ess_bulk_chain"][c]) == pytest.approx(
            float(array_stats.ess(one, chain_axis=0, draw_axis=1, method="bulk")), rel=1e-12
        )
        assert float(d["ess_tail_chain"][c]) == pytest.approx(
            float(array_stats.ess(one, chain_axis=0, draw_axis=1, method="tail", prob=TAIL_PROB)),
            rel=1e-12,
        )


def test_llc_figures_are_compute_llcs(make_tree):
    tree = make_tree(num_burnin_steps=4)
    d, ref = diagnose(tree), compute_llc(tree)
    np.testing.assert_allclose(d["llc"].values, ref["llc_per_chain"].values, rtol=1e-12)
    assert float(d["llc_mean"]) == pytest.approx(float(ref["llc_mean"]), rel=1e-12)
    assert float(d["llc_std"]) == pytest.approx(float(ref["llc_std"]), rel=1e-12)
    assert d.attrs["burnin"] == 4 and d.attrs["num_draws"] == 20


def test_burnin_none_uses_the_recorded_burnin_and_an_int_overrides_it(make_tree):
    tree = make_tree(num_burnin_steps=4, num_draws=20)
    later = diagnose(tree, burnin=10)
    ds = tree.to_dataset()
    micro = ds["sampling_loss_micro"].mean(dim=["batch_sampling", "token_pos"]).values
    expected = 7.5 * (micro[:, 10:].astype(np.float64).mean(axis=1) - ds["init_loss"].values.mean())
    np.testing.assert_allclose(later["llc"].values, expected, rtol=1e-5)
    assert later.attrs["burnin"] == 10 and later.attrs["num_draws"] == 14
    assert diagnose(tree, burnin=0).attrs["num_draws"] == 24


def test_negative_burnin_is_refused(make_tree):
    with pytest.raises(ValueError, match="burnin must be >= 0"):
        diagnose(make_tree(), burnin=-1)


def test_too_few_draws_give_nan_rhat_and_ess_not_an_error(make_tree):
    d = diagnose(make_tree(num_draws=MIN_DRAWS - 1, num_burnin_steps=0))
    assert np.isnan(float(d["rhat"])) and np.isnan(float(d["ess_bulk"]))
    assert np.isfinite(d["llc"].values).all()


def test_a_tree_without_the_loss_arrays_is_refused_with_what_to_pass():
    with pytest.raises(KeyError, match="sampling_loss_micro"):
        diagnose(xr.DataTree(xr.Dataset({"x": ("a", [1.0])})))


def _small_run(tmp_path, **kw):
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (64, 6))
    settings = dict(
        lr=1e-3,
        n_beta=20.0,
        num_chains=3,
        num_draws=40,
        batch_size=8,
        num_burnin_steps=5,
        localization=10.0,
        progress_bar=False,
    )
    settings.update(kw)
    path = tmp_path / "run.zarr"
    tree = sample(TinyLM(), ids, {}, output_path=path, **settings)
    return tree, path


def _rows(reader_rows):
    return xr.concat([r.steps for r in reader_rows], dim="row")


def test_reader_rows_give_the_trees_diagnostics(tmp_path):
    tree, path = _small_run(tmp_path)
    reader = StoreReader(path)
    rows = _rows([reader.read_new()])
    from_rows = diagnose(rows, settings=reader.config)
    from_tree = diagnose(tree)
    for name in ("llc", "ess_bulk_chain", "ess_tail_chain"):
        np.testing.assert_allclose(from_rows[name].values, from_tree[name].values, rtol=1e-5)
    for name in ("llc_mean", "llc_std", "mcse", "rhat", "ess_bulk", "ess_tail"):
        assert float(from_rows[name]) == pytest.approx(float(from_tree[name]), rel=1e-5)
    assert from_rows.attrs["burnin"] == from_tree.attrs["burnin"] == 5


def test_reader_rows_so_far_match_the_tree_cut_at_the_same_step(tmp_path):
    """During a run the rows are a prefix; diagnose them as they are (here: the first 25 steps)."""
    tree, path = _small_run(tmp_path, num_burnin_steps=0)
    rows = StoreReader(path).read_new().steps
    prefix = rows.where(rows["step"] < 25, drop=True)
    prefix.attrs.update(n_beta=20.0, init_loss=float(tree["init_loss"].values.mean()))
    d = diagnose(prefix)
    cut = tree.to_dataset().isel(step=slice(0, 25))
    expected = compute_llc(cut)["llc_per_chain"].values
    np.testing.assert_allclose(d["llc"].values, expected, rtol=1e-4, atol=1e-4)  # float32 store
    assert d.attrs["num_draws"] == 25


def test_accumulated_trace_of_a_finished_run_gives_the_trees_diagnostics(tmp_path):
    tree, path = _small_run(tmp_path)
    reader = StoreReader(path)
    with pytest.raises(ValueError, match="no step row yet"):
        diagnose(reader.accumulated())
    reader.read_new()
    acc, ref = diagnose(reader.accumulated()), diagnose(tree)
    for name in ("llc", "ess_bulk_chain", "ess_tail_chain"):
        np.testing.assert_allclose(acc[name].values, ref[name].values, rtol=1e-5)
    for name in ("llc_mean", "mcse", "rhat", "ess_bulk"):
        assert float(acc[name]) == pytest.approx(float(ref[name]), rel=1e-5)
    assert acc.attrs["burnin"] == 5


def test_reader_rows_need_n_beta(tmp_path):
    _, path = _small_run(tmp_path, num_draws=8)
    rows = StoreReader(path).read_new().steps
    with pytest.raises(ValueError, match="n_beta"):
        diagnose(rows)


def test_a_failed_chain_is_left_out_of_rhat_and_reported(make_tree):
    # Hand-made: chain 1 failed after 3 rows (the marker says so, its later rows are NaN).
    tree = make_tree(num_chains=3, num_draws=30, num_burnin_steps=0)
    ds = tree.to_dataset()
    micro = ds["sampling_loss_micro"].values
    micro[1, 3:] = np.nan
    ds["sampling_loss_micro"] = (ds["sampling_loss_micro"].dims, micro)
    ds.attrs["progress"] = {
        "chains": {
            "steps_written": [30, 3, 30],
            "status": ["completed", "failed", "completed"],
            "error": [None, "loss is NaN at step 3", None],
        }
    }
    d = diagnose(xr.DataTree(ds))
    assert d.attrs["rhat_chains"] == [0, 2]
    assert d.attrs["chain_status"][1] == "failed"
    x = ds["sampling_loss_micro"].mean(dim=["batch_sampling", "token_pos"]).values[[0, 2]]
    assert float(d["rhat"]) == pytest.approx(
        float(array_stats.rhat(x.astype(np.float64), chain_axis=0, draw_axis=1)), rel=1e-12
    )


def test_diagnose_follows_a_run_while_it_is_written(tmp_path):
    """Rows a StoreReader returns from a store still being written are diagnosed as they are."""
    release = threading.Event()

    def hold(summary):
        if summary.step >= 20:
            release.wait(30)  # keep the run open (mid-run) until the test has looked

    torch.manual_seed(0)
    ids = torch.randint(0, 11, (64, 6))
    path = tmp_path / "live.zarr"
    job = threading.Thread(
        target=sample,
        args=(TinyLM(), ids, {}),
        kwargs=dict(
            lr=1e-3,
            n_beta=20.0,
            num_chains=2,
            num_draws=60,
            batch_size=8,
            localization=10.0,
            progress_bar=False,
            output_path=path,
            save_metrics=True,
            flush_interval=0.05,
            progress_callback=hold,
        ),
    )
    job.start()
    try:
        deadline = time.monotonic() + 60
        parts, reader = [], None
        while time.monotonic() < deadline:
            if reader is None and (path / "zarr.json").exists():
                reader = StoreReader(path)
            if reader is not None:
                new = reader.read_new()
                parts.append(new)
                done = sum(len(p.steps["row"]) for p in parts)
                if done >= 2 * 8 and not new.status.finished:
                    break
            time.sleep(0.05)
        rows = _rows([p for p in parts if len(p.steps["row"])])
        d = diagnose(rows, settings=reader.config, chain_status=parts[-1].status.chain_status)
        assert d.attrs["num_draws"] < 60 and d.attrs["chain_status"] == ["running", "running"]
        assert np.isfinite(d["llc"].values).all() and "distance_growth" in d
        # The reader's own accumulated trace gives the same figures.
        acc = diagnose(reader.accumulated())
        assert acc.attrs["chain_status"] == ["running", "running"]
        for name in ("llc", "ess_bulk_chain"):
            np.testing.assert_allclose(acc[name].values, d[name].values, rtol=1e-6)
        assert float(acc["mcse"]) == pytest.approx(float(d["mcse"]), rel=1e-6)
    finally:
        release.set()
        job.join(60)


def _long_rows(chains: int, steps: int, seed: int = 0) -> xr.Dataset:
    """Reader rows of a long autocorrelated trace (an AR(1) loss), with its n_beta and init."""
    rng = np.random.default_rng(seed)
    loss = np.empty((chains, steps))
    loss[:, 0] = rng.standard_normal(chains)
    for t in range(1, steps):
        loss[:, t] = 0.9 * loss[:, t - 1] + rng.standard_normal(chains)
    chain, step = np.meshgrid(np.arange(chains), np.arange(steps), indexing="ij")
    return xr.Dataset(
        {"loss": ("row", 3 + 0.1 * loss.ravel())},
        coords={"chain": ("row", chain.ravel()), "step": ("row", step.ravel())},
        attrs={"n_beta": 5.0, "init_loss": 2.9},
    )


def test_a_long_trace_is_thinned_and_its_figures_are_arviz_stats_on_the_thinned_array():
    """Past max_draws draws per chain, R-hat/ESS/MCSE are arviz-stats on every k-th draw,
    k = ceil(draws / max_draws) (bounded recompute cost); the LLC still uses every draw."""
    rows = _long_rows(3, 1_000)
    d = diagnose(rows, max_draws=300)
    full = diagnose(rows, max_draws=None)
    assert d.attrs["thin"] == 4 and full.attrs["thin"] == 1
    x = d["loss"].values[:, ::4]
    assert x.shape == (3, 250)
    assert float(d["rhat"]) == pytest.approx(
        float(array_stats.rhat(x, chain_axis=0, draw_axis=1, method="rank")), rel=1e-12
    )
    assert float(d["ess_bulk"]) == pytest.approx(
        float(array_stats.ess(x, chain_axis=0, draw_axis=1, method="bulk")), rel=1e-12
    )
    assert float(d["mcse"]) == pytest.approx(
        5.0 * float(array_stats.mcse(x, chain_axis=0, draw_axis=1, method="mean")), rel=1e-12
    )
    assert float(d["ess_tail_chain"][1]) == pytest.approx(
        float(array_stats.ess(x[1:2], chain_axis=0, draw_axis=1, method="tail", prob=TAIL_PROB)),
        rel=1e-12,
    )
    np.testing.assert_allclose(d["llc"].values, full["llc"].values, rtol=1e-12)
    # With an autocorrelation time (~19 draws) beyond the stride, thinning loses little.
    assert float(d["mcse"]) == pytest.approx(float(full["mcse"]), rel=0.25)


def test_the_default_thinning_leaves_short_runs_alone_and_bad_max_draws_is_refused():
    from devinterp_ui.analysis.diagnostics import MAX_DIAG_DRAWS

    rows = _long_rows(2, 200)
    assert diagnose(rows).attrs["thin"] == 1
    assert MAX_DIAG_DRAWS >= 1_000
    with pytest.raises(ValueError, match="max_draws"):
        diagnose(rows, max_draws=2)
