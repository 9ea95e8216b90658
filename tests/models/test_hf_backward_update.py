"""The update inside the backward on tiny random `transformers` models of many types.

Each model is cut into small segments (1024 entries, so that every model has several
and the backward completes them in its own order), and one chain takes three steps with the
update inside the backward and three with the plain step: the weights, losses and metrics must
be the same bits. Every type listed must also take the update inside the backward (none falls
back to the plain step), or the memory it saves is not there for that family.
"""

import numpy as np
import pytest
import torch
from tiny_hf_models import MODEL_TYPES, VOCAB, case_id, tiny_model

import devinterp_ui.chain as chain_module
import devinterp_ui.segments as segments_module
from devinterp_ui.chain import SharedSegments, plain_group
from devinterp_ui.data import BatchFeed, as_source
from devinterp_ui.losses import next_token_loss
from devinterp_ui.sgld import SGLDHyper

pytest.importorskip("transformers")

IDS = torch.randint(1, VOCAB, (8, 6), generator=torch.Generator().manual_seed(0))
HP = SGLDHyper(lr=1e-4, n_beta=4.0, localization=10.0)


def run(build, in_backward: bool, monkeypatch):
    model = build()
    sampled = {n: None for n, _ in model.named_parameters()}
    shared = SharedSegments.of(model, sampled)
    source = as_source(IDS, "dataset")
    feed = BatchFeed(len(source), 2, 5, True)
    with monkeypatch.context() as m:
        if not in_backward:
            m.setattr(chain_module.PlainGradient, "updates_in_backward", lambda *a: False)
        group = plain_group(
            0, model, shared, feed, source, next_token_loss, HP, 9, 1, torch.device("cpu")
        )
    outcomes = [group.step(True, [True])[0].resolve() for _ in range(3)]
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    return group, len(shared.layout.segments), weights, outcomes


def same_bits(build, name: str, monkeypatch) -> None:
    monkeypatch.setattr(segments_module, "SEGMENT_NUMEL", 1024)
    group, segments, w_in, out_in = run(build, True, monkeypatch)
    assert group.in_backward, f"{name}: the trial sent this family to the plain step"
    assert segments > 5
    _, _, w_plain, out_plain = run(build, False, monkeypatch)
    for param in w_in:
        torch.testing.assert_close(w_in[param], w_plain[param], rtol=0, atol=0, msg=param)
    for a, b in zip(out_in, out_plain, strict=True):
        torch.testing.assert_close(a.losses, b.losses, rtol=0, atol=0)
        np.testing.assert_array_equal(a.rows, b.rows)
        assert a.metrics == b.metrics


@pytest.mark.parametrize("case", MODEL_TYPES, ids=case_id)
def test_the_update_inside_the_backward_gives_the_plain_steps_bits(case, monkeypatch):
    model_type, overrides, _ = case
    same_bits(lambda: tiny_model(model_type, **overrides), model_type, monkeypatch)


def test_a_transformer_lens_model_takes_the_update_inside_the_backward(monkeypatch):
    native = pytest.importorskip("transformer_lens.model_bridge.sources.native")
    config = dict(
        n_layers=2,
        d_model=32,
        n_ctx=16,
        d_head=8,
        n_heads=4,
        d_vocab=VOCAB,
        act_fn="gelu",
        d_mlp=64,
    )

    def build():
        torch.manual_seed(0)
        return native.boot(config)

    same_bits(build, "TransformerBridge", monkeypatch)
