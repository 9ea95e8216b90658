"""The update inside the backward (devinterp_ui.backward_update) and the per-segment noise
streams (devinterp_ui.noise), on a model of several segments.

Pinned here: each segment's noise comes from its own stream (segment 0: the chain's seed;
segment k: `segment_seed(seed, k)`), replayed by hand; the update inside the backward gives the
bits of the plain step for every method, with masks and metrics; it frees each segment's
gradient before the backward ends; and a model that reads a parameter after the backward
completes its gradient is found before sampling and takes the plain step.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest
import torch

import devinterp_ui.chain as chain_module
from devinterp_ui import sample
from devinterp_ui.chain import SharedSegments, plain_group
from devinterp_ui.data import BatchFeed, as_source
from devinterp_ui.noise import segment_seed
from devinterp_ui.sgld import SGLDHyper

WIDTH = 640  # 640 x 1024 = 655k entries: two such matrices exceed a segment (2^20)


class Deep(torch.nn.Module):
    """Three segments: the 655k-entry matrices `a` and `b` alone, then `c` with the head."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Parameter(torch.randn(WIDTH, 1024, generator=g) / 32)
        self.b = torch.nn.Parameter(torch.randn(1024, WIDTH, generator=g) / 32)
        self.c = torch.nn.Parameter(torch.randn(WIDTH, 1024, generator=g) / 32)
        self.head = torch.nn.Linear(WIDTH, 1)
        with torch.no_grad():  # from g, not torch's global generator: every Deep() is the same
            self.head.weight.copy_(torch.randn(1, WIDTH, generator=g) / 32)
            self.head.bias.zero_()

    def forward(self, x):
        h = torch.tanh(x @ self.b)  # (B, WIDTH)
        h = torch.tanh(h @ self.a)  # (B, 1024)
        h = torch.tanh(h @ self.b)  # b used twice: its gradient completes late
        h = torch.tanh(h @ self.c)
        return self.head(torch.tanh(h @ self.b)).squeeze(-1)


def mse(model, batch):
    x, y = batch
    return (model(x) - y) ** 2


def data(n=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1024, generator=g), torch.randn(n, generator=g)


def group(model, hp, seed=7, masks=None, in_backward=True, monkeypatch=None):
    """A one-chain plain group on `model` (in_backward=False: the trial says no)."""
    sampled = {n: (masks or {}).get(n) for n, _ in model.named_parameters()}
    shared = SharedSegments.of(model, sampled)
    source = as_source(data(), "dataset")
    feed = BatchFeed(len(source), 4, 3, True)
    cpu = torch.device("cpu")
    if in_backward:
        return plain_group(0, model, shared, feed, source, mse, hp, seed, 1, cpu), shared
    with monkeypatch.context() as m:
        m.setattr(chain_module.PlainGradient, "updates_in_backward", lambda *a: False)
        return plain_group(0, model, shared, feed, source, mse, hp, seed, 1, cpu), shared


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_the_model_has_several_segments_and_the_group_updates_inside_the_backward():
    model = Deep()
    g, shared = group(model, SGLDHyper(lr=1e-4, n_beta=10.0))
    assert len(shared.layout.segments) == 3
    assert g.in_backward


def test_each_segment_draws_from_its_own_stream_replayed_by_hand():
    """With no gradient, prior or box, one step moves segment k by sqrt(lr) xi_k, xi_k the first
    draw of a generator seeded segment_seed(seed, k): the order of the streams is pinned."""
    model = Deep()
    before = weights(model)

    def flat_loss(model, batch):  # zero gradients: head.bias times 0, the rest unused
        x, _ = batch
        return x[:, 0] * 0.0 + model.head.bias * 0.0

    hp = SGLDHyper(lr=1e-4, n_beta=10.0)
    sampled = {n: None for n, _ in model.named_parameters()}
    shared = SharedSegments.of(model, sampled)
    source = as_source(data(), "dataset")
    feed = BatchFeed(len(source), 4, 3, True)
    seed = 11
    grp = plain_group(0, model, shared, feed, source, flat_loss, hp, seed, 1, torch.device("cpu"))
    grp.step(False, [True])[0].resolve()
    named = dict(model.named_parameters())
    for k, seg in enumerate(shared.layout.segments):
        gen = torch.Generator().manual_seed(segment_seed(seed, k))
        xi = torch.randn(seg.numel, generator=gen)
        start = torch.cat([before[n].reshape(-1) for n in seg.names])
        after = torch.cat([named[n].detach().reshape(-1) for n in seg.names])
        # The update's own arithmetic: w - 0 + xi * (sqrt(lr) * noise_level), bit for bit.
        torch.testing.assert_close(after, start + xi * math.sqrt(hp.lr), rtol=0, atol=0)
    assert segment_seed(seed, 0) == seed


def test_segment_seeds_differ_between_segments_and_chains():
    seeds = {segment_seed(s, k) for s in range(100, 104) for k in range(50)}
    assert len(seeds) == 4 * 50


