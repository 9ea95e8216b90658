"""Every kind of bad input is refused before any compute and before any store exists, with a
message naming the parameter and the fix; the temporary store of output_path=None is removed
on every exception, whenever it happens."""

import math
import os
import tempfile
import threading
from pathlib import Path

import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui import sample
from devinterp_ui.losses import next_token_loss


class CountingLM(TinyLM):
    """TinyLM (vocabulary 11) counting its forward passes."""

    calls = 0

    def forward(self, ids):
        CountingLM.calls += 1
        return super().forward(ids)


def tokens(n=40, seed=0):
    return torch.randint(0, 11, (n, 6), generator=torch.Generator().manual_seed(seed))


def with_id(value, row=400, n=500):
    data = tokens(n)
    data[row, 3] = value
    return data


def parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    return {"output_path": tmp_path / "file" / "run.zarr"}


def read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return {"output_path": ro / "sub" / "run.zarr"}


BASE = dict(lr=1e-3, n_beta=10.0, num_chains=2, num_draws=3, batch_size=4, progress_bar=False)

# (id, overrides or a function of tmp_path giving them, exception, message pattern,
#  forward passes allowed: 0 before any compute, 1 for the checks that need the 2-row probe)
CASES = [
    ("id_beyond_vocab", {"dataset": with_id(11)}, ValueError,
     r"dataset row 400 holds token id 11 at position 3; token ids must be in 0\.\.10", 0),
    ("negative_id", {"dataset": with_id(-1)}, ValueError,
     r"dataset row 400 holds token id -1", 0),
    ("bad_id_in_observable", {"observables": {"code": with_id(99, row=30, n=40)}}, ValueError,
     r"observables\['code'\] row 30 holds token id 99", 0),
    ("seed_too_large", {"init_seed": 2**64}, ValueError,
     r"init_seed must be an integer a torch generator takes", 0),
    ("seed_too_small", {"init_seed": -(2**63) - 1}, ValueError,
     r"init_seed must be an integer a torch generator takes", 0),
    ("seed_range_over_chains", {"init_seed": 2**64 - 1}, ValueError,
     r"init_seed \+ num_chains - 1 = .* pass a smaller init_seed", 0),
    ("obs_seed_too_large", {"obs_seed": 2**70}, ValueError,
     r"obs_seed must be an integer a torch generator takes", 0),
    ("seed_not_an_integer", {"init_seed": 1.5}, TypeError, r"init_seed must be an integer", 0),
    ("dataset_path_string", {"dataset": "data/train.pt"}, TypeError,
     r"dataset is a path \('data/train.pt'\), not data; load it first", 0),
    ("dataset_pathlib", {"dataset": Path("data/train.pt")}, TypeError,
     r"dataset is a path", 0),
    ("list_of_token_lists", {"dataset": [[1, 2, 3, 4]] * 40}, TypeError,
     r"dataset is a list of token lists; pass torch.tensor\(dataset\)", 0),
    ("tensordataset_of_ids", {"dataset": torch.utils.data.TensorDataset(tokens())}, TypeError,
     r"dataset is a TensorDataset holding only token ids; pass the \(N, T\) tensor itself", 0),
    ("observable_per_draw_float", {"observables": {"o": (tokens(), 2.5)}}, ValueError,
     r"observables\['o'\] is \(dataset, batches_per_draw\) but batches_per_draw is 2.5", 0),
    ("observable_per_draw_zero", {"observables": {"o": (tokens(), 0)}}, ValueError,
     r"batches_per_draw is 0; it must be an int >= 1", 0),
    ("observable_per_draw_str", {"observables": {"o": (tokens(), "3")}}, ValueError,
     r"batches_per_draw is '3'", 0),
    ("observable_per_draw_bool", {"observables": {"o": (tokens(), True)}}, ValueError,
     r"batches_per_draw is True", 0),
    ("empty_observable_name", {"observables": {"": tokens()}}, ValueError,
     r"observable name '' is empty", 0),
    ("blank_observable_name", {"observables": {"  ": tokens()}}, ValueError,
     r"observable name '  ' is empty", 0),
    ("flush_interval_inf", {"flush_interval": math.inf}, ValueError,
     r"flush_interval must be a finite number of seconds >= 0", 0),
    ("flush_interval_nan", {"flush_interval": math.nan}, ValueError,
     r"flush_interval must be a finite number", 0),
    ("store_larger_than_disk", {"num_draws": 10**12}, ValueError,
     r"the store would take at least .* \(compressed at best; .* uncompressed\) but .* free; "
     r"lower num_draws", 0),
    ("absurd_num_chains", {"num_chains": 10**6}, ValueError,
     r"num_chains must be an integer >= 1 and <= 4096", 0),
    ("chains_do_not_fit_in_memory",
     {"model": torch.nn.Linear(10**6, 10**6, device="meta"), "device": "cpu"}, ValueError,
     r"num_chains=2 needs 3 more model copies \(.* TiB\) but cpu has .* available; lower "
     r"num_chains or pass chain_schedule='sequential'", 0),
    ("parent_is_a_file", parent_is_a_file, ValueError,
     r"cannot be created: .*file' is a file, not a directory", 0),
    ("read_only_directory", read_only_dir, ValueError,
     r"cannot be created: directory .*ro' is read-only", 0),
    ("loss_without_gradient", {"loss_fn": lambda m, b: next_token_loss(m, b).detach()},
     ValueError, r"loss_fn \(checked on a 2-row probe batch of the dataset\) has no gradient "
     r"path to the sampled parameters", 1),
    ("loss_under_no_grad", {"loss_fn": lambda m, b: torch.no_grad()(next_token_loss)(m, b)},
     ValueError, r"has no gradient path", 1),
    ("loss_nan_at_checkpoint", {"loss_fn": lambda m, b: next_token_loss(m, b) * math.nan},
     ValueError, r"returns NaN/Inf at the checkpoint", 1),
    ("loss_inf_at_checkpoint", {"loss_fn": lambda m, b: next_token_loss(m, b) + math.inf},
     ValueError, r"returns NaN/Inf at the checkpoint", 1),
    ("loss_of_wrong_rows", {"loss_fn": lambda m, b: next_token_loss(m, b)[:1]}, ValueError,
     r"checked on a 2-row probe batch .* B = 2 rows", 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "exc", "match", "forwards"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_is_refused_before_compute_and_before_any_store(
    tmp_path, overrides, exc, match, forwards
):
    args = overrides(tmp_path) if callable(overrides) else dict(overrides)
    data = args.pop("dataset", tokens())
    observables = args.pop("observables", {})
    model = args.pop("model", None) or CountingLM()
    args.setdefault("output_path", tmp_path / "run.zarr")
    before = set(tmp_path.rglob("*"))
    CountingLM.calls = 0
    with pytest.raises(exc, match=match):
        sample(model, data, observables, **{**BASE, **args})
    assert CountingLM.calls <= forwards
    assert set(tmp_path.rglob("*")) == before  # no store, no .building directory


@pytest.fixture
def own_tempdir(tmp_path, monkeypatch):
    """tempfile's directory, private to this test, so leaked stores can be counted."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def failing_at_step(step):
    calls = {"n": 0}

    def loss(model, batch):
        calls["n"] += 1
        if calls["n"] > step:
            raise RuntimeError("the loss failed on purpose")
        return next_token_loss(model, batch)

    return loss


def interrupted(summary):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("args", "exc"),
    [
        pytest.param({"lr": -1.0}, ValueError, id="bad_setting"),
        pytest.param({"loss_fn": lambda m, b: next_token_loss(m, b)[:1]}, ValueError, id="probe"),
        pytest.param({"loss_fn": failing_at_step(3)}, RuntimeError, id="during_init_loss"),
        pytest.param({"loss_fn": failing_at_step(8)}, RuntimeError, id="during_sampling"),
        pytest.param({"progress_callback": interrupted}, KeyboardInterrupt, id="interrupted"),
    ],
)
def test_temporary_store_is_removed_on_every_exception(own_tempdir, args, exc):
    with pytest.raises(exc):
        sample(TinyLM(), tokens(), {"o": tokens()}, **{**BASE, "num_init_loss_batches": 4, **args})
    assert os.listdir(own_tempdir) == []


def test_temporary_store_is_removed_after_a_run(own_tempdir):
    tree = sample(TinyLM(), tokens(), {}, **{**BASE, "num_init_loss_batches": 1})
    assert tree["sampling_loss"].shape[:2] == (2, 3)
    assert os.listdir(own_tempdir) == []


def test_stop_ends_the_init_loss_phase(tmp_path):
    stop = threading.Event()
    calls = {"n": 0}

    def loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            stop.set()
        return next_token_loss(model, batch)

    tree = sample(
        TinyLM(),
        tokens(),
        {},
        **{**BASE, "num_init_loss_batches": 10_000},
        loss_fn=loss,
        stop_event=stop,
        output_path=tmp_path / "run.zarr",
    )
    assert calls["n"] < 10  # the probe, 4 init-loss batches, the one that set the event
    assert tree.attrs["progress"]["status"] == "stopped"
    assert "completed" not in tree.attrs
    assert tree.attrs["progress"]["chains"]["steps_written"] == [0, 0]


def test_store_size_counts_floats_in_full_and_integers_at_the_bytes_they_need():
    from devinterp_ui.sampling.inputs import store_nbytes
    from devinterp_ui.store.schema import ArraySpec

    schema = {
        "loss": ArraySpec("loss", ("chain", "step"), (2, 100), "float32"),
        "ids": ArraySpec("ids", ("chain", "step", "token"), (2, 100, 6), "int64"),
    }
    assert store_nbytes(schema) == 2 * 100 * 4 + 2 * 100 * 6 * 8  # uncompressed
    assert store_nbytes(schema, largest_int=200) == 2 * 100 * 4 + 2 * 100 * 6 * 1
    assert store_nbytes(schema, largest_int=50_000) == 2 * 100 * 4 + 2 * 100 * 6 * 2


def test_an_init_loss_that_raises_leaves_a_store_marked_failed(tmp_path):
    from devinterp_ui.live.reader import StoreReader

    path = tmp_path / "run.zarr"
    with pytest.raises(RuntimeError, match="on purpose"):
        sample(
            TinyLM(),
            tokens(),
            {},
            **{**BASE, "num_init_loss_batches": 4},
            loss_fn=failing_at_step(3),
            output_path=path,
        )
    status = StoreReader(path).status()
    assert status.status == "failed"
    assert "on purpose" in (status.error or "")
