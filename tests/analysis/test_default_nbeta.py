"""default_nbeta takes a sample count or a DataLoader, with gradient accumulation, as devinterp."""

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from devinterp_ui.analysis import default_nbeta


def test_n_over_log_n():
    assert default_nbeta(100) == pytest.approx(100 / math.log(100))


def test_gradient_accumulation_multiplies_n():
    assert default_nbeta(16, gradient_accumulation_steps=4) == pytest.approx(64 / math.log(64))


def test_dataloader_uses_its_batch_size():
    loader = DataLoader(TensorDataset(torch.zeros(100, 1)), batch_size=32)
    assert default_nbeta(loader, 2) == pytest.approx(64 / math.log(64))


@pytest.mark.parametrize("bad", [1, 0.5, -3])
def test_n_at_most_one_is_refused(bad):
    with pytest.raises(ValueError, match="n > 1"):
        default_nbeta(bad)


def test_bad_accumulation_and_types_are_refused():
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        default_nbeta(10, gradient_accumulation_steps=0)
    with pytest.raises(TypeError, match="DataLoader"):
        default_nbeta("100")
