"""suggest_lr(): h_max by power iteration on quadratics with known Hessians, and the step-size bias
it predicts against the bias measured by sampling."""

import math

import numpy as np
import pytest
import torch

from devinterp_ui import sample
from devinterp_ui.analysis import compute_llc, suggest_lr
from devinterp_ui.analysis.lr_advisor import bias_for


class Quadratic(torch.nn.Module):
    """Loss 0.5 (w - w0)^T A (w - w0) on every row, A = Q diag(eigenvalues) Q^T, w0 = 0."""

    def __init__(self, eigenvalues, seed=0):
        super().__init__()
        d = len(eigenvalues)
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
        a = (q * torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
        self.register_buffer("a", a.float())
        self.w = torch.nn.Parameter(torch.zeros(d))


def quadratic_loss(model, batch):
    x = batch[0]
    return (0.5 * model.w @ model.a @ model.w).expand(x.shape[0])


class Regression(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))


def squared_error(model, batch):
    x, y = batch
    return 0.5 * (x @ model.w - y) ** 2


ROWS = (torch.zeros(64, 1),)


def test_h_max_is_within_1_percent_of_the_known_top_eigenvalue():
    eig = [7.0, 5.0, 3.0, 1.0, 0.5, 0.1, 0.0, -0.3]
    advice = suggest_lr(Quadratic(eig), ROWS, n_beta=10.0, loss_fn=quadratic_loss)
    assert advice.h_max == pytest.approx(7.0, rel=0.01)
    assert advice.converged


def test_h_max_is_within_1_percent_in_a_wide_spectrum_off_the_minimum_in_few_products():
    """200 directions, eigenvalues spread over 0..10 with a close second (9.8): the Lanczos
    estimate (started from the gradient, here non-zero: the weights are off the minimum) is
    within 1% in far fewer products than power iteration would need (~(ln 100)/(ln 10/9.8)
    ~ 230 steps to settle the top two)."""
    eig = [10.0, 9.8, *np.linspace(0.0, 9.0, 198)]
    model = Quadratic(eig, seed=3)
    with torch.no_grad():
        model.w.copy_(torch.randn(200, generator=torch.Generator().manual_seed(4)))
    advice = suggest_lr(model, ROWS, n_beta=10.0, loss_fn=quadratic_loss)
    assert advice.h_max == pytest.approx(10.0, rel=0.01)
    assert advice.converged and advice.iterations <= 40


def test_a_tighter_rtol_gives_the_eigenvalue_to_that_precision():
    eig = [4.0, 3.9, 3.0, *np.linspace(0.0, 2.0, 50)]
    advice = suggest_lr(Quadratic(eig), ROWS, n_beta=1.0, loss_fn=quadratic_loss, rtol=1e-6)
    assert advice.h_max == pytest.approx(4.0, rel=1e-5)


def test_h_max_is_the_hessian_of_the_mean_loss_over_the_fixed_batches():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(96, 6, generator=gen, dtype=torch.float64) * torch.arange(1, 7)
    y = torch.zeros(96, dtype=torch.float64)
    advice = suggest_lr(
        Regression(6), (x, y), n_beta=5.0, loss_fn=squared_error, batch_size=32, num_batches=3
    )
    hessian = (x.T @ x / 96).numpy()  # 3 batches x 32 rows = every row
    assert advice.h_max == pytest.approx(np.linalg.eigvalsh(hessian).max(), rel=0.01)


