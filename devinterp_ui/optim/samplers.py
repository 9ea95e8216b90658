"""`SGLD`, `RMSpropSGLD` and `SGNHT` as `torch.optim.Optimizer`s, for a user's own loop.

Each `step()` is one `devinterp_ui.kernel.step` per parameter group: the same update functions
`sample()`'s chains use, with the same terms (docs/sampling.md, Update rules). What `sample()`
adds around them (data order, init loss, observables, the store) stays outside. Per group:

- the checkpoint w0 is each parameter's value when the optimizer is made (localization and the
  bounding box refer to it);
- `masks`: one per parameter (same shape, bool or 0/1; None = every entry), as `param_masks`
  in `sample()`: only nonzero entries move;
- the noise is drawn once per segment of the parameters (consecutive parameters of one dtype
  and device, up to 2^20 entries, `devinterp_ui.segments.segment_runs`, numbered across the
  groups; a larger parameter piece by piece as it is updated), each segment from a stream of
  its own as a chain of `sample()` draws it (devinterp_ui.noise): segment 0 from `generator`
  (default: torch's global generator), segment k >= 1 from a generator the optimizer seeds
  from `generator.initial_seed()` and k. So with a fresh generator seeded `init_seed + c` and
  the same parameters, the trajectory is chain c's. The streams of segments k >= 1 belong to
  the optimizer and are not in its `state_dict`;
- SGNHT keeps one thermostat per group; its initial momentum is drawn when the optimizer is
  made;
- bf16/fp16 parameters are updated through float32 master weights (the kernel refreshes the
  parameter after every step): change such a parameter between steps through the optimizer's
  `load_master()` or the change is overwritten.

A parameter whose `.grad` is None counts as a zero gradient (the prior and noise terms still
move it), as in `sample()`.

Example::

    opt = SGLD(model.parameters(), lr=1e-4, n_beta=default_nbeta(len(data)), localization=100.0)
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import torch

from devinterp_ui import kernel
from devinterp_ui.noise import draw_from, segment_seed
from devinterp_ui.segments import segment_runs
from devinterp_ui.sgld import NoiseDraw, ParamSlot, SGLDHyper, make_slots
from devinterp_ui.sgnht import Thermostat, init_momentum

__all__ = ["SGLD", "SGNHT", "RMSpropSGLD"]


class _KernelOptimizer(torch.optim.Optimizer):
    METHOD = "sgmcmc_sgld"

    def __init__(
        self,
        params,
        lr: float,
        n_beta: float | None = None,
        *,
        nbeta: float | None = None,
        localization: float = 0.0,
        weight_decay: float = 0.0,
        noise_level: float = 1.0,
        bounding_box_size: float | None = None,
        masks=None,
        generator: torch.Generator | None = None,
        **method_kwargs,
    ):
        if n_beta is not None and nbeta is not None:
            raise ValueError("pass n_beta or its devinterp alias nbeta, not both.")
        n_beta = nbeta if n_beta is None else n_beta
        if n_beta is None:
            raise TypeError("n_beta is required: pass n_beta=default_nbeta(n) = n / ln n.")
        _check(lr=(lr, "gt"), n_beta=(n_beta, "gt"), localization=(localization, "ge"))
        _check(weight_decay=(weight_decay, "ge"), noise_level=(noise_level, "ge"))
        if bounding_box_size is not None:
            _check(bounding_box_size=(bounding_box_size, "gt"))
        if noise_level != 1.0:
            warnings.warn(
                f"noise_level={noise_level} != 1: the chain no longer samples the tempered "
                "posterior.",
                UserWarning,
                stacklevel=3,
            )
        defaults = dict(
            lr=lr,
            n_beta=n_beta,
            localization=localization,
            weight_decay=weight_decay,
            noise_level=noise_level,
            bounding_box_size=bounding_box_size,
            masks=masks,
            **method_kwargs,
        )
        self.generator = generator
        self._streams: dict[tuple[int, str], NoiseDraw] = {}
        super().__init__(params, defaults)
        first = 0
        for group in self.param_groups:
            self._init_group(group, first)
            first += self._segments(group)

    # --- state ---------------------------------------------------------------------------------

    def _init_group(self, group: dict, first: int) -> None:
        """The group's state at the checkpoint; `first`: the index of its first segment among
        all groups' (its noise streams, `_draw`)."""
        params = group["params"]
        masks = group["masks"]
        if masks is None:
            masks = [None] * len(params)
        masks = list(masks)
        if len(masks) != len(params):
            raise ValueError(
                f"masks has {len(masks)} entries for {len(params)} parameters; pass one mask "
                "(or None) per parameter, in order."
            )
        weights, _ = kernel.master_weights([p.detach() for p in params])
        for p, w, mask in zip(params, weights, masks, strict=True):
            if mask is not None and tuple(mask.shape) != tuple(p.shape):
                raise ValueError(
                    f"a mask of shape {tuple(mask.shape)} for a parameter of shape "
                    f"{tuple(p.shape)}; pass a mask of the parameter's shape."
                )
            state = self.state[p]
            state["w0"] = w.detach().clone()
            if kernel.is_low_precision(p.dtype):
                state["master"] = w
            if mask is not None:
                state["mask"] = mask.to(device=w.device, dtype=w.dtype)
        slots = self._slots(group)
        hp = self._hyper(group)
        for p, slot in zip(params, slots, strict=True):
            if slot.v is not None:
                self.state[p]["v"] = slot.v
        if self.METHOD == "sgnht" and params:
            thermostat = init_momentum(slots, self._noise(slots, first), hp)
            for p, slot in zip(params, slots, strict=True):
                self.state[p]["momentum"] = slot.p
            self.state[params[0]]["thermostat"] = thermostat

    def _slots(self, group: dict) -> list[ParamSlot]:
        params = group["params"]
        states = [self.state[p] for p in params]
        weights = [s.get("master", p.detach()) for p, s in zip(params, states, strict=True)]
        views = [p.detach() if "master" in s else None for p, s in zip(params, states, strict=True)]
        slots = make_slots(
            weights,
            [s["w0"] for s in states],
            [s.get("mask") for s in states],
            "sgmcmc_sgld",
            views,
        )
        for slot, s in zip(slots, states, strict=True):
            slot.v = s.get("v", torch.zeros_like(slot.w) if self.METHOD == "rmsprop_sgld" else None)
            slot.p = s.get("momentum")
        return slots

    def _hyper(self, group: dict) -> SGLDHyper:
        return SGLDHyper(
            lr=float(group["lr"]),
            n_beta=float(group["n_beta"]),
            localization=float(group["localization"]),
            llc_weight_decay=float(group["weight_decay"]),
            noise_level=float(group["noise_level"]),
            bounding_box_size=None
            if group["bounding_box_size"] is None
            else float(group["bounding_box_size"]),
            method=self.METHOD,
            **{k: float(group[k]) for k in ("eps", "alpha", "diffusion_factor") if k in group},
        )

    def _noise(self, slots: list[ParamSlot], first: int) -> Iterator[torch.Tensor | NoiseDraw]:
        """xi per slot, as sample() draws it: one draw per segment of several slots, split;
        a slot that is a segment alone gets its segment's `NoiseDraw`, which the kernel calls
        piece by piece (so a large parameter never has a full-size noise tensor). `first`:
        the index of the group's first segment among all groups' (their streams, `_draw`)."""
        runs = segment_runs([s.view if s.view is not None else s.w for s in slots])
        for k, run in enumerate(runs, start=first):
            ws = [slots[i].w for i in run]
            draw = self._draw(k, ws[0].device)
            if len(ws) == 1:
                yield draw
                continue
            flat = draw(ws[0].new_empty(sum(w.numel() for w in ws)))
            for w, part in zip(ws, flat.split([w.numel() for w in ws]), strict=True):
                yield part.view(w.shape)

    @staticmethod
    def _segments(group: dict) -> int:
        """How many segments (noise streams) the group's parameters make."""
        return len(segment_runs(list(group["params"]))) if group["params"] else 0

    def _draw(self, k: int, device: torch.device) -> NoiseDraw:
        """Segment k's stream (devinterp_ui.noise): `generator` itself (None: torch's default
        generator of the device) for k = 0; for k >= 1 a generator of its own, seeded from
        `generator`'s initial seed and k when first needed, as `sample()`'s chain seeded with
        that seed draws it."""
        if k == 0:
            return draw_from(self.generator)
        key = (k, str(device))
        if key not in self._streams:
            base = self.generator
            if base is None:
                base = (
                    torch.cuda.default_generators[device.index or 0]
                    if device.type == "cuda"
                    else torch.default_generator
                )
            gen = torch.Generator(device=device).manual_seed(segment_seed(base.initial_seed(), k))
            self._streams[key] = draw_from(gen)
        return self._streams[key]

    # --- the step ------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter from its `.grad`; returns closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        first = 0
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            slots = self._slots(group)
            grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach() for p in params]
            state = kernel.ChainState(slots, self.state[params[0]].get("thermostat"))
            kernel.step(state, grads, self._noise(slots, first), self._hyper(group))
            first += self._segments(group)
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        """As torch's, except that the sampler's state keeps its saved dtype (torch casts
        floating state to the parameter's dtype, which would round a bf16 parameter's float32
        master weights, checkpoint and momentum to bf16) and the thermostat is copied."""
        saved = {
            pid: {k: v for k, v in st.items() if isinstance(v, torch.Tensor | Thermostat)}
            for pid, st in state_dict["state"].items()
        }
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for pid, values in saved.items():
            p = params[pid]
            for key, v in values.items():
                if isinstance(v, Thermostat):
                    v = Thermostat(v.z.detach().clone().to(p.device), v.count)
                else:
                    v = v.detach().clone().to(p.device)
                self.state[p][key] = v

    def load_master(self) -> None:
        """Take the float32 master weights of bf16/fp16 parameters from the parameters' current
        values (after the user changed them between steps)."""
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if "master" in self.state[p]:
                        self.state[p]["master"].copy_(p.detach())


