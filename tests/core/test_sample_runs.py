"""Run-level behaviour: determinism, schedules, stop, faults, callbacks, reuse of output_path."""

import threading

import numpy as np
import pytest
import torch
import xarray as xr
from tiny_models import ExplodesAbove, WeightEcho, echo_loss, exploding_loss

from devinterp_ui import StoreConflictError, sample

SETTINGS = dict(
    lr=1e-3,
    n_beta=20.0,
    num_chains=3,
    num_draws=6,
    batch_size=8,
    num_burnin_steps=2,
    num_init_loss_batches=2,
    progress_bar=False,
)


def arrays(tree) -> dict[str, np.ndarray]:
    return {name: tree[name].values for name in tree.data_vars}


def assert_bit_identical(a, b):
    a, b = arrays(a), arrays(b)
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


def test_same_seeds_give_bit_identical_arrays(tiny_lm, token_data):
    obs = {"o": token_data[:32]}
    assert_bit_identical(
        sample(tiny_lm, token_data, obs, save_metrics=True, **SETTINGS),
        sample(tiny_lm, token_data, obs, save_metrics=True, **SETTINGS),
    )


def test_lockstep_and_sequential_are_bit_identical(tiny_lm, token_data):
    obs = {"o": token_data[:32]}
    lock = sample(
        tiny_lm, token_data, obs, chain_schedule="lockstep", save_metrics=True, **SETTINGS
    )
    seq = sample(
        tiny_lm, token_data, obs, chain_schedule="sequential", save_metrics=True, **SETTINGS
    )
    assert_bit_identical(lock, seq)


def test_model_is_not_modified(tiny_lm, token_data):
    before = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    sample(tiny_lm, token_data, {}, **SETTINGS)
    for k, v in tiny_lm.state_dict().items():
        assert torch.equal(v, before[k])


def test_matched_input_ids_are_shared_across_chains(tiny_lm, token_data):
    ids = sample(tiny_lm, token_data, {}, **SETTINGS)["sampling_input_ids_micro"].values
    assert all(np.array_equal(ids[0], ids[c]) for c in range(1, 3))


def test_unmatched_input_ids_differ_across_chains(tiny_lm, token_data):
    tree = sample(tiny_lm, token_data, {}, match_sampling_input_ids_across_chains=False, **SETTINGS)
    ids = tree["sampling_input_ids_micro"].values
    assert not np.array_equal(ids[0], ids[1])
    assert not np.allclose(tree["init_loss"].values[0], tree["init_loss"].values[1])


def test_shuffle_false_reads_rows_in_order(echo_data):
    tree = sample(
        WeightEcho(),
        echo_data,
        {},
        lr=1e-3,
        n_beta=5.0,
        num_chains=1,
        num_draws=20,
        batch_size=8,
        shuffle=False,
        loss_fn=echo_loss,
        progress_bar=False,
    )
    rows = tree["sampling_indices_micro"].values[0].reshape(-1)
    np.testing.assert_array_equal(rows, np.tile(np.arange(64), 3)[: len(rows)])


def test_shuffled_epochs_visit_every_row(echo_data):
    tree = sample(
        WeightEcho(),
        echo_data,
        {},
        lr=1e-3,
        n_beta=5.0,
        num_chains=1,
        num_draws=8,
        batch_size=8,
        loss_fn=echo_loss,
        progress_bar=False,
    )
    rows = tree["sampling_indices_micro"].values[0].reshape(-1)
    assert sorted(rows) == list(range(64))
    assert not np.array_equal(rows, np.arange(64))


def test_init_loss_is_mean_loss_at_checkpoint_over_first_batches(tiny_lm, token_data):
    tree = sample(tiny_lm, token_data, {}, **{**SETTINGS, "num_chains": 1})
    from devinterp_ui.data import BatchFeed
    from devinterp_ui.losses import next_token_loss

    feed = BatchFeed(len(token_data), 8, 100, True)
    with torch.no_grad():
        per = torch.cat([next_token_loss(tiny_lm, token_data[feed.next()]) for _ in range(2)])
    np.testing.assert_allclose(tree["init_loss"].values[0], per.mean(0).numpy(), rtol=1e-5)
    # The first step's batch is the feed's first batch, at the checkpoint.
    np.testing.assert_allclose(tree["sampling_loss_micro"].values[0, 0], per[:8].numpy(), rtol=1e-5)