@pytest.mark.parametrize("keep_graphs", [True, False])
def test_kept_and_rebuilt_batch_graphs_give_the_same_h_max(keep_graphs):
    """The products through each batch's kept gradient graph equal the ones rebuilt per batch
    (one graph alive at a time, for large models)."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64) * torch.arange(1, 6)
    y = torch.randn(64, generator=gen, dtype=torch.float64)
    kw = {"n_beta": 5.0, "loss_fn": squared_error, "batch_size": 16, "num_batches": 4}
    advice = suggest_lr(Regression(5), (x, y), keep_graphs=keep_graphs, **kw)
    reference = np.linalg.eigvalsh((x.T @ x / 64).numpy()).max()
    assert advice.h_max == pytest.approx(reference, rel=1e-3)
    other = suggest_lr(Regression(5), (x, y), keep_graphs=not keep_graphs, **kw)
    assert advice.h_max == pytest.approx(other.h_max, rel=1e-9)


def test_a_dominant_negative_eigenvalue_still_gives_the_largest_positive_one():
    advice = suggest_lr(Quadratic([-9.0, 3.0, 1.0]), ROWS, n_beta=1.0, loss_fn=quadratic_loss)
    assert advice.h_max == pytest.approx(3.0, rel=0.01)


def test_param_masks_restrict_the_curvature_to_the_sampled_entries():
    model = Regression(3)
    x = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)).repeat(8, 1)
    y = torch.zeros(24, dtype=torch.float64)
    mask = torch.tensor([False, True, True])
    advice = suggest_lr(
        model,
        (x, y),
        n_beta=1.0,
        loss_fn=squared_error,
        batch_size=24,
        num_batches=1,
        param_masks={"w": mask},
    )
    assert advice.h_max == pytest.approx(4.0 / 3.0, rel=0.01)  # mean of x^2 along entry 1


def test_limits_follow_the_bias_formula():
    advice = suggest_lr(
        Quadratic([2.0, 1.0]),
        ROWS,
        n_beta=10.0,
        localization=5.0,
        loss_fn=quadratic_loss,
        target_bias=0.05,
        lr=0.01,
    )
    k = 10.0 * advice.h_max + 5.0
    assert advice.lr_stable_max == pytest.approx(4.0 / k)
    assert advice.bias_at(advice.lr_suggested) == pytest.approx(0.05)
    assert advice.bias == pytest.approx(1.0 / (1.0 - 0.01 * k / 4.0) - 1.0)
    assert math.isinf(advice.bias_at(advice.lr_stable_max * 1.001))


def test_the_weights_are_left_as_they_were():
    model = Quadratic([2.0, 1.0])
    with torch.no_grad():
        model.w.fill_(0.3)
    model.w.requires_grad_(False)
    suggest_lr(model, ROWS, n_beta=1.0, loss_fn=quadratic_loss, param_masks={"w": None})
    assert torch.equal(model.w, torch.full((2,), 0.3)) and not model.w.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_beta": 0.0}, "n_beta"),
        ({"n_beta": 1.0, "localization": -1.0}, "localization"),
        ({"n_beta": 1.0, "target_bias": 0.0}, "target_bias"),
        ({"n_beta": 1.0, "lr": float("nan")}, "lr"),
        ({"n_beta": 1.0, "num_batches": 0}, "num_batches"),
        ({"n_beta": 1.0, "batch_size": 1000}, "batch_size"),
    ],
)
def test_bad_settings_are_refused_naming_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        suggest_lr(Quadratic([1.0]), ROWS, loss_fn=quadratic_loss, **kwargs)


def test_predicted_bias_matches_the_bias_measured_by_sampling():
    """Isotropic quadratic (d = 20, h = 1): the exact posterior LLC is d/2 = 10 with
    localization 0; at an lr whose predicted bias is 20%, SGLD's LLC is 20% high. Tolerance
    0.03 absolute: the measured bias has a standard error of about 0.007 here (4 x 1000 draws,
    per-draw relative sd sqrt(2/d), short autocorrelation)."""
    d, n_beta = 20, 100.0
    model = Quadratic([1.0] * d)
    advice = suggest_lr(model, ROWS, n_beta=n_beta, loss_fn=quadratic_loss)
    lr = 4.0 * 0.2 / (1.2 * n_beta * advice.h_max)  # bias_at(lr) = 0.2
    assert advice.bias_at(lr) == pytest.approx(0.2, rel=0.02)
    tree = sample(
        model,
        ROWS,
        {},
        loss_fn=quadratic_loss,
        lr=lr,
        n_beta=n_beta,
        num_chains=4,
        num_draws=1000,
        num_burnin_steps=50,
        batch_size=8,
        progress_bar=False,
    )
    measured = float(compute_llc(tree)["llc_mean"]) / (d / 2) - 1.0
    assert measured == pytest.approx(advice.bias_at(lr), abs=0.03)
    assert bias_for(lr, n_beta * 1.0) == pytest.approx(0.2, rel=0.02)


def test_a_non_finite_curvature_is_reported_not_returned():
    def nan_loss(model, batch):
        return (model.w.sum() * float("nan")).expand(batch[0].shape[0])

    for keep in (True, False):
        with pytest.raises(ValueError, match="not finite"):
            suggest_lr(Quadratic([1.0, 2.0]), ROWS, n_beta=1.0, loss_fn=nan_loss, keep_graphs=keep)


@pytest.mark.parametrize("keep_graphs", [True, False])
def test_a_linear_loss_has_no_curvature(keep_graphs):
    def linear_loss(model, batch):
        return (3.0 * model.w.sum()).expand(batch[0].shape[0])

    advice = suggest_lr(
        Quadratic([1.0, 2.0]), ROWS, n_beta=1.0, loss_fn=linear_loss, keep_graphs=keep_graphs
    )
    assert advice.h_max == 0.0 and math.isinf(advice.lr_stable_max)
