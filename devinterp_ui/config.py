"""The sampler's settings, declared once as a `param.Parameterized`.

`SamplerConfig` declares every setting of `sample()` with its default, bounds and a one-line
doc. That declaration is the only source of:
- validation: `setting_errors(values)` gives {setting name: message} for a dict of values, and
  `validate_settings(values)` raises the first one (TypeError for a wrong type, ValueError for a
  value out of range) and returns the config. `sample()`, `SamplingJob` and the dashboard's form
  all call these, so the message next to a form field is the message the API raises;
- the dashboard's widgets (`devinterp_ui.ui.form` reads each parameter's type, bounds and doc).

`param` is UI-free (Panel builds on it; the core still imports no UI library).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import param

# The update rules `sample()` knows, each with its own arguments and their defaults
# (devinterp 2.x names: RMSprop-SGLD's eps/alpha, SGNHT's diffusion_factor). A new method is
# a new row here plus its update rule in sgld.py.
METHOD_KWARGS: dict[str, dict[str, float]] = {
    "sgmcmc_sgld": {},
    "rmsprop_sgld": {"eps": 0.1, "alpha": 0.99},
    "sgnht": {"diffusion_factor": 0.01},
}
SAMPLING_METHODS = tuple(METHOD_KWARGS)
RMSPROP_DEFAULTS = METHOD_KWARGS["rmsprop_sgld"]

# The range torch.Generator.manual_seed accepts; chain c seeds with init_seed + c.
SEED_BOUNDS = (-(2**63), 2**64 - 1)
# More chains than this is a typo, not a run (each chain holds a model copy).
MAX_CHAINS = 4096

# Settings without a default value: sample() requires them.
REQUIRED = ("lr", "n_beta")
# Examples used in error messages ("pass e.g. lr=0.0001").
EXAMPLES: dict[str, Any] = {
    "lr": 1e-4,
    "n_beta": 30.0,
    "bounding_box_size": 1.0,
    "rmsprop_eps": 0.1,
    "rmsprop_alpha": 0.99,
    "init_noise": 0.01,
}


# Every setting is `constant`: set when the config is built (and validated), never after.
def _positive(default, doc, **kw):
    return param.Number(
        default, bounds=(0, None), inclusive_bounds=(False, True), doc=doc, constant=True, **kw
    )


def _nonnegative(default, doc, **kw):
    return param.Number(default, bounds=(0, None), doc=doc, constant=True, **kw)


def _count(default, doc, low=1, high=None):
    return param.Integer(default, bounds=(low, high), doc=doc, constant=True)


def _seed(default, doc):
    return param.Integer(default, bounds=SEED_BOUNDS, doc=doc, constant=True)


class SamplerConfig(param.Parameterized):
    """Every scalar setting of `sample()`, with devinterp 2.x names, defaults and meaning.

    Build it with `validate_settings(values)` (or `SamplerConfig(**values)`, which validates the
    same way): every value is checked against the declaration before param stores it.
    """

    lr = _positive(None, "SGLD step size epsilon.")
    n_beta = _positive(
        None, "Inverse temperature n*beta scaling the loss gradient; default_nbeta(n) = n / ln n."
    )
    num_chains = _count(4, "Independent SGLD chains.", high=MAX_CHAINS)
    num_draws = _count(200, "Draws recorded per chain.")
    batch_size = _count(32, "Rows per SGLD mini-batch.")
    num_burnin_steps = _count(0, "Steps before the first draw.", low=0)
    num_steps_bw_draws = _count(1, "SGLD steps per draw (thinning).")
    num_init_loss_batches = _count(32, "Batches averaged for the loss at the checkpoint.")
    init_seed = _seed(100, "Seed of chain 0; chain c uses init_seed + c.")
    batches_per_draw = _count(3, "Default observable size in batches (rows = batch_size x this).")
    obs_seed = _seed(1337, "Seed choosing the fixed observable rows.")
    gradient_accumulation_steps = _count(1, "Micro-batches of batch_size per SGLD step.")
    localization = _nonnegative(0.0, "Strength gamma of the pull back to the checkpoint.")
    noise_level = _nonnegative(1.0, "Noise multiplier; anything but 1 breaks posterior sampling.")
    llc_weight_decay = _nonnegative(0.0, "Weight decay lambda towards 0.")
    bounding_box_size = _positive(
        None, "Clamp each weight to within this of the checkpoint.", allow_None=True
    )
    sampling_method = param.Selector(
        default="sgmcmc_sgld", objects=list(SAMPLING_METHODS), doc="Update rule.", constant=True
    )
    sampling_method_kwargs = param.Dict(
        default=None,
        allow_None=True,
        constant=True,
        doc="Extra arguments of the update rule (rmsprop_sgld: eps, alpha; sgnht: "
        "diffusion_factor).",
    )
    rmsprop_eps = _positive(
        None, "Alias of sampling_method_kwargs['eps'] (rmsprop_sgld only).", allow_None=True
    )
    rmsprop_alpha = param.Number(
        None,
        bounds=(0, 1),
        inclusive_bounds=(True, False),
        allow_None=True,
        constant=True,
        doc="Alias of sampling_method_kwargs['alpha'] (rmsprop_sgld only).",
    )
    shuffle = param.Boolean(True, doc="Shuffle the sampling data each epoch.", constant=True)
    match_sampling_input_ids_across_chains = param.Boolean(
        True, doc="Every chain sees the same batch order.", constant=True
    )
    init_noise = _nonnegative(
        None, "Std of Gaussian noise added to sampled weights at the start.", allow_None=True
    )
    save_metrics = param.Boolean(False, doc="Record SGLD diagnostics per step.", constant=True)
    model_mode = param.Selector(
        default="train",
        objects=["train", "eval"],
        constant=True,
        doc="Mode the model computes the init loss and samples in: 'train' calls model.train() "
        "as devinterp 2.x does (dropout active, batch norm on batch statistics); 'eval' calls "
        "model.eval().",
    )

    def __init__(self, **values):
        raise_first(_problems(values))
        super().__init__(**_plain(values))
        # Settings are constant once validated, so the step schedule the runner asks about at
        # every chain step is kept as plain ints (a param attribute read costs microseconds).
        self._schedule = (self.num_burnin_steps, self.num_steps_bw_draws, self.num_draws)

    # --- derived ----------------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        """SGLD steps per chain, burn-in included."""
        burnin, thin, draws = self._schedule
        return burnin + draws * thin

    def is_draw(self, step: int) -> bool:
        burnin, thin, _ = self._schedule
        s = step - burnin
        return s >= 0 and s % thin == 0

    def draw_index(self, step: int) -> int:
        burnin, thin, _ = self._schedule
        return (step - burnin) // thin

    def method_kwargs(self) -> dict[str, float]:
        """The update rule's own arguments: its defaults (METHOD_KWARGS), then
        sampling_method_kwargs, then the rmsprop aliases."""
        return _method_kwargs(self.values())

    def values(self) -> dict[str, Any]:
        """{setting name: value} for every setting."""
        return {name: getattr(self, name) for name in SETTING_NAMES}

    def to_json(self) -> dict[str, Any]:
        """Every setting, JSON-safe, as stored in the root attribute `metadata`."""
        out = self.values()
        out["sampling_method_kwargs"] = self.method_kwargs() or None
        return out

    def validate(self) -> None:
        """Raise as `validate_settings` would (a config built here is valid already)."""
        raise_first(_problems(self.values()))

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


SETTING_NAMES: tuple[str, ...] = tuple(n for n in SamplerConfig.param if n != "name")


def _kind(p: param.Parameter) -> str:
    """The declaration's type, as the form and messages need it."""
    if isinstance(p, param.Boolean):
        return "bool"
    if isinstance(p, param.Integer):
        return "seed" if p.bounds == SEED_BOUNDS else "int"
    if isinstance(p, param.Number):
        return "optional_float" if p.allow_None and p.name not in REQUIRED else "float"
    if isinstance(p, param.Selector):
        return "choice"
    return "object"


