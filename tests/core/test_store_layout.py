"""The store as STORE.md specifies it, opened with xarray like any user would."""

import json

import numpy as np
import pytest
import xarray as xr
import zarr
from tiny_models import WeightEcho, echo_loss

from devinterp_ui import sample
from devinterp_ui.sgld import METRIC_NAMES

C, D, B, T = 2, 5, 4, 6


@pytest.fixture
def token_tree(tiny_lm, token_data, tmp_path):
    path = tmp_path / "run.zarr"
    sample(
        tiny_lm,
        token_data,
        {"train": token_data, "9 code-x": (token_data[:40], 2)},
        lr=1e-3,
        n_beta=20.0,
        num_chains=C,
        num_draws=D,
        batch_size=B,
        num_burnin_steps=2,
        gradient_accumulation_steps=2,
        save_metrics=True,
        output_path=path,
        progress_bar=False,
    )
    return path, xr.open_datatree(path, engine="zarr")


def test_token_arrays_have_documented_dims_and_dtypes(token_tree):
    _, tree = token_tree
    steps = 2 + D
    expected = {
        "init_loss": (("chain", "token_pos"), (C, T - 1), "float32"),
        "sampling_loss": (("chain", "draw", "batch", "token_pos"), (C, D, B, T - 1), "float32"),
        "sampling_loss_micro": (
            ("chain", "step", "batch_sampling", "token_pos"),
            (C, steps, 2 * B, T - 1),
            "float32",
        ),
        "sampling_input_ids_micro": (
            ("chain", "step", "batch_sampling", "token"),
            (C, steps, 2 * B, T),
            "int64",
        ),
        "loss_train": (
            ("chain", "draw", "batch_train", "token_pos"),
            (C, D, 3 * B, T - 1),
            "float32",
        ),
        "input_ids_train": (("batch_train", "token"), (3 * B, T), "int64"),
        "loss__9_code_x": (
            ("chain", "draw", "batch__9_code_x", "token_pos"),
            (C, D, 2 * B, T - 1),
            "float32",
        ),
        "input_ids__9_code_x": (("batch__9_code_x", "token"), (2 * B, T), "int64"),
        "n_beta": ((), (), "float64"),
        **{f"metrics_{m}": (("chain", "step"), (C, steps), "float32") for m in METRIC_NAMES},
    }
    assert set(tree.data_vars) == set(expected)
    for name, (dims, shape, dtype) in expected.items():
        assert tree[name].dims == dims, name
        assert tree[name].shape == shape, name
        assert tree[name].dtype == np.dtype(dtype), name
    assert float(tree["n_beta"]) == 20.0


def test_dimension_names_are_stored_in_zarr_metadata(token_tree):
    path, _ = token_tree
    group = zarr.open_group(str(path), mode="r")
    assert group["sampling_loss"].metadata.dimension_names == (
        "chain",
        "draw",
        "batch",
        "token_pos",
    )
    assert np.isnan(group["sampling_loss"].metadata.fill_value)


def test_completed_store_has_no_missing_rows(token_tree):
    _, tree = token_tree
    for name in tree.data_vars:
        values = tree[name].values
        if values.dtype.kind == "f":
            assert np.isfinite(values).all(), name


def test_root_attrs_hold_metadata_progress_and_provenance(token_tree):
    _, tree = token_tree
    attrs = tree.attrs
    assert attrs["completed"] == 1
    config = attrs["metadata"]["config"]
    assert config["sampler"]["n_beta"] == 20.0
    assert config["sampler"]["gradient_accumulation_steps"] == 2
    assert config["shared_observable_dims"] == ["token", "token_pos"]
    assert config["tokenizer_context_length"] == T
    assert config["observables"][1] == {
        "type": "ObserveDifferentDataset",
        "obs_id": "_9_code_x",
        "name": "9 code-x",
        "batches_per_draw": 2,
    }
    progress = attrs["progress"]
    assert progress["status"] == "completed"
    assert progress["chains"]["steps_written"] == [2 + D] * C
    assert progress["chains"]["draws_written"] == [D] * C
    assert attrs["metrics_numel"] == sum(p.numel() for p in tiny_lm_params())
    assert attrs["provenance"]["model_num_params"] == attrs["metrics_numel"]
    assert attrs["provenance"]["dataset_size"] == 96
    assert attrs["wall_time_s"] > 0
    json.dumps(attrs)  # every attribute is plain JSON


