"""sampling_method="sgnht" on a model whose learning coefficient is known: lambda = d / 2.

A full-rank linear regression at its least-squares solution (devinterp_ui.theory), sampled with
full batches so the only noise is the sampler's. Reduced size by default (a few seconds);
DEVINTERP_UI_FULL=1 runs the slow full-size check.
"""

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from devinterp_ui import sample
from devinterp_ui.analysis.llc import compute_llc
from devinterp_ui.theory import regular_learning_coefficient

FULL = os.environ.get("DEVINTERP_UI_FULL") == "1"


def gaussian_nll(model, batch):
    x, y = batch
    return 0.5 * (y - model(x)).pow(2).sum(dim=1)


def regular_problem(d: int, n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    Y = X @ torch.randn(d, 1, generator=gen, dtype=torch.float64)
    Y = Y + torch.randn(n, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(X, Y).solution.T.float())
    h_max = float(np.linalg.eigvalsh((X.T @ X / n).numpy()).max())
    return model, (X.float(), Y.float()), h_max


def sgnht_llc(d, n, draws, chains=4):
    model, data, h_max = regular_problem(d, n)
    n_beta = n / math.log(n)
    tree = sample(
        model,
        data,
        {},
        loss_fn=gaussian_nll,
        lr=0.05 / (n_beta * h_max),  # lr n_beta h_max = 0.05: small discretisation bias
        n_beta=n_beta,
        num_chains=chains,
        num_draws=draws,
        num_burnin_steps=draws // 5,
        batch_size=n,
        num_init_loss_batches=1,
        sampling_method="sgnht",
        progress_bar=False,
    )
    return float(compute_llc(tree)["llc_mean"])


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sgnht_estimates_half_the_dimension_of_a_regular_model():
    d = 4
    estimate = sgnht_llc(d, n=400, draws=1_000)
    truth = regular_learning_coefficient(d)
    assert abs(estimate - truth) / truth < 0.12, estimate


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="full size: DEVINTERP_UI_FULL=1")
def test_sgnht_estimates_half_the_dimension_at_full_size():
    d = 10
    estimate = sgnht_llc(d, n=1_000, draws=5_000)
    truth = regular_learning_coefficient(d)
    assert abs(estimate - truth) / truth < 0.05, estimate
