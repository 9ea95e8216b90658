"""tokenize_and_concatenate with tokenizers built here (character-level WordLevel; no download)."""

import pytest
import torch

from devinterp_ui import tokenize_and_concatenate

tokenizers = pytest.importorskip("tokenizers")

CHARS = list("abcdefghijklmnopqrstuvwxyz ")
VOCAB = {c: i for i, c in enumerate(["[UNK]", "[EOS]", *CHARS])}


def _tokenizer():
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    return tok


def _ids(text):
    return [VOCAB[c] for c in text]


def test_texts_are_concatenated_and_cut_into_rows():
    rows = tokenize_and_concatenate(["abc", "de"], _tokenizer(), 2, separator_id=1)
    assert rows.dtype == torch.long
    assert rows.tolist() == [_ids("ab"), [VOCAB["c"], 1], _ids("de")]


def test_incomplete_tail_is_dropped_and_bos_prepended():
    rows = tokenize_and_concatenate(["abcdefg"], _tokenizer(), 3, prepend_bos_id=1)
    assert rows.tolist() == [[1, *_ids("ab")], [1, *_ids("cd")], [1, *_ids("ef")]]


def test_transformers_tokenizer_separates_texts_with_its_eos():
    transformers = pytest.importorskip("transformers")
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(), eos_token="[EOS]", unk_token="[UNK]"
    )
    rows = tokenize_and_concatenate({"text": ["ab", "cd"]}, tok, 5)
    assert rows.tolist() == [[*_ids("ab"), 1, *_ids("cd")]]


def test_hf_dataset_column_and_errors():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"body": ["hello world", "again"]})
    rows = tokenize_and_concatenate(ds, _tokenizer(), 4, column="body")
    assert rows.shape == (4, 4)
    with pytest.raises(ValueError, match="no column 'text'"):
        tokenize_and_concatenate(ds, _tokenizer(), 4)
    with pytest.raises(ValueError, match="fewer than one row"):
        tokenize_and_concatenate(ds, _tokenizer(), 64, column="body")
    with pytest.raises(ValueError, match="seq_len"):
        tokenize_and_concatenate(ds, _tokenizer(), 1, column="body")
