"""The final LLC recorded in a store's root attrs when its run ends: the numbers `compute_llc`
gives for the store, so a run list can show them without reading the arrays."""

import json
import threading

import pytest
import xarray as xr

from devinterp_ui import sample
from devinterp_ui.analysis import compute_llc
from devinterp_ui.analysis.llc_summary import (
    LLC_SUMMARY,
    recorded_llc_summary,
    store_llc_summary,
)

SETTINGS = dict(
    lr=1e-3, n_beta=20.0, num_chains=2, num_draws=6, batch_size=8, num_burnin_steps=2,
    num_init_loss_batches=1, progress_bar=False,
)  # fmt: skip


def root_attrs(path):
    return json.loads((path / "zarr.json").read_text())["attributes"]


def test_a_completed_run_records_compute_llcs_numbers(tiny_lm, token_data, tmp_path):
    path = tmp_path / "run.zarr"
    sample(tiny_lm, token_data, {}, output_path=path, **SETTINGS)
    attrs = root_attrs(path)
    recorded = recorded_llc_summary(attrs)
    llc = compute_llc(xr.open_datatree(str(path), engine="zarr"))
    assert recorded["llc_mean"] == pytest.approx(float(llc["llc_mean"]), rel=1e-12)
    assert recorded["llc_std"] == pytest.approx(float(llc["llc_std"]), rel=1e-12)
    assert recorded["llc_per_chain"] == pytest.approx(list(llc["llc_per_chain"].values))
    assert recorded["num_burnin_steps"] == 2 and recorded["n_steps_used"] == [6, 6]
    assert attrs["completed"] == 1


def test_a_stopped_run_records_the_llc_of_its_counted_rows(tiny_lm, token_data, tmp_path):
    stop = threading.Event()

    def on_step(summary):
        if summary.step == 4 and summary.chain == 1:
            stop.set()

    path = tmp_path / "run.zarr"
    sample(tiny_lm, token_data, {}, output_path=path, stop_event=stop, progress_callback=on_step,
           **SETTINGS)  # fmt: skip
    attrs = root_attrs(path)
    assert attrs["progress"]["status"] == "stopped"
    recorded = recorded_llc_summary(attrs)
    assert recorded == store_llc_summary(path)
    assert recorded["n_steps_used"][0] < 6


def test_a_store_without_the_record_gives_the_same_numbers_from_its_arrays(
    tiny_lm, token_data, tmp_path
):
    path = tmp_path / "run.zarr"
    sample(tiny_lm, token_data, {}, output_path=path, **SETTINGS)
    recorded = recorded_llc_summary(root_attrs(path))
    assert store_llc_summary(path) == recorded


def test_a_malformed_record_is_not_trusted():
    assert recorded_llc_summary({}) is None
    assert recorded_llc_summary({LLC_SUMMARY: "1.5"}) is None
    assert recorded_llc_summary({LLC_SUMMARY: {"llc_mean": "x", "llc_std": 0.1}}) is None
    assert recorded_llc_summary({LLC_SUMMARY: {"llc_mean": None, "llc_std": None}}) == {
        "llc_mean": None,
        "llc_std": None,
    }
