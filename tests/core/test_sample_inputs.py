"""Bad input fails before any compute with a message naming the parameter and the fix;
every accepted data form works."""

import math

import numpy as np
import pytest
import torch
from tiny_models import TinyLM, WeightEcho, echo_loss

from devinterp_ui import sample
from devinterp_ui.losses import next_token_loss


class CountingLM(TinyLM):
    calls = 0

    def forward(self, ids):
        CountingLM.calls += 1
        return super().forward(ids)


def fails_before_compute(
    tmp_path, exc, match, model=None, data=None, observables=None, **overrides
):
    """Run sample() expecting `exc` matching `match`; assert no forward pass and no store."""
    CountingLM.calls = 0
    model = model if model is not None else CountingLM()
    data = data if data is not None else torch.randint(0, 11, (40, 6))
    settings = dict(
        lr=1e-3,
        n_beta=10.0,
        num_chains=2,
        num_draws=3,
        batch_size=4,
        progress_bar=False,
        output_path=tmp_path / "run.zarr",
    )
    settings.update(overrides)
    with pytest.raises(exc, match=match):
        sample(model, data, observables or {}, **settings)
    assert CountingLM.calls == 0
    assert not (tmp_path / "run.zarr").exists()


@pytest.mark.parametrize("name", ["lr", "n_beta"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_step_size_and_temperature_must_be_positive_and_finite(tmp_path, name, value):
    fails_before_compute(
        tmp_path, ValueError, rf"{name} must be .*> 0.*pass e\.g\. {name}=", **{name: value}
    )


@pytest.mark.parametrize(
    "name",
    [
        "num_chains",
        "num_draws",
        "batch_size",
        "num_steps_bw_draws",
        "gradient_accumulation_steps",
        "num_init_loss_batches",
        "batches_per_draw",
    ],
)
def test_counts_must_be_at_least_one(tmp_path, name):
    fails_before_compute(
        tmp_path,
        ValueError,
        rf"{name} must be an integer >= 1( and <= \d+)? \(got 0\)",
        **{name: 0},
    )


def test_counts_must_be_integers(tmp_path):
    fails_before_compute(tmp_path, TypeError, r"num_chains must be an integer", num_chains=2.5)


@pytest.mark.parametrize(
    "name", ["num_burnin_steps", "localization", "llc_weight_decay", "noise_level", "init_noise"]
)
def test_nonnegative_settings_reject_negatives(tmp_path, name):
    fails_before_compute(tmp_path, ValueError, rf"{name} must be .*>= 0", **{name: -1})


def test_bounding_box_must_be_positive(tmp_path):
    fails_before_compute(
        tmp_path, ValueError, r"bounding_box_size must be > 0", bounding_box_size=-0.1
    )


def test_batch_size_larger_than_dataset(tmp_path):
    fails_before_compute(
        tmp_path, ValueError, r"batch_size=64 is larger than the dataset \(40 rows\)", batch_size=64
    )


def test_sequences_shorter_than_two_tokens(tmp_path):
    fails_before_compute(
        tmp_path, ValueError, r"1 token\(s\).*at least 2", data=torch.zeros(40, 1, dtype=torch.long)
    )


def test_ragged_token_rows(tmp_path):
    rows = [{"input_ids": [1, 2, 3]}] * 10 + [{"input_ids": [1, 2]}] * 10
    fails_before_compute(
        tmp_path, ValueError, r"ragged token rows: row 0 has 3 tokens, row 10 has 2", data=rows
    )


def test_float_token_ids(tmp_path):
    fails_before_compute(
        tmp_path, TypeError, r"token ids must be integers", data=torch.zeros(40, 6)
    )


def test_unknown_sampling_method(tmp_path):
    fails_before_compute(
        tmp_path,
        ValueError,
        r"sampling_method must be one of \['sgmcmc_sgld', 'rmsprop_sgld', 'sgnht'\]",
        sampling_method="adam",
    )


def test_rmsprop_alias_with_other_method(tmp_path):
    fails_before_compute(
        tmp_path,
        ValueError,
        r"rmsprop_eps only applies to sampling_method='rmsprop_sgld'",
        rmsprop_eps=0.1,
    )


def test_rmsprop_setting_given_twice(tmp_path):
    fails_before_compute(
        tmp_path,
        ValueError,
        r"rmsprop_alpha and sampling_method_kwargs\['alpha'\] both",
        sampling_method="rmsprop_sgld",
        rmsprop_alpha=0.9,
        sampling_method_kwargs={"alpha": 0.9},
    )


def test_unknown_method_kwarg(tmp_path):
    fails_before_compute(
        tmp_path,
        ValueError,
        r"sampling_method_kwargs has \['beta'\]",
        sampling_method="rmsprop_sgld",
        sampling_method_kwargs={"beta": 1},
    )


def test_param_mask_key_not_a_parameter(tmp_path):
    fails_before_compute(
        tmp_path,
        ValueError,
        r"param_masks key 'head.wieght' is not a parameter.*similar",
        param_masks={"head.wieght": None},
    )


def test_param_mask_of_wrong_shape(tmp_path):
    fails_before_compute(
        tmp_path,
        ValueError,
        r"param_masks\['head.bias'\] has shape \(3,\) but the parameter has shape \(11,\)",
        param_masks={"head.bias": torch.ones(3)},
    )


def test_param_mask_with_values_other_than_zero_and_one(tmp_path):
    fails_before_compute(
        tmp_path, ValueError, r"only 0 and 1", param_masks={"head.bias": torch.full((11,), 2.0)}
    )


def test_empty_restriction(tmp_path):
    fails_before_compute(tmp_path, ValueError, r"param_masks is empty", param_masks={})
    fails_before_compute(
        tmp_path,
        ValueError,
        r"restriction is empty",
        param_masks={"head.bias": torch.zeros(11, dtype=torch.bool)},
    )


def test_model_without_parameters(tmp_path):
    fails_before_compute(tmp_path, ValueError, r"no parameters to sample", model=torch.nn.ReLU())


def test_observable_smaller_than_a_draw(tmp_path):
    data = torch.randint(0, 11, (40, 6))
    fails_before_compute(
        tmp_path,
        ValueError,
        r"observables\['small'\] has 10 rows but each draw evaluates batch_size x batches_per_draw = 4 x 3 = 12",
        observables={"small": data[:10]},
    )


def test_observable_with_other_sequence_length(tmp_path):
    fails_before_compute(
        tmp_path,
        ValueError,
        r"observables\['short'\] must be data of the same form",
        observables={"short": torch.randint(0, 11, (40, 4))},
    )


def test_colliding_observable_names(tmp_path):
    data = torch.randint(0, 11, (40, 6))
    fails_before_compute(
        tmp_path,
        ValueError,
        r"both become array name 'loss_a_b'",
        observables={"a-b": data, "a b": data},
    )


def test_supervised_data_needs_a_loss_fn(tmp_path):
    fails_before_compute(
        tmp_path, TypeError, r"pass loss_fn", model=WeightEcho(), data=(torch.zeros(20, 1),)
    )


def test_unknown_dataset_type(tmp_path):
    fails_before_compute(tmp_path, TypeError, r"dataset must be", data=42)


def test_unknown_chain_schedule(tmp_path):
    fails_before_compute(
        tmp_path, ValueError, r"chain_schedule must be one of", chain_schedule="parallel"
    )


def test_cuda_device_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists here")
    fails_before_compute(tmp_path, ValueError, r"no CUDA device", device="cuda")


@pytest.mark.parametrize(
    ("loss_fn", "exc", "match"),
    [
        (
            lambda m, b: next_token_loss(m, b).mean(),
            ValueError,
            r"shape \(B,\) or \(B, P\).*got shape \(\)",
        ),
        (lambda m, b: next_token_loss(m, b)[:1], ValueError, r"B = 2 rows"),
        (lambda m, b: next_token_loss(m, b).long(), TypeError, r"floating-point"),
        (lambda m, b: next_token_loss(m, b).tolist(), TypeError, r"must return a tensor"),
    ],
)
def test_loss_fn_of_wrong_shape_or_dtype_fails_on_first_batch(tmp_path, loss_fn, exc, match):
    CountingLM.calls = 0
    with pytest.raises(exc, match=match):
        sample(
            CountingLM(),
            torch.randint(0, 11, (40, 6)),
            {},
            lr=1e-3,
            n_beta=10.0,
            num_chains=2,
            num_draws=3,
            batch_size=4,
            loss_fn=loss_fn,
            output_path=tmp_path / "run.zarr",
            progress_bar=False,
        )
    assert CountingLM.calls == 1  # the one probe batch
    assert not (tmp_path / "run.zarr").exists()


def test_n_beta_of_one_warns(tiny_lm, token_data):
    with pytest.warns(UserWarning, match="n_beta=1"):
        sample(
            tiny_lm,
            token_data,
            {},
            lr=1e-3,
            n_beta=1.0,
            num_chains=1,
            num_draws=1,
            batch_size=4,
            progress_bar=False,
            num_init_loss_batches=1,
        )


# --- accepted data forms ------------------------------------------------------------------------


class RowsWithIds(torch.utils.data.Dataset):
    """A torch Dataset yielding {"input_ids": LongTensor (T,)} rows."""

    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i]}


