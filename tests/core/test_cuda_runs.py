"""The device-only paths of a run (page-locked batch copies, read-back one step late), on CUDA.

Skipped where there is no GPU: CI has none. Run them on a GPU machine with
`pytest tests/core/test_cuda_runs.py`.
"""

import numpy as np
import pytest
import torch
from tiny_models import ExplodesAbove, TinyLM, exploding_loss

from devinterp_ui import sample
from devinterp_ui.host_copy import HostCopy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SETTINGS = dict(
    lr=1e-3,
    n_beta=20.0,
    localization=10.0,
    num_chains=3,
    num_draws=6,
    num_burnin_steps=2,
    batch_size=8,
    num_init_loss_batches=2,
    save_metrics=True,
    progress_bar=False,
    device="cuda",
)


@pytest.fixture
def tokens():
    return torch.randint(0, 11, (64, 9), generator=torch.Generator().manual_seed(0))


def run(tokens, **extra):
    torch.manual_seed(0)
    return sample(TinyLM(), tokens, {"o": tokens[:24]}, **{**SETTINGS, **extra})


def arrays(tree):
    return {name: tree[name].values for name in tree.dataset.data_vars}


def test_host_copy_returns_the_values_after_later_kernels_were_queued():
    x = torch.arange(1000.0, device="cuda")
    copy = HostCopy([x * 2])
    x.mul_(0)  # queued after the copy: must not leak into it
    (host,) = copy.wait()
    assert host.device.type == "cpu"
    np.testing.assert_array_equal(host.numpy(), np.arange(1000.0) * 2)


def test_lockstep_and_sequential_agree_bit_for_bit_on_cuda(tokens):
    lock, seq = arrays(run(tokens)), arrays(run(tokens, chain_schedule="sequential"))
    assert lock.keys() == seq.keys()
    for name in lock:
        np.testing.assert_array_equal(lock[name], seq[name], err_msg=name)
    assert np.isfinite(lock["metrics_noise"]).all() and (lock["metrics_noise"] > 0).all()


def test_vectorized_runs_on_cuda_and_records_every_row(tokens):
    tree = run(tokens, chain_schedule="vectorized")
    assert tree.attrs["completed"] == 1
    for name in ("sampling_loss", "sampling_loss_micro", "loss_o", "metrics_distance"):
        assert np.isfinite(tree[name].values).all(), name


def test_a_nan_chain_fails_alone_at_its_first_bad_step_on_cuda():
    # init_noise puts chain c at its generator's first draw; the two highest start above it.
    starts = [
        float(torch.randn(1, generator=torch.Generator("cuda").manual_seed(100 + c), device="cuda"))
        for c in range(4)
    ]
    threshold = float(np.median(starts))
    data = (torch.zeros(32, 1),)
    with pytest.warns(RuntimeWarning, match="chains failed"):
        tree = sample(
            ExplodesAbove(threshold),
            data,
            {"o": data},
            loss_fn=exploding_loss,
            **{**SETTINGS, "lr": 1e-6, "n_beta": 1e-3, "num_chains": 4, "init_noise": 1.0},
        )
    progress = tree.attrs["progress"]["chains"]
    for c, start in enumerate(starts):
        if start > threshold:
            assert progress["status"][c] == "failed"
            assert progress["steps_written"][c] == 1
            assert np.isnan(tree["metrics_noise"].values[c]).all()  # the failed step's too
        else:
            assert progress["status"][c] == "completed"
            assert np.isfinite(tree["sampling_loss_micro"].values[c]).all()


def test_the_update_inside_the_backward_gives_the_plain_steps_bits_on_cuda(tokens, monkeypatch):
    """On CUDA the hooks run on autograd's device thread: the same bits as the plain step,
    with the tiny LM cut into one segment per parameter."""
    import devinterp_ui.chain as chain_module
    import devinterp_ui.segments as segments_module

    monkeypatch.setattr(segments_module, "SEGMENT_NUMEL", 32)
    seen = []
    original = chain_module.ChainGroup._step_in_backward

    def spy(self, *args):
        seen.append(True)
        return original(self, *args)

    monkeypatch.setattr(chain_module.ChainGroup, "_step_in_backward", spy)
    inside = arrays(run(tokens))
    assert seen
    monkeypatch.setattr(chain_module.PlainGradient, "updates_in_backward", lambda *a: False)
    plain = arrays(run(tokens))
    for name in inside:
        np.testing.assert_array_equal(inside[name], plain[name], err_msg=name)