def declaration(name: str) -> param.Parameter:
    """The param declaration of one setting (type, default, bounds, doc)."""
    return SamplerConfig.param[name]


SETTINGS: dict[str, dict[str, Any]] = {
    name: {
        "default": declaration(name).default,
        "doc": declaration(name).doc,
        "kind": _kind(declaration(name)),
    }
    for name in SETTING_NAMES
}
"""name -> {"default", "doc", "kind"}: a read-only view of the declaration for callers that
want plain data (the dashboard's settings export, the API's list of names)."""

# Each method argument declared like a setting, so its value is checked the same way.
_KWARG_DECLARATIONS = {
    "eps": declaration("rmsprop_eps"),
    "alpha": declaration("rmsprop_alpha"),
    "diffusion_factor": param.Number(
        0.01, bounds=(0, None), inclusive_bounds=(False, True), doc="SGNHT diffusion factor A."
    ),
}


# --- validation -------------------------------------------------------------------------------


def setting_errors(values: Mapping[str, Any]) -> dict[str, str]:
    """{setting name: message} for every bad value in `values` (a partial dict: missing
    settings take their defaults; unknown names are reported under their own name).

    Checks each value against its declaration, then the rules between settings (method
    arguments, aliases, seed range over chains), the latter only when every value is valid
    on its own. Empty when the settings are valid. The form shows each message under its field.
    """
    return {name: message for name, (_exc, message) in _problems(values).items()}


