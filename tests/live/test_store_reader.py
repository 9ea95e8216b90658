"""StoreReader: follows a store as it grows and returns only whole rows it has not returned."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from live_fixtures import ToyLM, age_heartbeat, observables_of, set_marker

from devinterp_ui import sample
from devinterp_ui.live import StoreReader
from devinterp_ui.live.job import SamplingJob
from devinterp_ui.store import progress as progress_module

SETTINGS = {
    "lr": 1e-3,
    "n_beta": 10.0,
    "num_chains": 3,
    "num_draws": 5,
    "num_burnin_steps": 2,
    "num_steps_bw_draws": 2,
    "batch_size": 8,
    "num_init_loss_batches": 2,
    "batches_per_draw": 2,
    "save_metrics": True,
    "progress_bar": False,
}
TOTAL_STEPS = 2 + 5 * 2


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory):
    """A completed store: 3 chains x 12 steps (2 burn-in, draws every 2nd step), metrics on."""
    torch.manual_seed(0)
    model = ToyLM()
    tokens = torch.randint(0, 12, (96, 6), generator=torch.Generator().manual_seed(1))
    path = tmp_path_factory.mktemp("finished") / "run.zarr"
    sample(model, tokens, observables_of(tokens), output_path=path, **SETTINGS)
    return path


@pytest.fixture
def store(finished_store, tmp_path):
    """A private copy of the finished store, free to edit."""
    path = tmp_path / "run.zarr"
    shutil.copytree(finished_store, path)
    return path


def stored(path) -> xr.Dataset:
    return xr.open_datatree(str(path), engine="zarr").dataset.load()


def grid(table: xr.Dataset, index: str) -> xr.Dataset:
    """(chain, index) grid of a long-form NewRows table."""
    return table.set_index(row=["chain", index]).unstack("row")


def test_reader_of_a_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sample store"):
        StoreReader(tmp_path / "nothing.zarr")


def test_reader_reports_config_and_status_of_a_completed_store(finished_store):
    reader = StoreReader(finished_store)
    status = reader.status()
    assert reader.config["n_beta"] == 10.0 and reader.config["num_chains"] == 3
    assert reader.observables == ["val"]
    assert status.status == "completed" and status.completed
    assert status.steps_written == (TOTAL_STEPS,) * 3 and status.draws_written == (5,) * 3
    assert status.finished


def test_first_read_returns_every_written_row(finished_store):
    rows = StoreReader(finished_store).read_new()
    assert rows.steps.sizes["row"] == 3 * TOTAL_STEPS
    assert rows.draws.sizes["row"] == 3 * 5
    assert list(rows.steps["chain"].values[:TOTAL_STEPS]) == [0] * TOTAL_STEPS
    assert list(rows.steps["step"].values[:TOTAL_STEPS]) == list(range(TOTAL_STEPS))


def test_second_read_returns_nothing_new(finished_store):
    reader = StoreReader(finished_store)
    reader.read_new()
    assert reader.read_new().empty


def test_step_loss_is_the_mean_of_sampling_loss_micro_over_batch_and_positions(finished_store):
    rows = StoreReader(finished_store).read_new()
    expected = stored(finished_store)["sampling_loss_micro"].astype("float64")
    expected = expected.mean(["batch_sampling", "token_pos"])
    np.testing.assert_allclose(grid(rows.steps, "step")["loss"].values, expected.values)


def test_draw_rows_hold_observable_means_and_their_step(finished_store):
    rows = StoreReader(finished_store).read_new()
    expected = stored(finished_store)["loss_val"].astype("float64").mean(["batch_val", "token_pos"])
    np.testing.assert_allclose(grid(rows.draws, "draw")["loss_val"].values, expected.values)
    assert list(rows.draws["step"].values[:5]) == [2, 4, 6, 8, 10]


def test_metrics_are_returned_per_step(finished_store):
    rows = StoreReader(finished_store).read_new()
    expected = stored(finished_store)["metrics_noise"]
    np.testing.assert_array_equal(grid(rows.steps, "step")["metrics_noise"].values, expected.values)


def test_running_llc_ends_at_the_whole_run_estimate(finished_store):
    rows = StoreReader(finished_store).read_new()
    data = stored(finished_store)
    per_step = data["sampling_loss_micro"].astype("float64").mean(["batch_sampling", "token_pos"])
    init = float(data["init_loss"].values.mean())  # one L_n(w0) for all chains, as compute_llc
    expected = 10.0 * (per_step.isel(step=slice(2, None)).mean("step") - init)
    llc = grid(rows.steps, "step")["llc"]
    np.testing.assert_allclose(llc.isel(step=-1).values, expected.values)
    assert np.isnan(llc.isel(step=slice(0, 2)).values).all()


def test_rows_beyond_the_marker_are_not_returned(store):
    set_marker(store, steps_written=[4, 7, 0], draws_written=[1, 2, 0], status="running")
    rows = StoreReader(store).read_new()
    assert rows.steps.sizes["row"] == 4 + 7
    assert sorted(set(zip(rows.steps["chain"].values, rows.steps["step"].values, strict=True))) == [
        (0, s) for s in range(4)
    ] + [(1, s) for s in range(7)]
    assert rows.draws.sizes["row"] == 1 + 2


def test_reading_in_pieces_gives_the_same_rows_and_running_llc(store):
    whole = StoreReader(store).read_new()
    reader = StoreReader(store)
    pieces = []
    for done in ([1, 3, 0], [5, 5, 2], [TOTAL_STEPS] * 3):
        draws = [max(0, (n - 2 + 1) // 2) for n in done]
        set_marker(store, steps_written=done, draws_written=draws, status="running")
        pieces.append(reader.read_new().steps)
    joined = xr.concat(pieces, "row")
    order = np.lexsort((joined["step"].values, joined["chain"].values))
    joined = joined.isel(row=order)
    np.testing.assert_array_equal(joined["step"].values, whole.steps["step"].values)
    np.testing.assert_allclose(joined["llc"].values, whole.steps["llc"].values, equal_nan=True)


def test_a_poll_reads_only_the_new_row_range(store):
    set_marker(store, steps_written=[4] * 3, draws_written=[1] * 3, status="running")
    reader = StoreReader(store)
    reader.read_new()
    requested = []

    class Spy:
        def __init__(self, array):
            self.array = array

        @property
        def async_array(self):
            return self

        async def get_orthogonal_selection(self, selection):
            requested.append((selection[1].start, selection[1].stop))
            return await self.array.async_array.get_orthogonal_selection(selection)

    reader._arrays = {name: Spy(a) for name, a in reader._arrays.items()}
    set_marker(store, steps_written=[6] * 3, draws_written=[2] * 3)
    reader.read_new()
    assert requested and set(requested) <= {(4, 6), (1, 2)}


def test_reads_during_a_live_run_add_up_to_the_whole_store(tmp_path):
    torch.manual_seed(0)
    tokens = torch.randint(0, 12, (96, 6), generator=torch.Generator().manual_seed(1))
    path = tmp_path / "run.zarr"
    settings = {**SETTINGS, "num_draws": 30, "flush_interval": 0.02}
    job = SamplingJob(ToyLM(), tokens, observables_of(tokens), output_path=path, **settings)
    job.start()
    reader = StoreReader(path)
    pieces = []
    while True:
        finished = job.wait(0.005)
        pieces.append(reader.read_new())
        if finished and pieces[-1].status.finished:
            pieces.append(reader.read_new())
            break
    assert job.state == "completed"
    assert sum(not p.empty for p in pieces) > 2  # it really did read while rows were appearing
    steps = xr.concat([p.steps for p in pieces], "row")
    pairs = list(zip(steps["chain"].values.tolist(), steps["step"].values.tolist(), strict=True))
    assert len(pairs) == len(set(pairs)) == 3 * (2 + 30 * 2)
    assert np.isfinite(steps["loss"].values).all()
    draws = xr.concat([p.draws for p in pieces], "row")
    assert draws.sizes["row"] == 3 * 30 and np.isfinite(draws["loss_val"].values).all()
    whole = StoreReader(path).read_new()
    np.testing.assert_allclose(grid(steps, "step")["llc"], grid(whole.steps, "step")["llc"])


def test_an_unparsable_marker_keeps_the_previous_status(store):
    reader = StoreReader(store)
    before = reader.status()
    meta = store / "zarr.json"
    good = meta.read_bytes()
    meta.write_bytes(good[: len(good) // 2])
    assert reader.status() == before
    assert reader.read_new().steps.sizes["row"] == 0
    meta.write_bytes(good)
    assert reader.read_new().steps.sizes["row"] == 3 * TOTAL_STEPS


def test_a_marker_caught_mid_write_is_read_again(store, monkeypatch):
    real_loads, calls = progress_module.json.loads, [0]

    def loads_half_written_twice(text):
        calls[0] += 1
        if calls[0] <= 2:
            raise ValueError("Unterminated string")
        return real_loads(text)

    monkeypatch.setattr(progress_module.json, "loads", loads_half_written_twice)
    assert StoreReader(store).status().status == "completed"
    assert calls[0] == 3


def test_a_dead_writer_on_this_host_is_reported_killed(store):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    set_marker(store, status="running", pid=gone.pid, host=socket.gethostname())
    status = StoreReader(store).status()
    assert status.status == "killed" and status.recorded_status == "running"
    assert status.writer_alive is False and status.finished


def test_a_silent_writer_on_another_host_is_reported_stale(store):
    set_marker(store, status="running", host="elsewhere", updated_at=time.time() - 1000)
    age_heartbeat(store, 1000)
    status = StoreReader(store, heartbeat_timeout=10).status()
    assert status.status == "stale" and status.writer_alive is None
    assert "no heartbeat from the writer" in status.note and not status.finished


def test_a_store_without_heartbeat_is_judged_by_marker_updates(store):
    (store / ".heartbeat").unlink()
    set_marker(store, status="running", host="elsewhere", updated_at=time.time() - 1000)
    assert StoreReader(store, stale_after=300).status().status == "stale"
    set_marker(store, updated_at=time.time())
    assert StoreReader(store, stale_after=300).status().status == "running"


def test_a_live_writer_on_another_host_is_reported_running(store):
    set_marker(store, status="running", host="elsewhere", updated_at=time.time())
    age_heartbeat(store, 1)
    assert StoreReader(store).status().status == "running"


def test_a_live_writer_on_this_host_is_reported_running(store):
    set_marker(store, status="running", pid=os.getpid(), host=socket.gethostname())
    age_heartbeat(store, 1)
    status = StoreReader(store).status()
    assert status.status == "running" and status.writer_alive is True


def test_a_silent_writer_thread_in_a_live_process_is_reported_stale(store):
    set_marker(store, status="running", pid=os.getpid(), host=socket.gethostname())
    age_heartbeat(store, 30)
    status = StoreReader(store, heartbeat_timeout=10).status()
    assert status.status == "stale" and status.writer_alive is True
    assert status.heartbeat_age == pytest.approx(30, abs=5)


def test_a_store_without_marker_yet_is_starting(tmp_path):
    zarr.open_group(str(tmp_path / "run.zarr"), mode="w", zarr_format=3)
    rows = StoreReader(tmp_path / "run.zarr").read_new()
    assert rows.status.status == "starting" and rows.empty


def test_a_completed_store_without_marker_is_read_whole(store):
    group = zarr.open_group(str(store), mode="r+")
    del group.attrs["progress"]
    rows = StoreReader(store).read_new()
    assert rows.status.status == "completed"
    assert rows.steps.sizes["row"] == 3 * TOTAL_STEPS and rows.draws.sizes["row"] == 3 * 5


def test_only_the_chosen_metrics_are_returned(finished_store):
    steps = StoreReader(finished_store, metrics=["noise", "distance"]).read_new().steps
    assert sorted(n for n in steps.data_vars if n.startswith("metrics_")) == [
        "metrics_distance",
        "metrics_noise",
    ]
    assert "metrics_noise" not in StoreReader(finished_store, metrics=False).read_new().steps


def test_an_unknown_metric_raises(finished_store):
    with pytest.raises(ValueError, match="unknown metrics \\['nosie'\\]"):
        StoreReader(finished_store, metrics=["nosie"])


@pytest.fixture(scope="module")
def unmatched_store(tmp_path_factory):
    """Chains that draw different batches (match_sampling_input_ids_across_chains=False), so
    their initial losses differ: where a per-chain init loss would disagree with compute_llc."""
    torch.manual_seed(0)
    tokens = torch.randint(0, 12, (96, 6), generator=torch.Generator().manual_seed(1))
    path = tmp_path_factory.mktemp("unmatched") / "run.zarr"
    settings = {**SETTINGS, "match_sampling_input_ids_across_chains": False}
    sample(ToyLM(), tokens, {}, output_path=path, **settings)
    return path


def test_live_llc_ends_at_compute_llc_when_chains_draw_different_batches(unmatched_store):
    from devinterp_ui import compute_llc

    init = stored(unmatched_store)["init_loss"].values.mean(axis=1)
    assert np.ptp(init) > 1e-3  # the chains' own initial losses really differ
    reader = StoreReader(unmatched_store)
    live = grid(reader.read_new().steps, "step")["llc"].isel(step=-1).values
    final = compute_llc(xr.open_datatree(str(unmatched_store), engine="zarr"))
    # Equal up to float32 rounding: compute_llc reduces the stored float32 losses in float32,
    # as devinterp 2.0.1 does; a per-chain init loss would be off by n_beta * 1e-3 or more.
    np.testing.assert_allclose(live, final["llc_per_chain"].values, rtol=1e-5, atol=1e-5)
    assert reader.init_loss == pytest.approx(float(final["init_loss"]), rel=1e-7)


def test_compute_llc_of_the_accumulated_rows_is_the_live_llc(unmatched_store):
    from devinterp_ui import compute_llc

    reader = StoreReader(unmatched_store)
    assert reader.accumulated().sizes.get("step", 0) == 0 and reader.init_loss is None
    set_marker_copy = unmatched_store.parent / "copy.zarr"
    shutil.copytree(unmatched_store, set_marker_copy)
    reader = StoreReader(set_marker_copy)
    set_marker(set_marker_copy, steps_written=[5, 7, 3], draws_written=[2, 3, 1], status="running")
    live = grid(reader.read_new().steps, "step")["llc"]
    partial = compute_llc(reader.accumulated())
    assert partial["loss_trace"].shape == (3, 7)
    read = np.isfinite(partial["loss_trace"].values)  # the rows each chain has so far
    np.testing.assert_allclose(
        partial["llc_running"].values[read], live.values[read], rtol=1e-12, equal_nan=True
    )
    assert partial["n_steps_used"].values.tolist() == [3, 5, 1]  # 2 burn-in steps left out
    shutil.rmtree(set_marker_copy)


def test_partial_files_of_a_live_writer_are_left_alone(store):
    set_marker(store, status="running", pid=os.getpid(), host=socket.gethostname())
    del zarr.open_group(str(store), mode="r+").attrs["completed"]
    partial = store / "sampling_loss_micro" / "c" / "0" / "0.0123abcd.partial"
    partial.write_bytes(b"being written")
    StoreReader(store).read_new()
    assert partial.exists()


def test_partial_files_in_a_completed_store_are_removed_on_open(store):
    partial = store / "zarr.0123abcd.partial"
    partial.write_bytes(b"left over")
    StoreReader(store).status()
    assert not partial.exists()
