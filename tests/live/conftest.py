"""Tiny token data and a toy LM (embedding + linear) so live runs take well under a second."""

from __future__ import annotations

import pytest
import torch
from live_fixtures import ROWS, SEQ_LEN, VOCAB, ToyLM  # noqa: F401


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine, two threads spin
    against other processes and a 1-second test takes 20."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def model() -> ToyLM:
    torch.manual_seed(0)
    return ToyLM()


@pytest.fixture
def tokens() -> torch.Tensor:
    """(ROWS, SEQ_LEN) random token ids."""
    return torch.randint(0, VOCAB, (ROWS, SEQ_LEN), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def settings() -> dict:
    """sample() keyword arguments of a small, fast run: 2 chains x (3 burn-in + 6 draws)."""
    return {
        "lr": 1e-3,
        "n_beta": 10.0,
        "num_chains": 2,
        "num_draws": 6,
        "num_burnin_steps": 3,
        "batch_size": 8,
        "num_init_loss_batches": 2,
        "batches_per_draw": 1,
        "flush_interval": 0.0,
    }
