"""The deep linear network problem: teacher, data, loss and known learning coefficient."""

import pytest
import torch

from devinterp_ui.demo import dln_loss, make_dln_model, make_dln_problem
from devinterp_ui.theory import dln_learning_coefficient


def test_true_lambda_matches_the_closed_form_and_the_local_value():
    problem = make_dln_problem((4, 3, 8))
    assert problem.true_lambda == dln_learning_coefficient([4, 3, 8], 0)
    assert problem.true_lambda == pytest.approx(4 * 3 / 2)  # local: only W_1 matters, regularly


def test_other_admissible_widths_work():
    assert make_dln_problem((5, 3, 9), n=10).true_lambda == pytest.approx(7.5)


def test_widths_where_local_and_global_lambda_differ_are_refused():
    with pytest.raises(ValueError, match="differs from the global closed form"):
        make_dln_problem((4, 4, 4), n=10)


def test_teacher_is_rank_zero_with_injective_later_layer_and_noiseless_data():
    problem = make_dln_problem()
    first, second = problem.model[0].weight, problem.model[1].weight
    assert torch.count_nonzero(first) == 0
    assert torch.linalg.matrix_rank(second) == 3
    assert torch.count_nonzero(problem.Y) == 0
    assert problem.X.shape == (10_000, 4) and problem.Y.shape == (10_000, 8)


def test_model_is_bias_free_linear_layers_in_a_sequential():
    model = make_dln_model([4, 3, 8])
    assert isinstance(model, torch.nn.Sequential)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "1.weight"]
    assert all(layer.bias is None for layer in model)


def test_generation_is_deterministic():
    a, b = make_dln_problem(n=100, seed=5), make_dln_problem(n=100, seed=5)
    assert torch.equal(a.X, b.X)
    assert torch.equal(a.model[1].weight, b.model[1].weight)


def test_loss_is_half_squared_error_summed_over_outputs_per_sample():
    model = make_dln_model([2, 2, 3])
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    y = torch.zeros(2, 3)
    loss = dln_loss(model, (x, y))
    assert loss.shape == (2,)
    torch.testing.assert_close(loss, torch.tensor([0.5 * (1 + 4 + 9), 0.0]))
