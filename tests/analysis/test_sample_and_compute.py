"""The one-call helpers llc(), bif() and susceptibilities() on tiny real runs of sample()."""

import math

import pytest
import torch
from known_answers import gaussian_nll

from devinterp_ui.analysis import bif, create_param_masks, llc, susceptibilities
from devinterp_ui.demo.tiny_lm import TinyLM, TinyLMConfig

RUN = {"num_chains": 2, "num_draws": 4, "batch_size": 4, "progress_bar": False}


def _tiny_lm():
    torch.manual_seed(0)
    return TinyLM(
        TinyLMConfig(vocab_size=6, seq_len=5, d_model=8, n_layers=1, n_heads=2, d_head=4, d_mlp=8)
    )


def _tokens(seed, n=16):
    return torch.randint(0, 6, (n, 5), generator=torch.Generator().manual_seed(seed))


def test_llc_samples_and_returns_the_estimate():
    model = torch.nn.Linear(3, 1, bias=False)
    X = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
    Y = X @ model.weight.detach().T
    out = llc(model, (X, Y), lr=1e-3, n_beta=10.0, loss_fn=gaussian_nll, **RUN)
    assert out["llc_per_chain"].dims == ("chain",)
    assert out["loss_trace"].shape == (2, 4)
    assert math.isfinite(float(out["llc_mean"]))


def test_bif_samples_and_returns_token_influences():
    out = bif(
        _tiny_lm(),
        _tokens(0),
        {"a": _tokens(1), "b": _tokens(2)},
        lr=1e-3,
        n_beta=10.0,
        batches_per_draw=1,
        **RUN,
    )
    assert out["influences"].dims == ("batch_1", "batch_2", "target_position", "target_position_T")
    assert out["influences"].shape == (8, 8, 4, 4)
    assert out["input_ids"].shape == (8, 5)


def test_susceptibilities_runs_one_store_per_restriction(tmp_path):
    model = _tiny_lm()
    result = susceptibilities(
        model,
        _tokens(0),
        {"pile": _tokens(0), "probe": _tokens(3)},
        {"full": None, "l0h1": "l0h1", "mlp": create_param_masks(model, "l0 mlp")},
        sampling_task="pile",
        lr=1e-3,
        n_beta=10.0,
        batches_per_draw=1,
        output_path=tmp_path / "sus.zarr",
        **RUN,
    )
    assert result["susceptibilities"]["wr"].values.tolist() == ["l0h1", "mlp"]
    # devinterp 2.0.1's names: <stem>_<restriction><suffix>, so either finds the other's stores.
    stores = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert stores == ["sus_full.zarr", "sus_l0h1.zarr", "sus_mlp.zarr"]
    assert result["susceptibilities"]["sus"].shape == (4 * 4, 2)


def test_susceptibilities_refuses_a_restriction_name_that_cannot_name_a_store(tmp_path):
    with pytest.raises(ValueError, match="path separator"):
        susceptibilities(
            _tiny_lm(),
            _tokens(0),
            {"pile": _tokens(0), "probe": _tokens(3)},
            {"full": None, "a/b": "l0h1"},
            sampling_task="pile",
            lr=1e-3,
            n_beta=10.0,
            output_path=tmp_path / "sus.zarr",
            **RUN,
        )
    assert list(tmp_path.iterdir()) == []