@pytest.mark.parametrize("method", ["sgmcmc_sgld", "rmsprop_sgld", "sgnht"])
@pytest.mark.parametrize("masked", [False, True])
def test_the_update_inside_the_backward_gives_the_bits_of_the_plain_step(
    method, masked, monkeypatch
):
    hp = SGLDHyper(lr=1e-4, n_beta=10.0, localization=5.0, llc_weight_decay=1e-3, method=method)
    masks = {"b": torch.rand(1024, WIDTH, generator=torch.Generator().manual_seed(2)) > 0.5}
    runs = {}
    for in_backward in (True, False):
        model = Deep()
        grp, _ = group(
            model,
            hp,
            masks=masks if masked else None,
            in_backward=in_backward,
            monkeypatch=monkeypatch,
        )
        assert grp.in_backward is in_backward
        outcomes = [grp.step(True, [True])[0].resolve() for _ in range(3)]
        runs[in_backward] = (weights(model), outcomes)
    (w_in, out_in), (w_plain, out_plain) = runs[True], runs[False]
    for name in w_in:
        torch.testing.assert_close(w_in[name], w_plain[name], rtol=0, atol=0)
    for a, b in zip(out_in, out_plain, strict=True):
        torch.testing.assert_close(a.losses, b.losses, rtol=0, atol=0)
        np.testing.assert_array_equal(a.rows, b.rows)
        assert a.metrics == b.metrics


def test_each_segments_gradient_is_freed_before_the_backward_ends(monkeypatch):
    """When the last segment is updated, the other segments' gradients are gone: the step never
    holds the model's gradients at once."""
    import devinterp_ui.backward_update as bu

    model = Deep()
    grp, shared = group(model, SGLDHyper(lr=1e-4, n_beta=10.0))
    refs, alive_at_update = [], []
    original = bu.backward_updating

    def spy(loss, params, layout, update):
        def watched(k, grad):
            alive_at_update.append(sum(r() is not None for r in refs))
            refs.append(weakref.ref(grad))
            update(k, grad)

        return original(loss, params, layout, watched)

    monkeypatch.setattr(chain_module, "backward_updating", spy)
    grp.step(False, [True])[0].resolve()
    assert len(refs) == len(shared.layout.segments)
    # At each segment's update, no earlier segment's gradient is still alive.
    assert alive_at_update == [0] * len(refs)
    assert all(p.grad is None for p in model.parameters())


class ReadsDetached(torch.nn.Module):
    """Reads a detached view of `w` in a node the backward runs after `w`'s gradient is
    complete (the mul's saved factor): updating `w` then would make that node's backward read a
    modified tensor. `u` fills a segment alone, so the segment of `w` completes first."""

    def __init__(self):
        super().__init__()
        self.u = torch.nn.Parameter(torch.randn(1024, 1100) / 32)
        self.w = torch.nn.Parameter(torch.randn(1100, 8) / 32)
        self.v = torch.nn.Parameter(torch.randn(8, 1))

    def forward(self, x):
        s = (x @ self.u) * self.w.detach()[0, 0]
        return (torch.tanh(s @ self.w) @ self.v).squeeze(-1)


def test_a_model_that_reads_an_updated_weight_takes_the_plain_step():
    model = ReadsDetached()
    grp, _ = group(model, SGLDHyper(lr=1e-4, n_beta=10.0))
    assert not grp.in_backward
    grp.step(False, [True])[0].resolve()  # and the plain step works


def test_the_trial_leaves_weights_buffers_and_random_state_as_they_were():
    class WithBuffer(Deep):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.BatchNorm1d(WIDTH)

        def forward(self, x):
            return super().forward(x) + torch.nn.functional.dropout(self.norm(x[:, :WIDTH])).sum(-1)

    model = WithBuffer()
    before_w, before_b = weights(model), [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    sampled = {n: None for n, _ in model.named_parameters()}
    shared = SharedSegments.of(model, sampled)
    source = as_source(data(), "dataset")
    est = chain_module.PlainGradient(model, sampled, source, mse, torch.device("cpu"))
    shared.layout.pack(model)
    assert est.updates_in_backward(shared.layout)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before_w[n], rtol=0, atol=0)
    for b, saved in zip(model.buffers(), before_b, strict=True):
        torch.testing.assert_close(b, saved, rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), rng)


def test_sample_gives_the_same_store_with_and_without_the_update_in_backward(monkeypatch):
    settings = dict(
        lr=1e-4,
        n_beta=10.0,
        localization=5.0,
        num_draws=4,
        num_chains=2,
        batch_size=4,
        num_init_loss_batches=1,
        progress_bar=False,
        save_metrics=True,
    )
    fused = sample(Deep(), data(), loss_fn=mse, **settings)
    monkeypatch.setattr(chain_module.PlainGradient, "updates_in_backward", lambda *a: False)
    plain = sample(Deep(), data(), loss_fn=mse, **settings)
    for name in ("sampling_loss_micro", "metrics_noise", "metrics_distance"):
        np.testing.assert_array_equal(fused[name].values, plain[name].values)