def tiny_lm_params():
    from tiny_models import TinyLM

    return list(TinyLM().parameters())


def test_observable_rows_are_fixed_and_seeded(tiny_lm, token_data, token_tree):
    _, tree = token_tree
    again = sample(
        tiny_lm,
        token_data,
        {"train": token_data},
        lr=1e-3,
        n_beta=20.0,
        num_chains=1,
        num_draws=1,
        batch_size=B,
        progress_bar=False,
        num_init_loss_batches=1,
    )
    np.testing.assert_array_equal(again["input_ids_train"].values, tree["input_ids_train"].values)
    other_seed = sample(
        tiny_lm,
        token_data,
        {"train": token_data},
        lr=1e-3,
        n_beta=20.0,
        num_chains=1,
        num_draws=1,
        batch_size=B,
        obs_seed=7,
        progress_bar=False,
        num_init_loss_batches=1,
    )
    assert not np.array_equal(other_seed["input_ids_train"].values, tree["input_ids_train"].values)


def test_supervised_store_records_row_indices(echo_data, tmp_path):
    tree = sample(
        WeightEcho(),
        echo_data,
        {"probe": echo_data},
        lr=1e-3,
        n_beta=5.0,
        num_chains=2,
        num_draws=3,
        batch_size=4,
        loss_fn=echo_loss,
        progress_bar=False,
    )
    assert tree["sampling_indices_micro"].dims == ("chain", "step", "batch_sampling")
    assert tree["indices_probe"].dims == ("batch_probe",)
    assert tree["indices_probe"].dtype == np.int64
    assert "sampling_input_ids_micro" not in tree.data_vars
    assert tree.attrs["metadata"]["config"]["tokenizer_context_length"] == 1


def test_per_sample_loss_gives_one_position(echo_data):
    tree = sample(
        WeightEcho(),
        echo_data,
        {},
        lr=1e-3,
        n_beta=5.0,
        num_chains=1,
        num_draws=2,
        batch_size=4,
        loss_fn=lambda m, b: m.w.sum() * b[0][:, 0],
        progress_bar=False,
    )
    assert tree.sizes["token_pos"] == 1


def test_per_position_loss_gives_p_positions(echo_data):
    tree = sample(
        WeightEcho(d=7),
        echo_data,
        {},
        lr=1e-3,
        n_beta=5.0,
        num_chains=1,
        num_draws=2,
        batch_size=4,
        loss_fn=echo_loss,
        progress_bar=False,
    )
    assert tree.sizes["token_pos"] == 7


def test_unwritten_rows_read_as_nan(tiny_lm, token_data, tmp_path):
    import threading

    stop = threading.Event()

    def stop_after_three(summary):
        if summary.step == 2:
            stop.set()

    tree = sample(
        tiny_lm,
        token_data,
        {},
        lr=1e-3,
        n_beta=20.0,
        num_chains=2,
        num_draws=10,
        batch_size=4,
        progress_bar=False,
        stop_event=stop,
        progress_callback=stop_after_three,
        output_path=tmp_path / "s.zarr",
    )
    micro = tree["sampling_loss_micro"].values
    assert np.isfinite(micro[:, :3]).all()
    assert np.isnan(micro[:, 3:]).all()
    assert (tree["sampling_input_ids_micro"].values[:, 3:] == 0).all()
    # sample() returns once every write has landed: no row beyond the marker's counts.
    written = tree.attrs["progress"]["chains"]["steps_written"]
    assert [int(np.isfinite(micro[c]).all(axis=(1, 2)).sum()) for c in range(2)] == written


def test_temporary_store_is_loaded_and_removed(tiny_lm, token_data, tmp_path, monkeypatch):
    import tempfile

    # A private temp dir, so other processes' temporary stores cannot interfere.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tree = sample(
        tiny_lm,
        token_data,
        {},
        lr=1e-3,
        n_beta=20.0,
        num_chains=1,
        num_draws=2,
        batch_size=4,
        progress_bar=False,
    )
    assert list(tmp_path.iterdir()) == []
    assert np.isfinite(tree["sampling_loss"].values).all()
    assert tree["init_loss"].shape == (1, 5)
