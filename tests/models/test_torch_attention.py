"""Models built from torch's own nn.TransformerEncoderLayer (nn.MultiheadAttention inside)."""

import torch
from tiny_hf_models import assert_dead_head, assert_sampling_moves_exactly, grads_of
from torch import nn

from devinterp_ui.analysis import create_param_masks

D, HEADS, HD, VOCAB = 16, 4, 4, 20
IDS = torch.randint(0, VOCAB, (4, 6), generator=torch.Generator().manual_seed(0))


class TorchLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        layer = nn.TransformerEncoderLayer(
            D, HEADS, dim_feedforward=32, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.lm_head = nn.Linear(D, VOCAB)

    def forward(self, ids):
        causal = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
        return self.lm_head(self.encoder(self.embed(ids), mask=causal, is_causal=True))


def test_head_is_its_in_proj_rows_and_out_proj_columns():
    torch.manual_seed(0)
    model = TorchLM()
    masks = create_param_masks(model, "l1h2")
    w = masks["encoder.layers.1.self_attn.in_proj_weight"]
    rows = w.all(dim=1).nonzero().flatten().tolist()
    assert rows == [*range(8, 12), *range(D + 8, D + 12), *range(2 * D + 8, 2 * D + 12)]
    assert masks["encoder.layers.1.self_attn.out_proj.weight"].all(
        dim=0
    ).nonzero().flatten().tolist() == [8, 9, 10, 11]
    assert "encoder.layers.1.self_attn.out_proj.bias" not in masks
    assert set(create_param_masks(model, "l0 mlp")) == {
        f"encoder.layers.0.{m}.{p}" for m in ("linear1", "linear2") for p in ("weight", "bias")
    }


def test_dead_head_and_sampling_move_exactly_the_head():
    torch.manual_seed(0)
    model = TorchLM()
    masks = create_param_masks(model, "l1h2")
    name = "encoder.layers.1.self_attn.in_proj_weight"
    params = dict(model.named_parameters())

    alive = grads_of(model, IDS)[name]
    with torch.no_grad():  # head 2's output columns to zero: its q, k, v lose their gradient
        params["encoder.layers.1.self_attn.out_proj.weight"][:, 8:12] = 0
    dead = grads_of(model, IDS)[name]
    assert_dead_head(name, masks[name], alive, dead, 1e-7)

    torch.manual_seed(0)
    assert_sampling_moves_exactly(TorchLM(), IDS, masks)
