"""Demo models and data that run on a CPU with nothing downloaded.

>>> from devinterp_ui.demo import load_demo, list_demos
>>> demo = load_demo("tiny_lm")              # final checkpoint; load_demo("tiny_lm", step=448)
>>> tree = sample(demo.model, demo.datasets["train"], {"repeat": demo.datasets["repeat"]},
...               **demo.sampler_settings)
>>> dln = load_demo("dln")                   # dln.true_lambda == 6.0; dln.loss_fn is set

Modules: ``tiny_lm`` (the model), ``corpus`` (synthetic languages), ``dln`` (deep linear network
problem), ``train`` (makes the LM's checkpoints), ``trajectory`` (reads them), ``sampler_settings``
(suggested ``sample()`` arguments), ``catalog`` (``load_demo``/``list_demos``).
"""

from devinterp_ui.demo.catalog import Demo, DemoInfo, list_demos, load_demo
from devinterp_ui.demo.corpus import LANGUAGES, Corpus, CorpusConfig, make_corpus
from devinterp_ui.demo.dln import DLNProblem, dln_loss, make_dln_model, make_dln_problem
from devinterp_ui.demo.tiny_lm import TinyLM, TinyLMConfig, next_token_loss

__all__ = [
    "LANGUAGES",
    "Corpus",
    "CorpusConfig",
    "DLNProblem",
    "Demo",
    "DemoInfo",
    "TinyLM",
    "TinyLMConfig",
    "dln_loss",
    "list_demos",
    "load_demo",
    "make_corpus",
    "make_dln_model",
    "make_dln_problem",
    "next_token_loss",
]
