"""The update inside the backward: each segment is updated as soon as its gradient is complete.

A plain step computes every sampled parameter's gradient (one model copy) and then updates the
segments. Here a post-accumulate-grad hook on each sampled parameter hands its gradient over as
the backward completes it; once every parameter of a segment has one, the segment is updated
(`kernel.Update.slot`) and those gradients are freed. So at most the gradients of the segments
the backward is in the middle of exist at once, not the model's: for GPT-2-small on the CPU the
peak falls by about one model copy (docs/performance.md, section 15).

Why updating during the backward is sound: a parameter's gradient is complete once every node
of the graph that used the parameter has run, and those are the only nodes that saved it, so
nothing left in the backward reads the segment's old values. A model that reads a parameter
outside autograd's view of it (a detached view used as a saved input of another node) would
trip autograd's in-place check; `updates_in_backward` finds that on a trial batch before sampling and
the chain then takes the plain step.

The numbers are those of the plain step: each segment's noise has a stream of its own
(devinterp_ui.noise) and the kernel adds the metrics and the thermostat's energy up in segment
order (`kernel.Update`), so the order the backward reaches the segments in does not matter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from devinterp_ui.segments import SegmentLayout

SegmentUpdate = Callable[[int, torch.Tensor], None]
"""`update(k, grad)`: apply segment `k`'s update from its flat gradient."""


def segment_ranges(layout: SegmentLayout) -> list[range]:
    """Per segment, the indices of its parameters among the sampled ones (`layout.sampled`
    order: the segments are consecutive runs of it)."""
    out, start = [], 0
    for seg in layout.segments:
        out.append(range(start, start + len(seg.names)))
        start += len(seg.names)
    return out


def backward_updating(
    loss: torch.Tensor,
    params: list[torch.Tensor],
    layout: SegmentLayout,
    update: SegmentUpdate,
) -> None:
    """`loss.backward()` that calls `update(k, flat gradient)` for each segment k as soon as
    its parameters' gradients are complete, and frees them; segments the backward never
    reaches (parameters the loss does not depend on) are updated afterwards from a zero
    gradient, in segment order. `params`: the sampled parameters in `layout.sampled` order,
    with no `.grad`."""
    ranges = segment_ranges(layout)
    segment = [k for k, r in enumerate(ranges) for _ in r]
    waiting: list[dict[int, torch.Tensor]] = [{} for _ in ranges]
    done = [False] * len(ranges)

    def complete(k: int) -> None:
        parts = [waiting[k].pop(i) for i in ranges[k]]
        flat = (
            parts[0].reshape(-1) if len(parts) == 1 else torch.cat([g.reshape(-1) for g in parts])
        )
        del parts
        done[k] = True
        update(k, flat)

    def hook_for(i: int):
        def hook(p: torch.Tensor) -> None:
            k = segment[i]
            waiting[k][i] = p.grad
            p.grad = None
            if len(waiting[k]) == len(ranges[k]):
                complete(k)

        return hook

    handles = [p.register_post_accumulate_grad_hook(hook_for(i)) for i, p in enumerate(params)]
    try:
        loss.backward(inputs=params)
    finally:
        for h in handles:
            h.remove()
    for k, r in enumerate(ranges):
        if not done[k]:
            for i in r:
                if i not in waiting[k]:
                    waiting[k][i] = torch.zeros_like(params[i])
            complete(k)


def updates_in_backward(
    model: torch.nn.Module,
    params: list[torch.Tensor],
    layout: SegmentLayout,
    trial_loss: Callable[[], torch.Tensor],
) -> bool:
    """Whether this model's segments can be updated inside its backward: one backward of
    `trial_loss()` (a small batch) in which each segment's parameters are marked as modified in
    place (multiplied by 1, which leaves every value as it was) when the segment's gradient
    completes. Autograd raises if anything still reads a modified parameter (or a view of it,
    such as a detached one); then (or on any other failure of the trial) the answer is no.
    The model's buffers and the random state are restored, so the trial leaves no trace.

    The parameters themselves are marked, not the segments they are views of: a parameter
    whose data was set to a view of a segment keeps a version counter of its own, so only a
    change made through the parameter is seen by autograd's check."""
    buffers = [b.detach().clone() for b in model.buffers()]
    # The accelerator's generator is forked too (dropout on cuda/mps draws from it).
    accel = sorted({p.device for p in params if p.device.type != "cpu"}, key=str)
    kind = accel[0].type if accel else "cuda"
    devices = [d.index or 0 for d in accel if d.type == kind]
    ranges = segment_ranges(layout)
    ok = True
    with torch.random.fork_rng(devices=devices, device_type=kind):
        try:
            loss = trial_loss()

            def touch(k: int, grad: torch.Tensor) -> None:
                with torch.no_grad():
                    for i in ranges[k]:
                        params[i].mul_(1.0)

            backward_updating(loss, params, layout, touch)
        except Exception:  # noqa: BLE001 - any failure of the trial means: use the plain step
            ok = False
    with torch.no_grad():
        for b, saved in zip(model.buffers(), buffers, strict=True):
            b.copy_(saved)
    for p in params:
        p.grad = None
    return ok
