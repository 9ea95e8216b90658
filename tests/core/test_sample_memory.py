"""What sample() holds in memory: the chains' anchors are the caller's parameters (no copy), and
the working copy made for the probe and init loss is a chain's copy (docs/performance.md §11)."""

import torch

import devinterp_ui.chain as chain_module
import devinterp_ui.noise as noise_module
import devinterp_ui.sampling.api as api
from devinterp_ui import sample
from devinterp_ui.chain import SharedSegments
from devinterp_ui.segments import SEGMENT_NUMEL

SETTINGS = dict(lr=1e-3, n_beta=10.0, num_draws=2, batch_size=4, num_init_loss_batches=1)


class TwoLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        # big.weight fills a segment on its own (SEGMENT_NUMEL entries); the rest share one
        self.big = torch.nn.Linear(1024, SEGMENT_NUMEL // 1024, bias=False)
        self.out = torch.nn.Linear(SEGMENT_NUMEL // 1024, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.big(x))).squeeze(-1)


def mse(model, batch):
    x, y = batch
    return (model(x) - y) ** 2


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 1024, generator=g), torch.randn(16, generator=g)


def test_read_from_views_single_parameter_segments_of_the_callers_model():
    model = TwoLayer()
    sampled = {name: None for name, _ in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    shared = SharedSegments.read_from(model, sampled, torch.device("cpu"))
    big, rest = shared.anchors
    assert big.data_ptr() == model.big.weight.data_ptr()  # a view, not a copy
    flat = torch.cat([before[n].reshape(-1) for n in sampled if n != "big.weight"])
    assert rest.data_ptr() not in {p.data_ptr() for p in model.parameters()}  # concatenated
    torch.testing.assert_close(big, before["big.weight"].reshape(-1), rtol=0, atol=0)
    torch.testing.assert_close(rest, flat, rtol=0, atol=0)
    for n, p in model.named_parameters():  # the caller's model is left as it was
        torch.testing.assert_close(p.detach(), before[n], rtol=0, atol=0)


def test_one_chain_anchors_are_the_callers_storage_and_its_copy_is_the_working_copy(
    monkeypatch,
):
    model = TwoLayer()
    caller = {p.untyped_storage().data_ptr() for p in model.parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen = []
    original = chain_module.plain_group

    def spy(*args, **kwargs):
        group = original(*args, **kwargs)
        seen.append((kwargs["model"], group))
        return group

    monkeypatch.setattr("devinterp_ui.runner.plain_group", spy)
    made = []
    working_copy = api.working_copy

    def record_copy(*args):
        made.append(working_copy(*args))
        return made[-1]

    monkeypatch.setattr("devinterp_ui.sampling.api.working_copy", record_copy)
    tree = sample(model, data(), loss_fn=mse, num_chains=1, progress_bar=False, **SETTINGS)
    assert tree["sampling_loss_micro"].shape[0] == 1
    ((chain_model, group),), (base,) = seen, made
    assert chain_model is base  # no second copy for the chain
    anchors = [s.w0 for s in group.states[0].slots]
    # big.weight is a segment of its own: its anchor is the caller's tensor itself
    assert anchors[0].untyped_storage().data_ptr() in caller
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n], rtol=0, atol=0)


def test_a_step_frees_micro_batch_gradients_and_draws_noise_in_pieces(monkeypatch):
    """During a step's update no earlier micro-batch's gradients are alive, each segment's
    gradient is freed once it is updated, and no noise tensor is larger than a piece."""
    import weakref

    from devinterp_ui import kernel, sgld

    monkeypatch.setattr(sgld, "UPDATE_NUMEL", 1 << 16)
    batches = []  # per micro-batch: weakrefs to the gradients PlainGradient returned
    original_grads = chain_module.PlainGradient.grads

    def grads(self, rows):
        g, per = original_grads(self, rows)
        batches.append([weakref.ref(t) for t in g])
        return g, per

    alive_in_update, alive_after = [], []
    original_step = kernel.step

    def step(state, grads_in, noise, hp, with_metrics=False):
        alive_in_update.append(sum(r() is not None for r in batches[-1]))
        out = original_step(state, grads_in, noise, hp, with_metrics)
        alive_after.append(sum(r() is not None for r in batches[-2]))
        return out

    draws = []
    original_draw_from = noise_module.draw_from

    def draw_from(generator):
        draw = original_draw_from(generator)

        def counted(t):
            draws.append(t.numel())
            return draw(t)

        return counted

    monkeypatch.setattr(chain_module.PlainGradient, "grads", grads)
    monkeypatch.setattr(kernel, "step", step)
    monkeypatch.setattr(noise_module, "draw_from", draw_from)
    settings = {**SETTINGS, "gradient_accumulation_steps": 2}
    sample(TwoLayer(), data(), loss_fn=mse, num_chains=1, progress_bar=False, **settings)
    assert alive_in_update == [0, 0]  # the second micro-batch's, added into the first's
    assert alive_after == [0, 0]  # the first's, which held the sum: released by the update
    assert max(draws) <= (1 << 16) + 15 and sum(draws) == 2 * (SEGMENT_NUMEL + 1024 + 1)
