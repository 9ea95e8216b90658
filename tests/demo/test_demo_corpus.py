"""The synthetic corpus: deterministic, shaped as promised, languages really differ."""

import math

import pytest
import torch

from devinterp_ui.demo import LANGUAGES, CorpusConfig, make_corpus
from devinterp_ui.demo.corpus import language_sequences

SMALL = CorpusConfig(seed=3, n_train_per_language=256, n_heldout_per_language=64)


def test_same_config_gives_identical_data():
    a, b = make_corpus(SMALL), make_corpus(SMALL)
    assert torch.equal(a.train, b.train)
    assert torch.equal(a.train_language, b.train_language)
    for name in LANGUAGES:
        assert torch.equal(a.heldout[name], b.heldout[name])


def test_another_seed_gives_other_data():
    other = CorpusConfig(seed=4, n_train_per_language=256, n_heldout_per_language=64)
    assert not torch.equal(make_corpus(SMALL).train, make_corpus(other).train)


def test_shapes_and_dtypes():
    corpus = make_corpus(SMALL)
    assert corpus.train.shape == (4 * 256, SMALL.seq_len)
    assert corpus.train.dtype == torch.int64
    assert corpus.train_language.shape == (4 * 256,)
    assert torch.bincount(corpus.train_language).tolist() == [256] * 4
    assert set(corpus.heldout) == set(LANGUAGES)
    for data in corpus.heldout.values():
        assert data.shape == (64, SMALL.seq_len) and data.dtype == torch.int64
        assert data.min() >= 0 and data.max() < SMALL.vocab_size


def test_training_mixture_is_the_languages_training_streams_shuffled():
    corpus = make_corpus(SMALL)
    for index, name in enumerate(LANGUAGES):
        rows = corpus.train[corpus.train_language == index]
        expected = torch.from_numpy(language_sequences(name, 256, SMALL, split=1))
        assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, expected.tolist()))


def test_heldout_rows_are_not_training_rows():
    corpus = make_corpus(SMALL)
    train_rows = set(map(tuple, corpus.train.tolist()))
    for name in ("sparse", "uniform", "zipf"):  # repeat has few distinct rows by design
        assert not train_rows & set(map(tuple, corpus.heldout[name].tolist()))


def _bigram_entropy(data: torch.Tensor, vocab: int) -> float:
    """Empirical conditional entropy H(next | current) in nats."""
    pairs = data[:, :-1] * vocab + data[:, 1:]
    counts = torch.bincount(pairs.flatten(), minlength=vocab * vocab).view(vocab, vocab).double()
    joint = counts / counts.sum()
    conditional = counts / counts.sum(1, keepdim=True).clamp(min=1)
    return float(-(joint * torch.log(conditional.clamp(min=1e-300))).sum())


def test_languages_have_different_structure():
    corpus = make_corpus(CorpusConfig(n_train_per_language=8, n_heldout_per_language=1024))
    entropy = {name: _bigram_entropy(corpus.heldout[name], 32) for name in LANGUAGES}
    assert entropy["sparse"] < 0.8  # three successors, 0.8/0.15/0.05
    assert entropy["uniform"] > math.log(32) - 0.3
    assert entropy["sparse"] < entropy["zipf"] < entropy["uniform"]
    repeat = corpus.heldout["repeat"]
    periods = torch.tensor(
        [next(p for p in range(4, 9) if torch.equal(r[p:], r[:-p])) for r in repeat]
    )
    assert periods.min() >= 4 and periods.max() <= 8


def test_unknown_language_error_lists_languages():
    with pytest.raises(ValueError, match="sparse, uniform, repeat, zipf"):
        language_sequences("klingon", 4, SMALL, split=1)
