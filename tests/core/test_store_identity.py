"""The store's identity says exactly what was sampled and in which model mode: a store is
reused only by a run that samples the same entries the same way, and "the full model" means
one thing (every parameter) whichever way it is asked for."""

import shutil

import numpy as np
import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui import StoreConflictError, create_param_masks, sample
from devinterp_ui.params import resolve_param_masks

SETTINGS = dict(
    lr=1e-3,
    n_beta=10.0,
    num_chains=1,
    num_draws=2,
    batch_size=4,
    num_init_loss_batches=1,
    progress_bar=False,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyLM()


@pytest.fixture(scope="module")
def data():
    return torch.randint(0, 11, (24, 6), generator=torch.Generator().manual_seed(1))


def head_bias_mask(entries):
    mask = torch.zeros(11, dtype=torch.bool)
    mask[list(entries)] = True
    return mask


# Each variant: (name, class, param_masks builder). Variants of one class sample the same
# entries and must reuse each other's store; variants of different classes must conflict.
VARIANTS = [
    ("full_none", "full", lambda m: None),
    ("full_string", "full", lambda m: create_param_masks(m, "full")),
    ("full_dict_reversed", "full", lambda m: {n: None for n, _ in reversed(list(m.named_parameters()))}),
    ("full_dict_all_true", "full", lambda m: {n: torch.ones_like(p, dtype=torch.bool) for n, p in m.named_parameters()}),
    ("head_whole", "head", lambda m: {"head.weight": None, "head.bias": None}),
    ("head_whole_reordered", "head", lambda m: {"head.bias": None, "head.weight": None}),
    ("bias_mask_a", "mask_a", lambda m: {"head.bias": head_bias_mask([0, 1, 2])}),
    ("bias_mask_b", "mask_b", lambda m: {"head.bias": head_bias_mask([3, 4, 5])}),
]  # fmt: skip


@pytest.fixture(scope="module")
def stores(model, data, tmp_path_factory):
    """One store per variant, sampled into its own fresh path."""
    root = tmp_path_factory.mktemp("variants")
    out = {}
    for name, _, masks in VARIANTS:
        path = root / f"{name}.zarr"
        sample(model, data, {}, param_masks=masks(model), output_path=path, **SETTINGS)
        out[name] = path
    return out


def loss_of(tree) -> np.ndarray:
    return tree["sampling_loss_micro"].values


@pytest.mark.parametrize("first", [v[0] for v in VARIANTS])
def test_every_pair_of_restrictions_at_one_path_reuses_correctly_or_conflicts(
    model, data, stores, tmp_path, first
):
    import xarray as xr

    classes = {name: cls for name, cls, _ in VARIANTS}
    for second, cls, masks in VARIANTS:
        path = tmp_path / f"{first}-then-{second}.zarr"
        shutil.copytree(stores[first], path)
        if classes[first] == cls:
            tree = sample(model, data, {}, param_masks=masks(model), output_path=path, **SETTINGS)
            fresh = xr.open_datatree(str(stores[second]), engine="zarr")
            np.testing.assert_array_equal(loss_of(tree), loss_of(fresh))
        else:
            with pytest.raises(StoreConflictError, match=r"metadata\.config\.sampler\.param_masks"):
                sample(model, data, {}, param_masks=masks(model), output_path=path, **SETTINGS)


def test_the_sampled_set_is_recorded_with_names_and_counts(stores):
    import xarray as xr

    full = xr.open_datatree(str(stores["full_none"]), engine="zarr").attrs
    record = full["metadata"]["config"]["sampler"]["param_masks"]
    assert record == {
        "embed.weight": {"numel": 66, "sampled": 66, "mask": None},
        "head.weight": {"numel": 66, "sampled": 66, "mask": None},
        "head.bias": {"numel": 11, "sampled": 11, "mask": None},
    }
    masked = xr.open_datatree(str(stores["bias_mask_a"]), engine="zarr").attrs
    (entry,) = masked["metadata"]["config"]["sampler"]["param_masks"].values()
    assert entry["numel"] == 11 and entry["sampled"] == 3 and isinstance(entry["mask"], str)
    assert masked["provenance"]["num_sampled_params"] == 3


def test_the_full_model_is_every_parameter_frozen_ones_included():
    model = TinyLM()
    model.embed.weight.requires_grad_(False)
    with pytest.warns(
        UserWarning, match=r"1 frozen parameter\(s\).*embed\.weight.*devinterp 2\.0\.1"
    ):
        from_none = resolve_param_masks(model, None)
    with pytest.warns(UserWarning, match="frozen"):
        from_full = resolve_param_masks(model, create_param_masks(model, "full"))
    assert list(from_none) == list(from_full) == ["embed.weight", "head.weight", "head.bias"]
    assert all(m is None for m in from_none.values())


def test_frozen_parameters_move_when_the_full_model_is_sampled(data):
    torch.manual_seed(0)
    model = TinyLM()
    model.embed.weight.requires_grad_(False)
    with pytest.warns(UserWarning, match="frozen"):
        tree = sample(model, data, {}, **SETTINGS)
    assert tree.attrs["provenance"]["num_sampled_params"] == 66 + 66 + 11
    assert not model.embed.weight.requires_grad  # the user's model is left as it was


def test_a_restriction_without_frozen_parameters_does_not_warn(recwarn):
    model = TinyLM()
    model.embed.weight.requires_grad_(False)
    resolve_param_masks(model, {"head.weight": None})
    assert not [w for w in recwarn if "frozen" in str(w.message)]


def test_key_order_of_param_masks_does_not_change_the_samples(model, data):
    a = sample(model, data, {}, param_masks={"head.weight": None, "embed.weight": None}, **SETTINGS)
    b = sample(model, data, {}, param_masks={"embed.weight": None, "head.weight": None}, **SETTINGS)
    np.testing.assert_array_equal(loss_of(a), loss_of(b))


# --- model mode ---------------------------------------------------------------------------------


class DropoutLM(TinyLM):
    def __init__(self):
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, ids):
        return self.head(self.drop(self.embed(ids)))


