"""Small real stores and dashboards for the UI tests."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui import sample

SMALL = dict(lr=1e-3, n_beta=20.0, num_chains=2, num_draws=6, batch_size=8, progress_bar=False)


@pytest.fixture
def data(tiny_data):
    """The rows of `make_dashboard`'s dashboards (tests/conftest.py)."""
    return tiny_data


@pytest.fixture
def make_store(data):
    """make_store(path, **settings): a completed sample store written by sample() directly."""

    def make(path, **settings):
        torch.manual_seed(0)
        sample(TinyLM(), data, {"o": data}, output_path=path, **{**SMALL, **settings})
        return path

    return make
