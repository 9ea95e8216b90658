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


# The small dashboard the UI and notebook tests build: a tiny LM on 64 rows of 6 tokens, two
# short chains. Settings a test cares about are passed to `make_dashboard` explicitly.
TINY_DASHBOARD = dict(
    lr=1e-3,
    n_beta=20.0,
    num_chains=2,
    num_draws=8,
    batch_size=8,
    num_init_loss_batches=2,
    batches_per_draw=1,
)


@pytest.fixture
def tiny_data() -> torch.Tensor:
    """64 rows of 6 tokens (vocabulary 11): the data of `make_dashboard`'s dashboards."""
    return torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(3))


@pytest.fixture
def make_dashboard(tiny_data, tmp_path):
    """make_dashboard(observables=None, **settings): a `Dashboard` on a fresh TinyLM (seed 0)
    and `tiny_data`, runs under tmp_path; observables default to {"train": tiny_data};
    settings override TINY_DASHBOARD."""
    from devinterp_ui.ui.dashboard import Dashboard  # only the tests that build one need panel

    def make(observables=None, **settings):
        torch.manual_seed(0)
        obs = {"train": tiny_data} if observables is None else observables
        return Dashboard(
            TinyLM(), tiny_data, obs, runs_dir=tmp_path, **{**TINY_DASHBOARD, **settings}
        )

    return make