def test_default_model_mode_is_train_as_devinterp(data, tmp_path):
    torch.manual_seed(0)
    model = DropoutLM().eval()
    with pytest.warns(UserWarning, match=r"Dropout layers and samples with model_mode='train'"):
        train = sample(model, data, {}, output_path=tmp_path / "a.zarr", **SETTINGS)
    with pytest.warns(UserWarning, match=r"model_mode='eval'"):
        evaluated = sample(model, data, {}, model_mode="eval", **SETTINGS)
    assert train.attrs["metadata"]["config"]["sampler"]["model_mode"] == "train"
    assert evaluated.attrs["metadata"]["config"]["sampler"]["model_mode"] == "eval"
    # Dropout is active in train mode only, so the loss at the checkpoint differs.
    assert not np.allclose(train["init_loss"].values, evaluated["init_loss"].values)
    assert not model.training  # the user's model keeps its mode


def test_a_store_made_in_another_mode_is_not_reused(model, data, tmp_path):
    path = tmp_path / "run.zarr"
    sample(model, data, {}, output_path=path, **SETTINGS)
    with pytest.raises(StoreConflictError, match=r"metadata\.config\.sampler\.model_mode"):
        sample(model, data, {}, output_path=path, model_mode="eval", **SETTINGS)


def test_a_model_without_mode_dependent_layers_does_not_warn(model, data, recwarn):
    sample(model, data, {}, **SETTINGS)
    assert not [w for w in recwarn if "model_mode" in str(w.message)]


def test_unknown_model_mode_names_the_choices(model, data):
    with pytest.raises(ValueError, match=r"model_mode must be one of \['train', 'eval'\]"):
        sample(model, data, {}, model_mode="inference", **SETTINGS)