class SGLD(_KernelOptimizer):
    """w <- w - (lr/2) m (n_beta g + localization (w - w0) + weight_decay w)
    + m sqrt(lr) noise_level xi, then the bounding box (sample()'s "sgmcmc_sgld")."""

    METHOD = "sgmcmc_sgld"


class RMSpropSGLD(_KernelOptimizer):
    """SGLD preconditioned by G = 1 / (sqrt(V) + eps), V <- alpha V + (1 - alpha) g^2
    (sample()'s "rmsprop_sgld")."""

    METHOD = "rmsprop_sgld"

    def __init__(self, params, lr: float, n_beta=None, *, alpha=0.99, eps=0.1, **kwargs):
        _check(eps=(eps, "gt"))
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1) (got {alpha!r}).")
        super().__init__(params, lr, n_beta, alpha=alpha, eps=eps, **kwargs)


class SGNHT(_KernelOptimizer):
    """Stochastic gradient Nose-Hoover thermostat (devinterp_ui.sgnht; sample()'s "sgnht")."""

    METHOD = "sgnht"

    def __init__(self, params, lr: float, n_beta=None, *, diffusion_factor=0.01, **kwargs):
        _check(diffusion_factor=(diffusion_factor, "gt"))
        super().__init__(params, lr, n_beta, diffusion_factor=diffusion_factor, **kwargs)


def _check(**values) -> None:
    for name, (value, bound) in values.items():
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > 0 if bound == "gt" else value >= 0)
        )
        if not ok:
            sign = ">" if bound == "gt" else ">="
            raise ValueError(f"{name} must be a finite number {sign} 0 (got {value!r}).")
