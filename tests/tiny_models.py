"""Tiny models that make the sampler's arithmetic visible; imported by tests as `tiny_models`."""

from __future__ import annotations

import torch


class WeightEcho(torch.nn.Module):
    """A vector parameter w (d,) whose per-position loss on any row is w itself.

    With `echo_loss`, sampling_loss_micro[c, s, b, :] == w at step s (before its update) and the
    gradient of the mean loss is 1/d in every entry, so each SGLD term can be checked by hand.
    """

    def __init__(self, d: int = 3, init: float = 0.5):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((d,), init))


def echo_loss(model: WeightEcho, batch) -> torch.Tensor:
    x = batch[0]
    return model.w.expand(x.shape[0], -1) * torch.ones_like(x[:, :1])


class TinyLM(torch.nn.Module):
    """Embedding + linear head: next-token logits (B, T, V) from ids (B, T)."""

    def __init__(self, vocab: int = 11, dim: int = 6):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


class ExplodesAbove(torch.nn.Module):
    """Loss w per sample, NaN once w exceeds a threshold: chains diverge depending on their noise."""

    def __init__(self, threshold: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.threshold = threshold


def exploding_loss(model, batch):
    w = model.w.expand(batch[0].shape[0])
    return torch.where(w > model.threshold, torch.full_like(w, float("nan")), w)