def validate_settings(values: Mapping[str, Any]) -> SamplerConfig:
    """The `SamplerConfig` of `values`, or the first problem raised: TypeError for a value of
    the wrong type or an unknown name, ValueError for a value out of range."""
    return SamplerConfig(**dict(values))


def raise_first(problems: dict[str, tuple[type[Exception], str]]) -> None:
    for exc, message in problems.values():
        raise exc(message)


def _problems(values: Mapping[str, Any]) -> dict[str, tuple[type[Exception], str]]:
    out: dict[str, tuple[type[Exception], str]] = {}
    for name in values:
        if name not in SETTINGS:
            out[name] = (
                TypeError,
                f"{name!r} is not a sampler setting; settings are: {', '.join(SETTING_NAMES)}.",
            )
    full = {name: values.get(name, SETTINGS[name]["default"]) for name in SETTING_NAMES}
    for name in SETTING_NAMES:
        problem = _field_problem(name, full[name])
        if problem:
            out[name] = problem
    if not out:
        out.update(_cross_field_problems(full))
    return out


def _field_problem(name: str, value: Any) -> tuple[type[Exception], str] | None:
    p = declaration(name)
    kind = _kind(p)
    if value is None:
        if name in REQUIRED:
            return ValueError, f"{name} is required: pass {name}=<number {_bounds(p)}>."
        if p.allow_None:
            return None
        if isinstance(p, param.Number):
            example = EXAMPLES.get(name, p.default)
            return TypeError, (
                f"{name} has no value (None); it takes a number {_bounds(p)}: pass e.g. "
                f"{name}={example}."
            )
    if kind in ("float", "optional_float"):
        return _number_problem(name, value, p, integer=False)
    if kind in ("int", "seed"):
        return _number_problem(name, value, p, integer=True)
    if kind == "bool":
        if not isinstance(value, (bool, _np_bool())):
            return TypeError, f"{name} must be True or False (got {value!r})."
        return None
    if kind == "choice":
        if value not in p.objects:
            return ValueError, f"{name} must be one of {list(p.objects)} (got {value!r})."
        return None
    if name == "sampling_method_kwargs" and not isinstance(value, Mapping):
        return TypeError, (
            f"sampling_method_kwargs must be a dict or None (got {type(value).__name__}); "
            'pass e.g. sampling_method_kwargs={"eps": 0.1, "alpha": 0.99}.'
        )
    return None


def _number_problem(name, value, p, *, integer: bool) -> tuple[type[Exception], str] | None:
    bounds = _bounds(p)
    what = "an integer" if integer else "a finite number"
    example = EXAMPLES.get(name, p.default if p.default is not None else 1)
    fix = f"pass e.g. {name}={example}"
    if isinstance(value, str):
        return TypeError, (f"{name} must be {what} {bounds} ({value!r} is not a number): {fix}.")
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real)
    if isinstance(value, (bool, _np_bool())) or not ok_type:
        return TypeError, f"{name} must be {what} {bounds} (got {value!r}): {fix}."
    if not integer and not math.isfinite(float(value)):
        return ValueError, f"{name} must be {what} {bounds} (got {value!r}): {fix}."
    if not _within(int(value) if integer else float(value), p):
        what = "an integer " if integer else ""
        return ValueError, f"{name} must be {what}{bounds} (got {value!r}): {fix}."
    return None