def test_progress_callback_gets_every_chain_step(tiny_lm, token_data):
    seen = []
    sample(tiny_lm, token_data, {}, progress_callback=seen.append, save_metrics=True, **SETTINGS)
    assert len(seen) == 3 * (2 + 6)
    assert {(s.chain, s.step) for s in seen} == {(c, t) for c in range(3) for t in range(8)}
    assert [s.draw for s in seen if s.chain == 0] == [None, None, 0, 1, 2, 3, 4, 5]
    assert all(np.isfinite(s.loss) and s.metrics["noise"] > 0 for s in seen)
    assert seen[-1].status == "completed"


@pytest.mark.parametrize("stop_at", [0, 1, 2, 7])  # burn-in, burn-in end, first draw, last step
def test_stop_event_ends_every_chain_at_a_step_boundary(tiny_lm, token_data, tmp_path, stop_at):
    stop = threading.Event()

    def on_step(summary):
        if summary.step == stop_at and summary.chain == 2:
            stop.set()

    path = tmp_path / "run.zarr"
    tree = sample(
        tiny_lm,
        token_data,
        {"o": token_data[:32]},
        stop_event=stop,
        progress_callback=on_step,
        output_path=path,
        **SETTINGS,
    )
    progress = tree.attrs["progress"]
    # A step is read back (and reported) after the next chain step was launched, so a stop set
    # from the callback of chain 2's step s lands after the round of step s or s + 1 ends.
    done = progress["chains"]["steps_written"]
    assert done == [done[0]] * 3
    assert stop_at + 1 <= done[0] <= min(stop_at + 2, 8)
    finished = done[0] == 8
    assert progress["status"] == ("completed" if finished else "stopped")
    draws = max(0, done[0] - 2)
    assert progress["chains"]["draws_written"] == [draws] * 3
    assert ("completed" in tree.attrs) == finished
    micro = tree["sampling_loss_micro"].values
    assert np.isfinite(micro[:, : done[0]]).all()
    assert np.isnan(micro[:, done[0] :]).all()
    assert np.isfinite(tree["loss_o"].values[:, :draws]).all()
    assert np.isnan(tree["loss_o"].values[:, draws:]).all()


def first_noise(chain: int) -> float:
    return float(torch.randn(1, generator=torch.Generator().manual_seed(100 + chain)))


def test_nan_chain_stops_alone_and_is_marked_failed(echo_data, tmp_path):
    # init_noise puts each chain's start at first_noise(c); pick a threshold only some exceed.
    starts = [first_noise(c) for c in range(4)]
    threshold = float(np.median(starts))
    path = tmp_path / "nan.zarr"
    with pytest.warns(RuntimeWarning, match="chains failed"):
        tree = sample(
            ExplodesAbove(threshold),
            echo_data,
            {"o": echo_data},
            lr=1e-6,
            n_beta=1e-3,
            num_chains=4,
            num_draws=5,
            batch_size=4,
            init_noise=1.0,
            loss_fn=exploding_loss,
            output_path=path,
            progress_bar=False,
        )
    progress = tree.attrs["progress"]
    failed = [c for c in range(4) if starts[c] > threshold]
    assert failed and len(failed) < 4
    for c in range(4):
        status = progress["chains"]["status"][c]
        if c in failed:
            assert status == "failed"
            assert "non-finite sampling loss at step 0" in progress["chains"]["error"][c]
            assert progress["chains"]["draws_written"][c] == 0
            assert np.isnan(tree["loss_o"].values[c]).all()
        else:
            assert status == "completed"
            assert np.isfinite(tree["sampling_loss_micro"].values[c]).all()
    assert progress["status"] == "completed"
    assert tree.attrs["completed"] == 1


