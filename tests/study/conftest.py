"""Tiny runs for studies: the suite's embedding + linear LM on random tokens, 2 chains x 12 draws."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui.study import LocalExecutor


@pytest.fixture
def model() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM()


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def settings() -> dict:
    """sample() keywords shared by every cell (lr and n_beta come from the grid)."""
    return {
        "num_chains": 2,
        "num_draws": 12,
        "batch_size": 8,
        "num_init_loss_batches": 2,
        "flush_interval": 0.0,
    }


@pytest.fixture
def here() -> LocalExecutor:
    """One cell at a time in this process: no pickling, no process start-up."""
    executor = LocalExecutor(max_workers=1)
    yield executor
    executor.shutdown()
