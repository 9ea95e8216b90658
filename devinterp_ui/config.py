"""The sampler's settings, declared once.

`SamplerConfig` lists every setting of `sample()` with its default, bounds and a one-line doc.
The same declaration drives validation here and the dashboard's form later, so the message a
user sees next to a form field is the message the API raises.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

SAMPLING_METHODS = ("sgmcmc_sgld", "rmsprop_sgld", "sgnht")
RMSPROP_DEFAULTS = {"eps": 0.1, "alpha": 0.99}
SGNHT_DEFAULTS = {"diffusion_factor": 0.01}


def setting(default: Any, doc: str, *, kind: str, group: str = "advanced", **bounds: Any):
    """A dataclass field carrying what validation and widgets need.

    kind: "float", "int", "bool", "choice", "seed", "optional_float" or "object".
    bounds: `gt`, `ge`, `lt`, `le` for numbers, `choices` for "choice".
    """
    return field(default=default, metadata={"doc": doc, "kind": kind, "group": group, **bounds})


@dataclass
class SamplerConfig:
    """Every scalar setting of `sample()`, with devinterp 2.x names, defaults and meaning."""

    lr: float = setting(None, "SGLD step size epsilon.", kind="float", group="basic", gt=0)
    n_beta: float = setting(
        None,
        "Inverse temperature n*beta scaling the loss gradient; default_nbeta(n) = n / ln n.",
        kind="float",
        group="basic",
        gt=0,
    )
    num_chains: int = setting(4, "Independent SGLD chains.", kind="int", group="basic", ge=1)
    num_draws: int = setting(200, "Draws recorded per chain.", kind="int", group="basic", ge=1)
    batch_size: int = setting(32, "Rows per SGLD mini-batch.", kind="int", group="basic", ge=1)
    num_burnin_steps: int = setting(
        0, "Steps before the first draw.", kind="int", group="basic", ge=0
    )
    num_steps_bw_draws: int = setting(
        1, "SGLD steps per draw (thinning).", kind="int", group="basic", ge=1
    )
    num_init_loss_batches: int = setting(
        32, "Batches averaged for the loss at the checkpoint.", kind="int", ge=1
    )
    init_seed: int = setting(100, "Seed of chain 0; chain c uses init_seed + c.", kind="seed")
    batches_per_draw: int = setting(
        3, "Default observable size in batches (rows = batch_size x this).", kind="int", ge=1
    )
    obs_seed: int = setting(1337, "Seed choosing the fixed observable rows.", kind="seed")
    gradient_accumulation_steps: int = setting(
        1, "Micro-batches of batch_size per SGLD step.", kind="int", ge=1
    )
    localization: float = setting(
        0.0,
        "Strength gamma of the pull back to the checkpoint.",
        kind="float",
        group="basic",
        ge=0,
    )
    noise_level: float = setting(
        1.0, "Noise multiplier; anything but 1 breaks posterior sampling.", kind="float", ge=0
    )
    llc_weight_decay: float = setting(0.0, "Weight decay lambda towards 0.", kind="float", ge=0)
    bounding_box_size: float | None = setting(
        None, "Clamp each weight to within this of the checkpoint.", kind="optional_float", gt=0
    )
    sampling_method: str = setting(
        "sgmcmc_sgld",
        "Update rule.",
        kind="choice",
        group="basic",
        choices=SAMPLING_METHODS,
    )
    sampling_method_kwargs: dict | None = setting(
        None, "Extra arguments of the update rule (rmsprop_sgld: eps, alpha).", kind="object"
    )
    rmsprop_eps: float | None = setting(
        None,
        "Alias of sampling_method_kwargs['eps'] (rmsprop_sgld only).",
        kind="optional_float",
        gt=0,
    )
    rmsprop_alpha: float | None = setting(
        None,
        "Alias of sampling_method_kwargs['alpha'] (rmsprop_sgld only).",
        kind="optional_float",
        ge=0,
        lt=1,
    )
    shuffle: bool = setting(True, "Shuffle the sampling data each epoch.", kind="bool")
    match_sampling_input_ids_across_chains: bool = setting(
        True, "Every chain sees the same batch order.", kind="bool"
    )
    init_noise: float | None = setting(
        None,
        "Std of Gaussian noise added to sampled weights at the start.",
        kind="optional_float",
        ge=0,
    )
    save_metrics: bool = setting(False, "Record SGLD diagnostics per step.", kind="bool")

    # --- derived ----------------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        """SGLD steps per chain, burn-in included."""
        return self.num_burnin_steps + self.num_draws * self.num_steps_bw_draws

    def is_draw(self, step: int) -> bool:
        s = step - self.num_burnin_steps
        return s >= 0 and s % self.num_steps_bw_draws == 0

    def draw_index(self, step: int) -> int:
        return (step - self.num_burnin_steps) // self.num_steps_bw_draws

    def method_kwargs(self) -> dict[str, float]:
        """The update rule's own arguments, aliases resolved and defaults filled in."""
        if self.sampling_method == "sgnht":
            return {**SGNHT_DEFAULTS, **(self.sampling_method_kwargs or {})}
        if self.sampling_method != "rmsprop_sgld":
            return {}
        kwargs = dict(RMSPROP_DEFAULTS)
        kwargs.update(self.sampling_method_kwargs or {})
        if self.rmsprop_eps is not None:
            kwargs["eps"] = float(self.rmsprop_eps)
        if self.rmsprop_alpha is not None:
            kwargs["alpha"] = float(self.rmsprop_alpha)
        return kwargs

    def to_json(self) -> dict[str, Any]:
        """Every field, JSON-safe, as stored in the root attribute `metadata`."""
        out = dataclasses.asdict(self)
        out["sampling_method_kwargs"] = self.method_kwargs() or None
        return out

    # --- validation -------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise `ValueError`/`TypeError` naming the first bad setting and the fix."""
        for f in dataclasses.fields(self):
            message = field_error(f.name, getattr(self, f.name))
            if message:
                raise _error_type(f.name, getattr(self, f.name))(message)
        message = self.cross_field_error()
        if message:
            raise ValueError(message)

    def cross_field_error(self) -> str | None:
        """Errors that involve more than one field."""
        kwargs = self.sampling_method_kwargs or {}
        if not isinstance(kwargs, dict):
            return (
                f"sampling_method_kwargs must be a dict or None (got {type(kwargs).__name__}); "
                'pass e.g. sampling_method_kwargs={"eps": 0.1, "alpha": 0.99}.'
            )
        for alias, key in (("rmsprop_eps", "eps"), ("rmsprop_alpha", "alpha")):
            if getattr(self, alias) is None:
                continue
            if self.sampling_method != "rmsprop_sgld":
                return (
                    f"{alias} only applies to sampling_method='rmsprop_sgld' "
                    f"(got sampling_method={self.sampling_method!r}); drop {alias} or switch "
                    "the sampling method."
                )
            if key in kwargs:
                return (
                    f"{alias} and sampling_method_kwargs[{key!r}] both set the same value; "
                    "set only one of them."
                )
        allowed = {"rmsprop_sgld": set(RMSPROP_DEFAULTS), "sgnht": set(SGNHT_DEFAULTS)}.get(
            self.sampling_method, set()
        )
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            return (
                f"sampling_method_kwargs has {unknown} which {self.sampling_method} does not "
                f"take; allowed keys: {sorted(allowed) or 'none'}."
            )
        if "eps" in kwargs and not _is_real(kwargs["eps"], gt=0):
            return f"sampling_method_kwargs['eps'] must be a finite number > 0 (got {kwargs['eps']!r})."
        factor = kwargs.get("diffusion_factor")
        if factor is not None and not _is_real(factor, gt=0):
            return f"sampling_method_kwargs['diffusion_factor'] must be a finite number > 0 (got {factor!r})."
        if "alpha" in kwargs and not _is_real(kwargs["alpha"], ge=0, lt=1):
            return f"sampling_method_kwargs['alpha'] must be in [0, 1) (got {kwargs['alpha']!r})."
        return None

    def warn_unusual(self) -> None:
        """Warn about settings that are legal but rarely what a user means."""
        if self.noise_level != 1.0:
            warnings.warn(
                f"noise_level={self.noise_level} != 1: the chains no longer sample the tempered "
                "posterior, so the LLC estimate is biased. Use 1.0 unless you are debugging.",
                UserWarning,
                stacklevel=3,
            )
        if self.n_beta == 1.0:
            warnings.warn(
                "n_beta=1 samples the posterior at temperature 1 of the *mean* loss, which is "
                "almost never intended; use default_nbeta(n) = n / ln n for n training samples.",
                UserWarning,
                stacklevel=3,
            )


