"""Fixtures shared by the whole suite: tiny models that make the sampler's arithmetic visible."""

from __future__ import annotations

import os

import pytest
import torch
from tiny_models import TinyLM

# Two cores in CI: one intra-op thread per process keeps parallel test workers from thrashing.
torch.set_num_threads(int(os.environ.get("DEVINTERP_UI_TEST_THREADS", "1")))


@pytest.fixture
def tiny_lm() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM()


@pytest.fixture
def token_data() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 11, (96, 6), generator=gen)


@pytest.fixture
def echo_data() -> tuple[torch.Tensor]:
    return (torch.arange(64, dtype=torch.float32)[:, None],)
