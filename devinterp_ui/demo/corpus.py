"""A synthetic corpus: four toy "languages" over one shared vocabulary, generated from a seed.

Each language has a different kind of structure, so that a model trained on their mixture learns
distinguishable mechanisms, and each language, used as an observable, shows them apart:

- ``sparse``: a Markov chain where every token has three possible successors, one dominant
  (probabilities 0.8 / 0.15 / 0.05): nearly deterministic bigrams, entropy about 0.61 nats/token.
- ``uniform``: a Markov chain whose rows are drawn from a flat Dirichlet(8): almost no structure,
  entropy close to ln(vocab_size).
- ``repeat``: a motif of 4-8 distinct random tokens repeated to fill the sequence; after the first
  period every token is predictable by copying (an induction-head task).
- ``zipf``: independent tokens from a Zipf(1.1) unigram law over a shuffled vocabulary: frequency
  structure but no context dependence.

Every array depends only on the :class:`CorpusConfig` (numpy's PCG64 streams keyed by
``[seed, language, split]``), so the data need not be shipped: it is regenerated on load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

LANGUAGES: tuple[str, ...] = ("sparse", "uniform", "repeat", "zipf")

LANGUAGE_DESCRIPTIONS: dict[str, str] = {
    "sparse": "Markov chain, 3 successors per token (p = 0.8/0.15/0.05)",
    "uniform": "Markov chain with near-uniform rows (Dirichlet(8))",
    "repeat": "a motif of 4-8 distinct tokens repeated (copying / induction)",
    "zipf": "i.i.d. tokens from a Zipf(1.1) unigram law",
}

# Sub-stream keys: the language's structure (transition matrix, unigram law) is shared by all
# splits; the sequences of each split come from their own stream.
_STRUCTURE, _TRAIN, _HELDOUT, _MIXTURE = 0, 1, 2, 3


@dataclass(frozen=True)
class CorpusConfig:
    """Everything the corpus depends on. ``n_*`` are sequences per language."""

    seed: int = 0
    vocab_size: int = 32
    seq_len: int = 32
    n_train_per_language: int = 4096
    n_heldout_per_language: int = 512

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Corpus:
    """Token-id tensors (int64) of a generated corpus.

    - ``train``: (len(LANGUAGES) * n_train_per_language, seq_len), the languages' training
      sequences shuffled together.
    - ``train_language``: (same N,), index into ``LANGUAGES`` of each training row.
    - ``heldout``: language name -> (n_heldout_per_language, seq_len), disjoint draws from the
      same language, never seen in training.
    """

    config: CorpusConfig
    train: torch.Tensor
    train_language: torch.Tensor
    heldout: dict[str, torch.Tensor]


def make_corpus(config: CorpusConfig | None = None) -> Corpus:
    """Generate the corpus for ``config`` (deterministic; about 0.1 s for the default size)."""
    config = config or CorpusConfig()
    if config.vocab_size < 8:
        raise ValueError(
            f"vocab_size must be at least 8 (the repeat motifs), got {config.vocab_size}"
        )
    train_parts, heldout = [], {}
    for name in LANGUAGES:
        train_parts.append(language_sequences(name, config.n_train_per_language, config, _TRAIN))
        heldout[name] = torch.from_numpy(
            language_sequences(name, config.n_heldout_per_language, config, _HELDOUT)
        )
    train = np.concatenate(train_parts)
    labels = np.repeat(np.arange(len(LANGUAGES)), config.n_train_per_language)
    order = np.random.default_rng([config.seed, _MIXTURE]).permutation(len(train))
    return Corpus(
        config=config,
        train=torch.from_numpy(train[order]),
        train_language=torch.from_numpy(labels[order]),
        heldout=heldout,
    )


def language_sequences(name: str, n: int, config: CorpusConfig, split: int) -> np.ndarray:
    """(n, seq_len) int64 token ids of language ``name`` from the stream of ``split``."""
    if name not in LANGUAGES:
        raise ValueError(f"unknown language {name!r}; languages: {', '.join(LANGUAGES)}")
    index = LANGUAGES.index(name)
    structure_rng = np.random.default_rng([config.seed, index, _STRUCTURE])
    rng = np.random.default_rng([config.seed, index, split])
    vocab, seq_len = config.vocab_size, config.seq_len
    if name == "sparse":
        return _sample_markov(_sparse_transitions(vocab, structure_rng), n, seq_len, rng)
    if name == "uniform":
        transitions = structure_rng.dirichlet(np.full(vocab, 8.0), size=vocab)
        return _sample_markov(transitions, n, seq_len, rng)
    if name == "repeat":
        return _sample_repeats(n, seq_len, vocab, rng)
    ranks = structure_rng.permutation(vocab)
    unigram = 1.0 / (ranks + 1.0) ** 1.1
    return rng.choice(vocab, size=(n, seq_len), p=unigram / unigram.sum()).astype(np.int64)


def _sparse_transitions(vocab: int, rng: np.random.Generator) -> np.ndarray:
    """(vocab, vocab) row-stochastic matrix with three successors per token."""
    transitions = np.zeros((vocab, vocab))
    for token in range(vocab):
        successors = rng.choice(vocab, size=3, replace=False)
        transitions[token, successors] = (0.8, 0.15, 0.05)
    return transitions


def _sample_markov(
    transitions: np.ndarray, n: int, seq_len: int, rng: np.random.Generator
) -> np.ndarray:
    """Sequences from a Markov chain with a uniform start token: (n, seq_len) int64."""
    vocab = len(transitions)
    cumulative = np.cumsum(transitions, axis=1)
    tokens = np.empty((n, seq_len), dtype=np.int64)
    tokens[:, 0] = rng.integers(vocab, size=n)
    for t in range(1, seq_len):
        u = rng.random(n)
        # Inverse-CDF sampling, vectorised over rows; the clip guards against a last cumulative
        # entry a rounding error below 1.
        tokens[:, t] = np.minimum((cumulative[tokens[:, t - 1]] < u[:, None]).sum(1), vocab - 1)
    return tokens


def _sample_repeats(n: int, seq_len: int, vocab: int, rng: np.random.Generator) -> np.ndarray:
    """Each row: a motif of 4-8 distinct tokens tiled to seq_len. (n, seq_len) int64."""
    motifs = np.argsort(rng.random((n, vocab)), axis=1)[:, :8]
    periods = rng.integers(4, 9, size=n)
    positions = np.arange(seq_len)[None, :] % periods[:, None]
    return np.take_along_axis(motifs, positions, axis=1).astype(np.int64)
