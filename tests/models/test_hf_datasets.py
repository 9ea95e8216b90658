"""Hugging Face `datasets.Dataset`s read as whole columns, in every format, as fast as a tensor."""

import numpy as np
import pytest
import torch

from devinterp_ui.data import TokenTensorSource, as_source

datasets = pytest.importorskip("datasets")

IDS = torch.randint(0, 50, (40, 6), generator=torch.Generator().manual_seed(0))


def _dataset(**columns):
    return datasets.Dataset.from_dict({"input_ids": IDS.tolist(), **columns})


@pytest.mark.parametrize("fmt", [None, "numpy", "torch", "arrow"])
def test_every_format_reads_as_the_same_tensor(fmt):
    source = as_source(_dataset().with_format(fmt), "dataset")
    assert isinstance(source, TokenTensorSource)
    assert torch.equal(source.ids, IDS)
    assert torch.equal(source.batch(np.array([3, 1]), "cpu"), IDS[[3, 1]])


def test_shuffled_and_selected_rows_keep_their_order():
    ds = _dataset().shuffle(seed=2).select([5, 0, 7])
    expected = torch.tensor([row["input_ids"] for row in ds])
    assert torch.equal(as_source(ds, "dataset").ids, expected)


def test_no_row_is_read_one_at_a_time(monkeypatch):
    original = datasets.Dataset.__getitem__

    def whole_columns_only(self, key):
        if not isinstance(key, str):
            raise AssertionError(f"row access {key!r}")
        return original(self, key)

    monkeypatch.setattr(datasets.Dataset, "__getitem__", whole_columns_only)
    assert torch.equal(as_source(_dataset().with_format("torch"), "dataset").ids, IDS)


def test_ragged_rows_are_refused_naming_the_row():
    ds = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3], [1, 2, 3], [1, 2]]})
    with pytest.raises(ValueError, match="row 0 has 3 tokens, row 2 has 2"):
        as_source(ds, "dataset")


def test_attention_mask_column_with_padding_gives_dict_batches():
    mask = np.ones((40, 6), dtype=np.int64)
    mask[4, 3:] = 0
    source = as_source(_dataset(attention_mask=mask.tolist()), "dataset")
    batch = source.batch(np.array([4, 0]), "cpu")
    assert torch.equal(batch["input_ids"], IDS[[4, 0]])
    assert batch["attention_mask"].tolist()[0] == [1, 1, 1, 0, 0, 0]


def test_dataset_without_input_ids_stays_rows():
    ds = datasets.Dataset.from_dict({"x": [[1.0], [2.0]], "y": [0, 1]}).with_format("torch")
    assert as_source(ds, "dataset").kind == "rows"


def test_a_dataset_dict_asks_for_one_split():
    splits = datasets.DatasetDict({"train": _dataset(), "test": _dataset()})
    with pytest.raises(TypeError, match=r"pass one split, e.g. ds\['train'\]"):
        as_source(splits, "dataset")