class ColumnDataset(RowsWithIds):
    """Hugging Face style: ds["input_ids"] gives the whole column."""

    column_names = ["input_ids"]

    def __getitem__(self, i):
        if i == "input_ids":
            return self.ids
        return super().__getitem__(i)


@pytest.mark.parametrize("form", ["tensor", "numpy", "rows", "column", "dict"])
def test_token_data_forms_give_identical_runs(tiny_lm, token_data, form):
    data = {
        "tensor": token_data,
        "numpy": token_data.numpy(),
        "rows": RowsWithIds(token_data),
        "column": ColumnDataset(token_data),
        "dict": {"input_ids": token_data},
    }[form]
    settings = dict(
        lr=1e-3,
        n_beta=10.0,
        num_chains=1,
        num_draws=3,
        batch_size=4,
        progress_bar=False,
        num_init_loss_batches=1,
    )
    ref = sample(tiny_lm, token_data, {"o": token_data}, **settings)
    tree = sample(tiny_lm, data, {"o": data}, **settings)
    for name in ref.data_vars:
        np.testing.assert_array_equal(tree[name].values, ref[name].values)


@pytest.mark.parametrize("form", ["tuple", "list", "tensordataset"])
def test_supervised_data_forms(form):
    x = torch.arange(32, dtype=torch.float32)[:, None]
    data = {"tuple": (x, x), "list": [x, x], "tensordataset": torch.utils.data.TensorDataset(x, x)}[
        form
    ]
    tree = sample(
        WeightEcho(),
        data,
        {"o": data},
        lr=1e-3,
        n_beta=5.0,
        num_chains=1,
        num_draws=3,
        batch_size=4,
        loss_fn=echo_loss,
        progress_bar=False,
    )
    assert tree["loss_o"].shape == (1, 3, 12, 3)


def test_empty_observables_are_allowed(tiny_lm, token_data):
    tree = sample(
        tiny_lm,
        token_data,
        {},
        lr=1e-3,
        n_beta=10.0,
        num_chains=1,
        num_draws=2,
        batch_size=4,
        progress_bar=False,
        num_init_loss_batches=1,
    )
    assert not [n for n in tree.data_vars if n.startswith("loss_")]
