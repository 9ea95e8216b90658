"""The sampler settings are declared once (a param.Parameterized): its bounds, defaults and docs
are the validation, and sample(), SamplingJob and the form share one validation function."""

import param
import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui import SamplingJob, sample
from devinterp_ui.config import (
    METHOD_KWARGS,
    SETTING_NAMES,
    SETTINGS,
    SamplerConfig,
    declaration,
    setting_errors,
    validate_settings,
)

REQUIRED = {"lr": 1e-3, "n_beta": 10.0}


def test_every_setting_is_a_documented_parameter_of_the_config():
    for name in SETTING_NAMES:
        p = declaration(name)
        assert isinstance(p, param.Parameter) and p.doc
        assert SETTINGS[name]["default"] == p.default
    assert SamplerConfig(**REQUIRED).num_draws == declaration("num_draws").default == 200


def numeric_bounds():
    for name in SETTING_NAMES:
        p = declaration(name)
        if isinstance(p, param.Number) and p.bounds:
            low, high = p.bounds
            inc_low, inc_high = p.inclusive_bounds
            if low is not None:
                yield name, (low if not inc_low else low - 1), low
            if high is not None:
                yield name, (high if not inc_high else high + 1), high


@pytest.mark.parametrize(("name", "outside", "bound"), list(numeric_bounds()))
def test_a_value_just_outside_the_declared_bounds_is_refused_naming_them(name, outside, bound):
    errors = setting_errors({**REQUIRED, name: outside})
    assert name in errors
    assert errors[name].startswith(f"{name} must be")
    if name not in ("init_seed", "obs_seed"):
        assert str(bound) in errors[name]


def test_all_field_errors_are_reported_at_once():
    errors = setting_errors({"lr": -1.0, "num_chains": 0, "shuffle": "yes"})
    assert set(errors) == {"lr", "n_beta", "num_chains", "shuffle"}
    assert errors["n_beta"].startswith("n_beta is required")


def test_unknown_setting_names_are_refused():
    with pytest.raises(TypeError, match=r"'num_chain' is not a sampler setting"):
        validate_settings({**REQUIRED, "num_chain": 2})


def test_wrong_types_raise_type_errors_and_out_of_range_values_value_errors():
    with pytest.raises(TypeError, match="lr must be a finite number > 0"):
        validate_settings({**REQUIRED, "lr": "abc"})
    with pytest.raises(ValueError, match="lr must be > 0"):
        validate_settings({**REQUIRED, "lr": -1})


@pytest.mark.parametrize("method", list(METHOD_KWARGS))
def test_each_method_takes_its_own_kwargs_with_their_defaults(method):
    config = validate_settings({**REQUIRED, "sampling_method": method})
    assert config.method_kwargs() == METHOD_KWARGS[method]


def test_sgnht_takes_a_diffusion_factor_and_nothing_else():
    config = validate_settings(
        {
            **REQUIRED,
            "sampling_method": "sgnht",
            "sampling_method_kwargs": {"diffusion_factor": 0.1},
        }
    )
    assert config.method_kwargs() == {"diffusion_factor": 0.1}
    assert config.to_json()["sampling_method_kwargs"] == {"diffusion_factor": 0.1}
    errors = setting_errors(
        {**REQUIRED, "sampling_method": "sgnht", "sampling_method_kwargs": {"eps": 0.1}}
    )
    assert "allowed keys: ['diffusion_factor']" in errors["sampling_method_kwargs"]
    errors = setting_errors(
        {**REQUIRED, "sampling_method": "sgnht", "sampling_method_kwargs": {"diffusion_factor": -1}}
    )
    assert "must be a finite number > 0" in errors["sampling_method_kwargs"]


def test_rmsprop_aliases_override_the_defaults():
    config = validate_settings({**REQUIRED, "sampling_method": "rmsprop_sgld", "rmsprop_eps": 0.5})
    assert config.method_kwargs() == {"eps": 0.5, "alpha": 0.99}


def test_model_mode_defaults_to_train():
    assert validate_settings(REQUIRED).model_mode == "train"


@pytest.mark.parametrize(
    "bad", [{"lr": 0.0}, {"num_draws": 2.5}, {"init_seed": 2**64}, {"model_mode": "x"}]
)
def test_sample_and_sampling_job_raise_the_same_message_as_setting_errors(bad):
    settings = {**REQUIRED, **bad}
    (expected,) = setting_errors(settings).values()
    data = torch.randint(0, 11, (16, 6))
    with pytest.raises((TypeError, ValueError)) as from_sample:
        sample(TinyLM(), data, {}, progress_bar=False, **settings)
    with pytest.raises((TypeError, ValueError)) as from_job:
        SamplingJob(TinyLM(), data, {}, **settings)
    assert str(from_sample.value) == str(from_job.value) == expected


def test_sample_signature_lists_every_setting_with_its_declared_default():
    import inspect

    params = inspect.signature(sample).parameters
    for name in SETTING_NAMES:
        expected = (
            inspect.Parameter.empty if name in ("lr", "n_beta") else SETTINGS[name]["default"]
        )
        assert params[name].default == expected, name
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
