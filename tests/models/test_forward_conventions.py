"""How the default loss calls models: HF without a KV cache, TransformerLens for logits, and
padded positions left out of the loss, its gradient and init_loss."""

import pytest
import torch
from tiny_hf_models import VOCAB, tiny_model

from devinterp_ui import sample
from devinterp_ui.data import as_source
from devinterp_ui.losses import model_logits, next_token_loss

pytest.importorskip("transformers")

SETTINGS = dict(
    lr=1e-3,
    n_beta=4.0,
    num_chains=2,
    num_draws=3,
    batch_size=2,
    num_init_loss_batches=2,
    progress_bar=False,
)


def _padded(pad_token: int):
    """Four rows of 6 tokens; rows 1 and 3 end in 2 and 3 padding positions (right padding)."""
    ids = torch.randint(2, VOCAB, (4, 6), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(4, 6, dtype=torch.long)
    mask[1, 4:] = 0
    mask[3, 3:] = 0
    return {"input_ids": torch.where(mask.bool(), ids, pad_token), "attention_mask": mask}


def test_hf_models_are_called_without_a_kv_cache():
    model = tiny_model("llama")
    seen = {}
    model.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    model_logits(model, torch.ones(1, 4, dtype=torch.long))
    assert seen["use_cache"] is False


def test_plain_modules_are_called_with_ids_only(tiny_lm):
    logits = model_logits(tiny_lm, torch.zeros(2, 5, dtype=torch.long))
    assert logits.shape[:2] == (2, 5)


def test_padded_positions_hold_zero_and_rows_average_their_real_tokens():
    model = tiny_model("llama")
    batch = _padded(pad_token=0)
    per_token = next_token_loss(model, batch)
    plain = next_token_loss(model, batch["input_ids"])
    assert per_token.shape == (4, 5)
    assert (per_token[1, 3:] == 0).all() and (per_token[3, 2:] == 0).all()
    for row, real in ((0, 5), (1, 3), (3, 2)):
        assert torch.allclose(per_token[row].mean(), plain[row, :real].mean())


def test_padding_changes_neither_loss_gradient_nor_init_loss():
    model = tiny_model("gpt2")
    a, b = _padded(pad_token=0), _padded(pad_token=VOCAB - 1)
    for batch_a, batch_b in ((a, b),):
        la, lb = next_token_loss(model, batch_a), next_token_loss(model, batch_b)
        assert torch.allclose(la, lb, atol=1e-6)
    ta = sample(model, a, {}, **SETTINGS)
    tb = sample(model, b, {}, **SETTINGS)
    assert torch.allclose(
        torch.as_tensor(ta["init_loss"].values), torch.as_tensor(tb["init_loss"].values), atol=1e-6
    )
    assert torch.allclose(
        torch.as_tensor(ta["sampling_loss_micro"].values),
        torch.as_tensor(tb["sampling_loss_micro"].values),
        atol=1e-5,
    )


def test_a_mask_of_ones_gives_plain_token_batches():
    ids = torch.randint(0, 9, (4, 5))
    source = as_source({"input_ids": ids, "attention_mask": torch.ones(4, 5)}, "dataset")
    assert isinstance(source.batch([0, 1], "cpu"), torch.Tensor)


def test_a_row_without_two_real_tokens_is_refused():
    mask = torch.ones(3, 5, dtype=torch.long)
    mask[2, 1:] = 0
    with pytest.raises(ValueError, match="row 2 has fewer than 2 adjacent real tokens"):
        as_source(
            {"input_ids": torch.zeros(3, 5, dtype=torch.long), "attention_mask": mask}, "dataset"
        )


def test_a_mask_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="attention_mask has shape"):
        as_source(
            {"input_ids": torch.zeros(3, 5, dtype=torch.long), "attention_mask": torch.ones(3, 4)},
            "dataset",
        )


def test_rows_of_dicts_with_a_mask_keep_it():
    batch = _padded(pad_token=0)
    rows = [{k: v[i] for k, v in batch.items()} for i in range(4)]
    source = as_source(rows, "dataset")
    assert torch.equal(source.batch([1], "cpu")["attention_mask"], batch["attention_mask"][[1]])


def test_left_padding_is_masked_inside_the_model_too():
    # Real tokens after left padding would attend to the pads unless the mask reaches the model.
    model = tiny_model("llama")
    ids = torch.randint(2, VOCAB, (2, 6), generator=torch.Generator().manual_seed(4))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    a = next_token_loss(
        model, {"input_ids": torch.where(mask.bool(), ids, 0), "attention_mask": mask}
    )
    b = next_token_loss(
        model, {"input_ids": torch.where(mask.bool(), ids, 7), "attention_mask": mask}
    )
    assert torch.allclose(a, b, atol=1e-5)
    assert (a[0, :2] == 0).all() and (a[0, 2:] != 0).all()


def test_a_model_that_takes_no_mask_is_refused_with_padding(tiny_lm):
    batch = {
        "input_ids": torch.zeros(1, 4, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 0]]),
    }
    with pytest.raises(TypeError, match="takes no attention_mask"):
        next_token_loss(tiny_lm, batch)
