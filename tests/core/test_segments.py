"""Packing the sampled parameters into segments: same values, same update, bounded segments."""

import copy
import weakref

import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui.segments import SegmentLayout
from devinterp_ui.sgld import ParamSlot, SGLDHyper, make_slots, sgld_step


def all_sampled(model):
    return {name: None for name, _ in model.named_parameters()}


def test_pack_keeps_values_and_makes_parameters_views_of_the_segments():
    torch.manual_seed(0)
    model = TinyLM()
    ids = torch.randint(0, 11, (2, 5))
    before = model(ids)
    layout = SegmentLayout(model, all_sampled(model))
    (flat,) = layout.pack(model)
    assert flat.numel() == sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(model(ids), before, rtol=0, atol=0)
    with torch.no_grad():
        flat.add_(1.0)
    torch.testing.assert_close(model.embed.weight, copy.deepcopy(model).embed.weight)
    assert model.embed.weight.data_ptr() == flat.data_ptr()
    assert not torch.equal(model(ids), before)


def test_segments_split_at_the_size_limit_and_a_large_parameter_stands_alone():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 100))
    # weights 12, 3, 300, 100 entries
    layout = SegmentLayout(model, all_sampled(model), max_numel=50)
    assert [seg.names for seg in layout.segments] == [
        ("0.weight", "0.bias"),
        ("1.weight",),
        ("1.bias",),
    ]
    flats = layout.pack(model)
    assert [f.numel() for f in flats] == [15, 300, 100]


def test_a_dtype_change_starts_a_new_segment():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[1].double()
    layout = SegmentLayout(model, all_sampled(model))
    assert [seg.names for seg in layout.segments] == [
        ("0.weight", "0.bias"),
        ("1.weight", "1.bias"),
    ]
    assert [f.dtype for f in layout.pack(model)] == [torch.float32, torch.float64]


def test_only_sampled_parameters_are_packed_and_masks_line_up():
    model = torch.nn.Linear(3, 2)
    mask = torch.tensor([[True, False, True], [False, True, True]])
    layout = SegmentLayout(model, {"weight": mask, "bias": None})
    (flat,) = layout.pack(model)
    (m,) = layout.masks([flat])
    torch.testing.assert_close(m, torch.tensor([1.0, 0, 1, 0, 1, 1, 1, 1]))
    only_bias = SegmentLayout(model, {"bias": None})
    assert only_bias.masks(only_bias.pack(model)) == [None]


def test_flat_grads_follow_the_sampled_order():
    model = torch.nn.Linear(2, 2)
    layout = SegmentLayout(model, {"bias": None, "weight": None})
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0, 4.0], [5.0, 6.0]])]
    (flat,) = list(layout.flat_grads(grads))
    torch.testing.assert_close(flat, torch.arange(1.0, 7.0))


def test_released_gradients_are_freed_segment_by_segment():
    """With release, a segment's gradients are dropped from the caller's list as the segment
    is handed out, so once its update is done (the flat let go) they are freed: the step never
    holds every gradient next to the update's temporaries."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 100))
    layout = SegmentLayout(model, all_sampled(model), max_numel=50)  # 3 segments
    grads = [torch.randn_like(p) for p in model.parameters()]
    refs = [weakref.ref(g) for g in grads]
    segments = layout.flat_grads(grads, release=True)
    first = next(segments)
    assert grads[:2] == [None, None] and grads[2] is not None
    del first  # the kernel has updated the first segment
    second = next(segments)
    assert refs[0]() is None and refs[1]() is None  # a concatenated copy: parts freed at once
    assert refs[2]() is not None  # the second segment's flat is a view of its gradient
    del second
    next(segments)
    assert refs[2]() is None and refs[3]() is not None


def test_stack_gives_independent_copies_viewed_per_parameter():
    model = torch.nn.Linear(3, 2)
    layout = SegmentLayout(model, all_sampled(model))
    (flat,), views = layout.stack(model, copies=3)
    assert flat.shape == (3, 8)
    assert views["weight"].shape == (3, 2, 3)
    with torch.no_grad():
        flat[1].zero_()
    assert torch.equal(views["weight"][1], torch.zeros(2, 3))
    torch.testing.assert_close(views["weight"][0], model.weight.detach())


@pytest.mark.parametrize("method", ["sgmcmc_sgld", "rmsprop_sgld"])
def test_update_on_segments_equals_the_update_per_parameter(method):
    torch.manual_seed(1)
    hp = SGLDHyper(
        lr=1e-2,
        n_beta=3.0,
        localization=5.0,
        llc_weight_decay=0.1,
        bounding_box_size=0.05,
        method=method,
    )
    model = TinyLM()
    mask = torch.rand_like(model.head.weight) > 0.5
    sampled = {"embed.weight": None, "head.weight": mask, "head.bias": None}
    anchors = {n: p.detach().clone() for n, p in model.named_parameters()}
    live = {n: (p.detach() + 0.01 * torch.randn_like(p)) for n, p in model.named_parameters()}
    grads = [torch.randn_like(live[n]) for n in sampled]
    noise = [torch.randn_like(live[n]) for n in sampled]

    per_param = [
        ParamSlot(
            w=live[n].clone(),
            w0=anchors[n],
            mask=None if m is None else m.float(),
            v=torch.zeros_like(live[n]) if method == "rmsprop_sgld" else None,
        )
        for n, m in sampled.items()
    ]
    expected = sgld_step(per_param, grads, noise, hp, with_metrics=True).values()

    packed_model = TinyLM()
    with torch.no_grad():
        for n, p in packed_model.named_parameters():
            p.copy_(live[n])
    layout = SegmentLayout(packed_model, sampled)
    weights = layout.pack(packed_model)
    anchor_model = copy.deepcopy(packed_model)
    with torch.no_grad():
        for n, p in anchor_model.named_parameters():
            p.copy_(anchors[n])
    slots = make_slots(weights, layout.pack(anchor_model), layout.masks(weights), method)
    flat_noise = [torch.cat([x.reshape(-1) for x in noise])]
    got = sgld_step(slots, layout.flat_grads(grads), flat_noise, hp, with_metrics=True).values()

    for (n, _), slot in zip(sampled.items(), per_param, strict=True):
        torch.testing.assert_close(dict(packed_model.named_parameters())[n], slot.w)
    assert got.keys() == expected.keys()
    for key in got:
        assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key