def test_exception_in_loss_fn_marks_store_failed_and_propagates(tiny_lm, token_data, tmp_path):
    from devinterp_ui.losses import next_token_loss

    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += 1
        if calls["n"] > 15:
            raise RuntimeError("boom in loss_fn")
        return next_token_loss(model, batch)

    path = tmp_path / "fail.zarr"
    with pytest.raises(RuntimeError, match="boom in loss_fn"):
        sample(
            tiny_lm, token_data, {}, loss_fn=flaky, output_path=path, flush_interval=0, **SETTINGS
        )
    tree = xr.open_datatree(path, engine="zarr")
    progress = tree.attrs["progress"]
    assert progress["status"] == "failed"
    assert "boom in loss_fn" in progress["error"] and "Traceback" in progress["error"]
    assert "completed" not in tree.attrs
    written = progress["chains"]["steps_written"]
    micro = tree["sampling_loss_micro"].values
    for c, n in enumerate(written):
        assert np.isfinite(micro[c, :n]).all()


def test_completed_output_path_is_returned_without_sampling(tiny_lm, token_data, tmp_path):
    path = tmp_path / "run.zarr"
    first = sample(tiny_lm, token_data, {}, output_path=path, **SETTINGS)
    calls = []
    again = sample(
        tiny_lm, token_data, {}, output_path=path, progress_callback=calls.append, **SETTINGS
    )
    assert calls == []
    assert_bit_identical(first, again)


def test_output_path_with_other_settings_names_the_difference(tiny_lm, token_data, tmp_path):
    path = tmp_path / "run.zarr"
    sample(tiny_lm, token_data, {}, output_path=path, **SETTINGS)
    with pytest.raises(
        StoreConflictError, match=r"sampler\.lr: stored 0\.001, requested 0\.002.*Delete"
    ):
        sample(tiny_lm, token_data, {}, output_path=path, **{**SETTINGS, "lr": 2e-3})


def test_output_path_with_another_checkpoint_is_refused(tiny_lm, token_data, tmp_path):
    path = tmp_path / "run.zarr"
    sample(tiny_lm, token_data, {}, output_path=path, **SETTINGS)
    with torch.no_grad():
        tiny_lm.head.bias.add_(1.0)
    with pytest.raises(StoreConflictError, match="fingerprints.model"):
        sample(tiny_lm, token_data, {}, output_path=path, **SETTINGS)


def test_incomplete_output_path_is_refused_with_advice(tiny_lm, token_data, tmp_path):
    path = tmp_path / "run.zarr"
    stop = threading.Event()
    stop.set()
    sample(tiny_lm, token_data, {}, output_path=path, stop_event=stop, **SETTINGS)
    with pytest.raises(StoreConflictError, match="incomplete run.*stopped.*delete"):
        sample(tiny_lm, token_data, {}, output_path=path, **SETTINGS)


def test_output_path_that_is_not_a_store_is_refused(tiny_lm, token_data, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreConflictError, match="not a sample store"):
        sample(tiny_lm, token_data, {}, output_path=tmp_path, **SETTINGS)


def test_rows_are_visible_on_disk_while_the_run_goes_on(tiny_lm, token_data, tmp_path):
    path = tmp_path / "live.zarr"
    seen = []

    def peek(summary):
        if summary.chain == 2 and summary.step in (3, 6):
            seen.append(
                xr.open_datatree(path, engine="zarr").attrs["progress"]["chains"]["steps_written"]
            )

    sample(
        tiny_lm,
        token_data,
        {},
        output_path=path,
        progress_callback=peek,
        flush_interval=0,
        **SETTINGS,
    )
    # With flush_interval=0 every lockstep round ends with a flush of the steps read back so
    # far. A step is read back once the next chain step is launched: chain 2's step s while
    # chain 0's step s + 1 starts, just after the round of step s was flushed without it.
    assert seen == [[4, 4, 3], [7, 7, 6]]


def test_device_cpu_string_is_accepted(tiny_lm, token_data):
    tree = sample(tiny_lm, token_data, {}, device="cpu", **{**SETTINGS, "num_chains": 1})
    assert tree.attrs["provenance"]["device"] == "cpu"
