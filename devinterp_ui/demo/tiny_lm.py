"""A tiny causal transformer language model (about 100k parameters) for the demos.

Attention is written with plain tensor ops (no ``nn.MultiheadAttention``, no
``scaled_dot_product_attention``) and there is no dropout and no buffer, so the model is a pure
function of its parameters: ``torch.func.functional_call``, ``vmap`` and ``grad`` work on it.

Parameter names (other code, e.g. weight-restriction masks, relies on them)::

    tok_emb.weight                      (vocab_size, d_model)
    pos_emb.weight                      (seq_len, d_model)
    blocks.{i}.ln1.{weight,bias}        (d_model,)
    blocks.{i}.attn.{q,k,v}.weight      (n_heads * d_head, d_model)  rows: [head 0 | head 1 | ...]
    blocks.{i}.attn.{q,k,v}.bias        (n_heads * d_head,)
    blocks.{i}.attn.o.weight            (d_model, n_heads * d_head)  columns: [head 0 | head 1 | ...]
    blocks.{i}.attn.o.bias              (d_model,)
    blocks.{i}.ln2.{weight,bias}        (d_model,)
    blocks.{i}.mlp.fc_in.{weight,bias}  (d_mlp, d_model), (d_mlp,)
    blocks.{i}.mlp.fc_out.{weight,bias} (d_model, d_mlp), (d_model,)
    ln_f.{weight,bias}                  (d_model,)
    unembed.{weight,bias}               (vocab_size, d_model), (vocab_size,)

Head ``h`` of block ``i`` owns rows ``h*d_head:(h+1)*d_head`` of ``q``, ``k`` and ``v`` and the
same columns of ``o``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class TinyLMConfig:
    """Shape of a :class:`TinyLM`. The defaults give 106,272 parameters."""

    vocab_size: int = 32
    seq_len: int = 32
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_head: int = 16
    d_mlp: int = 256

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; heads are contiguous blocks of ``q/k/v`` rows."""

    def __init__(self, config: TinyLMConfig):
        super().__init__()
        inner = config.n_heads * config.d_head
        self.n_heads = config.n_heads
        self.d_head = config.d_head
        self.q = nn.Linear(config.d_model, inner)
        self.k = nn.Linear(config.d_model, inner)
        self.v = nn.Linear(config.d_model, inner)
        self.o = nn.Linear(inner, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d_model) -> (B, T, d_model)."""
        batch, seq, _ = x.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:  # (B, T, H*D) -> (B, H, T, D)
            return t.view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)

        q, k, v = split_heads(self.q(x)), split_heads(self.k(x)), split_heads(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, T, T)
        # Built per call rather than stored as a buffer: the model stays a function of its
        # parameters alone, which keeps functional_call/vmap simple.
        future = torch.ones(seq, seq, dtype=torch.bool, device=x.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
        mixed = scores.softmax(dim=-1) @ v  # (B, H, T, D)
        return self.o(mixed.transpose(1, 2).reshape(batch, seq, self.n_heads * self.d_head))


class MLP(nn.Module):
    def __init__(self, config: TinyLMConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.d_model, config.d_mlp)
        self.fc_out = nn.Linear(config.d_mlp, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(F.gelu(self.fc_in(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, config: TinyLMConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """Causal LM: ``model(input_ids)`` maps (B, T) token ids to (B, T, vocab_size) logits.

    ``T`` may be anything up to ``config.seq_len``. Logits at position t predict token t + 1.
    """

    def __init__(self, config: TinyLMConfig | None = None):
        super().__init__()
        self.config = config or TinyLMConfig()
        c = self.config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.seq_len, c.d_model)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.unembed = nn.Linear(c.d_model, c.vocab_size)
        self.apply(_init_weights)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[-1]
        if seq > self.config.seq_len:
            raise ValueError(
                f"sequence length {seq} exceeds the model's seq_len {self.config.seq_len}"
            )
        positions = torch.arange(seq, device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_f(x))


def _init_weights(module: nn.Module) -> None:
    # GPT-2 style: small normal weights, zero biases; LayerNorm keeps its (1, 0) default.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def next_token_loss(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Per-token next-token cross-entropy in nats: (B, T) ids -> (B, T-1) losses.

    The same quantity the sampler's default loss computes; used for training and evaluation.
    """
    logits = model(input_ids)[:, :-1]
    targets = input_ids[:, 1:]
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