def _is_real(value: Any, **bounds: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    value = float(value)
    if not math.isfinite(value):
        return False
    return _within(value, bounds)


def _within(value: float, bounds: dict[str, Any]) -> bool:
    checks = {
        "gt": lambda b: value > b,
        "ge": lambda b: value >= b,
        "lt": lambda b: value < b,
        "le": lambda b: value <= b,
    }
    return all(checks[k](b) for k, b in bounds.items() if k in checks)


def _describe_bounds(meta: dict[str, Any]) -> str:
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " and ".join(f"{symbols[k]} {meta[k]}" for k in symbols if k in meta)


def _error_type(name: str, value: Any) -> type[Exception]:
    kind = SETTINGS[name]["kind"]
    if kind in ("float", "optional_float") and value is not None:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return ValueError if ok else TypeError
    if kind in ("int", "seed"):
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return ValueError if ok else TypeError
    if kind == "bool":
        return TypeError
    return ValueError


def field_error(name: str, value: Any) -> str | None:
    """The message for one setting's value, or None when it is valid on its own.

    The dashboard shows exactly this text next to the field.
    """
    meta = SETTINGS[name]
    kind = meta["kind"]
    bounds = _describe_bounds(meta)
    if kind in ("float", "optional_float"):
        if value is None:
            if kind == "optional_float":
                return None
            return f"{name} is required: pass {name}=<number {bounds}>."
        if not _is_real(value):
            return f"{name} must be a finite number {bounds} (got {value!r}): pass e.g. {name}={_example(name)}."
        if not _within(float(value), meta):
            return f"{name} must be {bounds} (got {value!r}): pass e.g. {name}={_example(name)}."
        return None
    if kind in ("int", "seed"):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"{name} must be an integer{' ' + bounds if bounds else ''} (got {value!r}): pass e.g. {name}={_example(name)}."
        if not _within(int(value), meta):
            return f"{name} must be an integer {bounds} (got {value!r}): pass e.g. {name}={_example(name)}."
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            return f"{name} must be True or False (got {value!r})."
        return None
    if kind == "choice":
        if value not in meta["choices"]:
            return f"{name} must be one of {list(meta['choices'])} (got {value!r})."
        return None
    return None


def _example(name: str) -> Any:
    examples = {
        "lr": 1e-4,
        "n_beta": 30.0,
        "bounding_box_size": 1.0,
        "rmsprop_eps": 0.1,
        "rmsprop_alpha": 0.99,
        "init_noise": 0.01,
    }
    meta = SETTINGS[name]
    if name in examples:
        return examples[name]
    default = meta["default"]
    return default if default is not None else 1


SETTINGS: dict[str, dict[str, Any]] = {
    f.name: {**f.metadata, "default": f.default} for f in dataclasses.fields(SamplerConfig)
}
"""name -> {"doc", "kind", "group", bounds..., "default"}: the declaration widgets are built from."""
