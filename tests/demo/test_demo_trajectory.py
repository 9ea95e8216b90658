"""The shipped tiny-LM trajectory: small, reproducible, and the loss falls along it."""

import io
import math

import pytest
import torch

from devinterp_ui.demo import LANGUAGES, TinyLMConfig, load_demo, make_corpus
from devinterp_ui.demo.corpus import CorpusConfig
from devinterp_ui.demo.train import TrainingRecipe, heldout_losses, train_tiny_lm
from devinterp_ui.demo.trajectory import (
    assets_dir,
    file_sha256,
    load_checkpoint,
    read_manifest,
    trajectory_dir,
)


@pytest.fixture(scope="module")
def manifest():
    return read_manifest()


def test_trajectory_has_6_to_10_log_spaced_checkpoints(manifest):
    steps = [record["step"] for record in manifest["checkpoints"]]
    assert 6 <= len(steps) <= 10
    assert steps[0] == 0 and steps == sorted(steps)
    assert steps[-1] == manifest["training"]["total_steps"]
    ratios = [b / a for a, b in zip(steps[1:-1], steps[2:], strict=False)]
    assert max(ratios) / min(ratios) < 1.2  # geometric spacing


def test_assets_are_small():
    total = sum(p.stat().st_size for p in assets_dir().rglob("*") if p.is_file())
    assert total < 10 * 2**20


def test_manifest_training_loss_falls(manifest):
    curve = manifest["loss_curve"]["train_loss"]
    assert len(curve) == manifest["training"]["total_steps"]
    assert curve[0] == pytest.approx(math.log(32), abs=0.05)  # untrained: uniform over 32 tokens
    assert sum(curve[-200:]) / 200 < curve[0] - 1.0


def test_manifest_heldout_loss_falls_from_first_to_last_checkpoint(manifest):
    means = [record["heldout_loss"]["mean"] for record in manifest["checkpoints"]]
    assert means[-1] < means[0] - 1.0
    assert all(later < earlier + 0.05 for earlier, later in zip(means, means[1:], strict=False))


def test_saved_checkpoints_reach_lower_heldout_loss_when_evaluated(manifest):
    corpus = make_corpus(
        CorpusConfig(**{k: manifest["corpus"][k] for k in CorpusConfig.__dataclass_fields__})
    )
    steps = [record["step"] for record in manifest["checkpoints"]]
    losses = {
        s: heldout_losses(load_checkpoint(s, manifest), corpus.heldout)
        for s in (steps[0], steps[len(steps) // 2], steps[-1])
    }
    first, middle, last = (losses[s]["mean"] for s in sorted(losses))
    assert first > middle > last
    assert last < first - 1.0
    # every structured language improves; "uniform" has nothing to learn and ends near ln(32)
    # (a little above it: the model hedges towards the other languages early in a sequence)
    for name in LANGUAGES:
        if name == "uniform":
            assert losses[steps[-1]][name] == pytest.approx(math.log(32), abs=0.25)
        else:
            assert losses[steps[-1]][name] < losses[steps[0]][name] - 0.5
    # the manifest records what the checkpoints really do
    recorded = {r["step"]: r["heldout_loss"] for r in manifest["checkpoints"]}
    for step, values in losses.items():
        assert values["mean"] == pytest.approx(recorded[step]["mean"], abs=1e-4)


def test_checkpoint_files_match_their_recorded_hashes(manifest):
    for record in manifest["checkpoints"]:
        assert file_sha256(trajectory_dir() / record["file"]) == record["sha256"]


def test_checkpoint_reloads_bit_identically(manifest):
    record = manifest["checkpoints"][-1]
    saved = torch.load(trajectory_dir() / record["file"], weights_only=True)
    model = load_demo("tiny_lm").model
    reloaded = model.state_dict()
    assert set(saved) == set(reloaded)
    for name, tensor in saved.items():
        assert torch.equal(reloaded[name], tensor), name
    buffer = io.BytesIO()
    torch.save(reloaded, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=True)
    assert all(torch.equal(again[name], tensor) for name, tensor in saved.items())


def test_retraining_replays_the_start_of_the_trajectory(manifest):
    """Same seeds, same recipe: step 0 exactly, the first checkpoint to float round-off."""
    recipe = TrainingRecipe(
        **{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in manifest["training"].items()
            if k in TrainingRecipe.__dataclass_fields__
        }
    )
    config = TinyLMConfig(**manifest["model"]["config"])
    train = make_corpus(
        CorpusConfig(**{k: manifest["corpus"][k] for k in CorpusConfig.__dataclass_fields__})
    ).train
    first_trained = manifest["checkpoints"][1]["step"]
    replayed = {}
    train_tiny_lm(
        recipe,
        config,
        train,
        lambda s, m: replayed.__setitem__(s, {k: v.clone() for k, v in m.state_dict().items()}),
        stop_after=first_trained,
    )
    for step, exact in ((0, True), (first_trained, False)):
        saved = torch.load(trajectory_dir() / f"step_{step:06d}.pt", weights_only=True)
        for name, tensor in saved.items():
            if exact:
                assert torch.equal(replayed[step][name], tensor), name
            else:
                torch.testing.assert_close(replayed[step][name], tensor, rtol=1e-5, atol=1e-6)


def test_training_restores_thread_count_and_determinism_flag():
    threads = torch.get_num_threads()
    train_tiny_lm(
        TrainingRecipe(total_steps=20),
        TinyLMConfig(),
        make_corpus(CorpusConfig(n_train_per_language=16, n_heldout_per_language=1)).train,
        lambda s, m: None,
        stop_after=1,
    )
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
