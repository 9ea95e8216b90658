"""load_demo / list_demos return what they promise and say what exists when asked for what doesn't."""

import math
import shutil

import pytest
import torch

from devinterp_ui.demo import LANGUAGES, Demo, DemoInfo, TinyLM, list_demos, load_demo
from devinterp_ui.demo.trajectory import trajectory_dir

SAMPLE_KWARGS = {"lr", "n_beta", "localization", "num_chains", "num_draws", "batch_size"}


@pytest.fixture(scope="module")
def lm():
    return load_demo("tiny_lm")


def test_list_demos_names_both_demos_without_loading():
    demos = list_demos()
    assert list(demos) == ["tiny_lm", "dln"]
    assert all(isinstance(info, DemoInfo) and info.description for info in demos.values())
    assert demos["dln"].has_true_lambda and demos["dln"].data_kind == "supervised"
    assert demos["tiny_lm"].data_kind == "tokens"


def test_lm_loads_the_final_checkpoint_by_default(lm):
    assert isinstance(lm, Demo) and isinstance(lm.model, TinyLM)
    assert lm.step == lm.steps[-1] == lm.manifest["training"]["total_steps"]
    assert not lm.model.training


def test_lm_datasets_are_the_mixture_and_one_per_language(lm):
    assert list(lm.datasets) == ["train", *LANGUAGES]
    seq_len = lm.model.config.seq_len
    for data in lm.datasets.values():
        assert data.dtype == torch.int64 and data.ndim == 2 and data.shape[1] == seq_len


def test_lm_uses_the_samplers_default_loss_and_suggests_settings(lm):
    assert lm.loss_fn is None
    assert set(lm.sampler_settings) >= SAMPLE_KWARGS
    assert lm.sampler_settings["num_chains"] == 4 and lm.sampler_settings["num_draws"] == 200
    assert lm.true_lambda is None


def test_lm_settings_keep_the_step_size_bias_small(lm):
    # h_max of the per-token loss at the final checkpoint is about 4 (power iteration)
    settings = lm.sampler_settings
    assert settings["lr"] * settings["n_beta"] * 4.0 < 0.5


def test_lm_loads_any_listed_step_and_they_differ(lm):
    first = load_demo("tiny_lm", step=lm.steps[0]).model
    assert not torch.equal(first.unembed.weight, lm.model.unembed.weight)
    torch.testing.assert_close(lm.model_at(lm.steps[0]).unembed.weight, first.unembed.weight)


def test_lm_model_config_is_exposed(lm):
    config = lm.model.config
    for field in ("vocab_size", "seq_len", "d_model", "n_layers", "n_heads", "d_head", "d_mlp"):
        assert getattr(config, field) == lm.manifest["model"]["config"][field]


def test_unknown_demo_error_lists_demos():
    with pytest.raises(ValueError, match="available demos: tiny_lm, dln"):
        load_demo("gpt5")


def test_unknown_step_error_lists_steps(lm):
    listed = ", ".join(map(str, lm.steps))
    with pytest.raises(ValueError, match=f"available steps: {listed}"):
        load_demo("tiny_lm", step=lm.steps[-1] + 1)
    with pytest.raises(ValueError, match="available steps: 0"):
        load_demo("dln", step=7)
    with pytest.raises(ValueError, match="available steps"):
        lm.model_at(-1)


def test_missing_assets_say_how_to_make_them(monkeypatch, tmp_path):
    monkeypatch.setenv("DEVINTERP_UI_ASSETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m devinterp_ui.demo.train"):
        load_demo("tiny_lm")


def test_data_that_no_longer_match_the_checkpoints_are_refused(monkeypatch, tmp_path, lm):
    shutil.copytree(trajectory_dir(), tmp_path / "tiny_lm")
    manifest_path = tmp_path / "tiny_lm" / "manifest.json"
    manifest_path.write_text(
        manifest_path.read_text().replace(lm.manifest["data_sha256"]["zipf"], "0" * 64)
    )
    monkeypatch.setenv("DEVINTERP_UI_ASSETS", str(tmp_path))
    with pytest.raises(RuntimeError, match="'zipf' differs"):
        load_demo("tiny_lm")


def test_dln_demo_has_supervised_data_a_loss_and_its_true_lambda():
    dln = load_demo("dln")
    X, Y = dln.datasets["train"]
    assert X.shape == (10_000, 4) and Y.shape == (10_000, 8)
    assert dln.true_lambda == pytest.approx(6.0)
    assert dln.steps == [0] and dln.step == 0
    assert dln.loss_fn(dln.model, (X[:5], Y[:5])).shape == (5,)
    assert torch.count_nonzero(dln.loss_fn(dln.model, (X, Y))) == 0  # the checkpoint is the truth
    settings = dln.sampler_settings
    assert set(settings) >= SAMPLE_KWARGS and settings["loss_fn"] is dln.loss_fn
    assert settings["n_beta"] == pytest.approx(len(X) / math.log(len(X)), rel=1e-6)
    assert load_demo("dln", step=0).true_lambda == dln.true_lambda


@pytest.mark.parametrize("name", ["tiny_lm", "dln"])
def test_suggested_settings_are_accepted_by_sample(name):
    from devinterp_ui import sample

    demo = load_demo(name)
    short = {"num_chains": 1, "num_draws": 2, "num_burnin_steps": 0, "num_init_loss_batches": 1}
    settings = {**demo.sampler_settings, **short}
    observables = {k: v for k, v in demo.datasets.items() if k not in ("train", "uniform", "zipf")}
    tree = sample(demo.model, demo.datasets["train"], observables, progress_bar=False, **settings)
    losses = tree.to_dataset()["sampling_loss_micro"].values
    assert losses.shape[:2] == (1, 2) and torch.isfinite(torch.as_tensor(losses)).all()


@pytest.mark.parametrize("spelling", ["tiny-lm", "tiny_lm", "Tiny-LM", "dln", "DLN"])
def test_every_demo_loads_under_hyphen_and_underscore_spellings(spelling):
    demo = load_demo(spelling)
    assert demo.name == spelling.lower().replace("-", "_")