def _cross_field_problems(v: dict[str, Any]) -> dict[str, tuple[type[Exception], str]]:
    """Rules that involve more than one setting, keyed by the setting the fix is about."""
    method = v["sampling_method"]
    kwargs = v["sampling_method_kwargs"] or {}
    for alias, key in (("rmsprop_eps", "eps"), ("rmsprop_alpha", "alpha")):
        if v[alias] is None:
            continue
        if method != "rmsprop_sgld":
            return {
                alias: (
                    ValueError,
                    f"{alias} only applies to sampling_method='rmsprop_sgld' (got "
                    f"sampling_method={method!r}); drop {alias} or switch the sampling method.",
                )
            }
        if key in kwargs:
            return {
                alias: (
                    ValueError,
                    f"{alias} and sampling_method_kwargs[{key!r}] both set the same value; "
                    "set only one of them.",
                )
            }
    allowed = METHOD_KWARGS[method]
    unknown = sorted(set(kwargs) - set(allowed), key=str)
    if unknown:
        return {
            "sampling_method_kwargs": (
                ValueError,
                f"sampling_method_kwargs has {unknown} which {method} does not take; allowed "
                f"keys: {sorted(allowed) or 'none'}.",
            )
        }
    for key, value in kwargs.items():
        p = _KWARG_DECLARATIONS[key]
        bad = isinstance(value, bool) or not isinstance(value, numbers.Real)
        if bad or not math.isfinite(float(value)) or not _within(float(value), p):
            return {
                "sampling_method_kwargs": (
                    ValueError,
                    f"sampling_method_kwargs[{key!r}] must be a finite number {_bounds(p)} "
                    f"(got {value!r}); {method}'s default is {allowed[key]}.",
                )
            }
    last_seed = v["init_seed"] + v["num_chains"] - 1
    if last_seed > SEED_BOUNDS[1]:
        return {
            "init_seed": (
                ValueError,
                f"init_seed + num_chains - 1 = {last_seed} is beyond the largest seed a torch "
                f"generator takes ({SEED_BOUNDS[1]}); pass a smaller init_seed.",
            )
        }
    return {}


def _method_kwargs(v: Mapping[str, Any]) -> dict[str, float]:
    kwargs = dict(METHOD_KWARGS[v["sampling_method"]])
    kwargs.update({k: float(x) for k, x in (v["sampling_method_kwargs"] or {}).items()})
    if v["sampling_method"] == "rmsprop_sgld":
        if v["rmsprop_eps"] is not None:
            kwargs["eps"] = float(v["rmsprop_eps"])
        if v["rmsprop_alpha"] is not None:
            kwargs["alpha"] = float(v["rmsprop_alpha"])
    return kwargs


def _within(value: float, p: param.Parameter) -> bool:
    low, high = p.bounds or (None, None)
    inc_low, inc_high = getattr(p, "inclusive_bounds", (True, True))
    if low is not None and (value < low or (value == low and not inc_low)):
        return False
    return not (high is not None and (value > high or (value == high and not inc_high)))


def _bounds(p: param.Parameter) -> str:
    """The declaration's bounds in words: '> 0', '>= 1 and <= 4096', 'in [0, 1)'."""
    low, high = p.bounds or (None, None)
    inc_low, inc_high = getattr(p, "inclusive_bounds", (True, True))
    if p.bounds == SEED_BOUNDS:
        return "a torch generator takes (-2**63 to 2**64 - 1)"
    if low is not None and high is not None and not inc_high:
        return f"in {'[' if inc_low else '('}{low}, {high})"
    parts = []
    if low is not None:
        parts.append(f"{'>=' if inc_low else '>'} {low}")
    if high is not None:
        parts.append(f"{'<=' if inc_high else '<'} {high}")
    return " and ".join(parts)


def _np_bool():
    import numpy as np

    return np.bool_


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values as the Python types param stores (numpy scalars become int/float/bool)."""
    out = {}
    for name, value in values.items():
        kind = SETTINGS[name]["kind"]
        if value is None:
            out[name] = None
        elif kind in ("int", "seed"):
            out[name] = int(value)
        elif kind in ("float", "optional_float"):
            out[name] = float(value)
        elif kind == "bool":
            out[name] = bool(value)
        elif name == "sampling_method_kwargs":
            out[name] = dict(value)
        else:
            out[name] = value
    return out
