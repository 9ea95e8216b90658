"""The sampled parameters packed into a few contiguous segments, so an SGLD step is a few kernels.

Updating parameter by parameter costs about ten tensor operations per parameter, and twice that
with metrics: on a GPU each is a kernel launch (hundreds per chain step for a small transformer,
where the launches, not the arithmetic, set the pace), on a CPU each is a Python round trip.
Instead, each chain's sampled parameters are moved into flat tensors ("segments") and the model's
parameters become views of them, so the update rule runs once per segment on one long vector.

A segment is a run of consecutive sampled parameters (in `sampled` order) with one dtype and
device, of at most `max_numel` entries (a larger parameter gets a segment of its own): the
temporaries of an update (drift, noise, metrics) stay bounded by a segment, not the model.
Each segment draws its noise from a stream of its own (devinterp_ui.noise), so the segments can
be updated in any order (inside the backward, devinterp_ui.backward_update); a segment larger
than 2^20 entries is drawn piece by piece as it is updated (`sgld.pieces`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

SEGMENT_NUMEL = 1 << 20
"""Entries per segment (4 MiB of float32): few launches per step, bounded temporaries."""


@dataclass(frozen=True)
class Segment:
    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    numels: tuple[int, ...]

    @property
    def numel(self) -> int:
        return sum(self.numels)


def segment_runs(tensors: list[torch.Tensor], max_numel: int | None = None) -> list[list[int]]:
    """Indices into `tensors` grouped into segments: runs of consecutive tensors of one dtype
    and device with at most `max_numel` entries together (a larger tensor alone). The public
    optimizers (devinterp_ui.optim) draw their noise over the same runs, so they consume a
    generator exactly as `sample()`'s chains do."""
    max_numel = max_numel or SEGMENT_NUMEL  # read at call time, so tests can make it small
    runs: list[list[int]] = []
    size = 0
    for i, t in enumerate(tensors):
        if runs:
            last = tensors[runs[-1][-1]]
            same_kind = (last.dtype, last.device) == (t.dtype, t.device)
            if same_kind and size + t.numel() <= max_numel:
                runs[-1].append(i)
                size += t.numel()
                continue
        runs.append([i])
        size = t.numel()
    return runs


class SegmentLayout:
    """How the parameters named in `sampled` of `model` (and of every copy of it) are packed."""

    def __init__(
        self,
        model: torch.nn.Module,
        sampled: dict[str, torch.Tensor | None],
        max_numel: int | None = None,
    ):
        named = dict(model.named_parameters())
        self.sampled = sampled
        self.segments: list[Segment] = []
        names = list(sampled)
        for run in segment_runs([named[n] for n in names], max_numel):
            self._close([names[i] for i in run], named)

    def _close(self, names: list[str], named: dict[str, torch.nn.Parameter]) -> None:
        params = [named[n] for n in names]
        self.segments.append(
            Segment(tuple(names), tuple(p.shape for p in params), tuple(p.numel() for p in params))
        )

    def pack(self, model: torch.nn.Module) -> list[torch.Tensor]:
        """Move `model`'s sampled parameters into one flat tensor per segment; return them.

        Values are unchanged; each parameter becomes a view of its segment, so updating a
        segment in place updates the model.
        """
        named = dict(model.named_parameters())
        flats = []
        with torch.no_grad():
            for seg in self.segments:
                flat = torch.cat([named[n].detach().reshape(-1) for n in seg.names])
                for name, view in zip(seg.names, self._views(seg, flat), strict=True):
                    named[name].data = view
                flats.append(flat)
        return flats

    def stack(self, model: torch.nn.Module, copies: int) -> tuple[list[torch.Tensor], dict]:
        """`copies` stacked copies of the sampled parameters: ([(copies, numel) per segment],
        {name: (copies, *shape) view of its segment}), for batched (vmap) chains."""
        named = dict(model.named_parameters())
        flats, views = [], {}
        with torch.no_grad():
            for seg in self.segments:
                flat = torch.cat([named[n].detach().reshape(1, -1) for n in seg.names], dim=1)
                flat = flat.repeat(copies, 1)
                start = 0
                for name, shape, numel in zip(seg.names, seg.shapes, seg.numels, strict=True):
                    views[name] = flat[:, start : start + numel].view(copies, *shape)
                    start += numel
                flats.append(flat)
        return flats, views

    def masks(self, like: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """Per segment: the 0/1 mask of sampled entries (dtype and device of `like[i]`), or
        None where every entry of the segment is sampled."""
        out = []
        for seg, flat in zip(self.segments, like, strict=True):
            masks = [self.sampled[n] for n in seg.names]
            if all(m is None for m in masks):
                out.append(None)
                continue
            parts = [
                torch.ones(numel, dtype=flat.dtype, device=flat.device)
                if m is None
                else m.reshape(-1).to(device=flat.device, dtype=flat.dtype)
                for m, numel in zip(masks, seg.numels, strict=True)
            ]
            out.append(torch.cat(parts))
        return out

    def flat_grads(self, grads: list, release: bool = False) -> Iterator[torch.Tensor]:
        """Per segment, the gradients (one per sampled parameter, in `sampled` order) as one
        flat tensor. A generator: each segment's copy exists only while its update runs.

        release: drop each gradient from the list `grads` as its segment is yielded, so that
        once the kernel has updated a segment its gradient is freed (where nothing else holds
        it) instead of living until the last segment is done: the step then never holds a whole
        model's gradients next to the update's temporaries.
        """
        start = 0
        for seg in self.segments:
            stop = start + len(seg.names)
            parts = grads[start:stop]
            if release:
                grads[start:stop] = [None] * len(parts)
            start = stop
            flat = (
                parts[0].reshape(-1)
                if len(parts) == 1
                else torch.cat([g.reshape(-1) for g in parts])
            )
            del parts
            yield flat
            del flat

    @staticmethod
    def _views(seg: Segment, flat: torch.Tensor) -> list[torch.Tensor]:
        return [
            part.view(shape)
            for part, shape in zip(flat.split(list(seg.numels)), seg.shapes, strict=True)
        ]
