"""The run the live benches watch: a small token LM whose steps are fast, so the store gets new
rows at every poll (bench/live_latency.py, bench/reader_overhead.py run it in a subprocess)."""

from __future__ import annotations

from collections.abc import Callable


def sample_toy_lm(
    *,
    store: str,
    chains: int,
    steps: int,
    threads: int,
    flush_interval: float,
    progress_callback: Callable,
    save_metrics: bool = False,
) -> None:
    """sample() an embedding + linear LM (vocab 64, 32 tokens) into `store`: `chains` x `steps`
    draws, one observable of 64 rows, every step reported to `progress_callback`."""
    import torch

    from devinterp_ui import sample

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vocab, seq = 64, 32
    model = torch.nn.Sequential(torch.nn.Embedding(vocab, 64), torch.nn.Linear(64, vocab))
    tokens = torch.randint(0, vocab, (2048, seq), generator=torch.Generator().manual_seed(1))
    sample(
        model,
        tokens,
        {"val": tokens[:64]},
        lr=1e-4,
        n_beta=30.0,
        num_chains=chains,
        num_draws=steps,
        batch_size=16,
        num_init_loss_batches=4,
        batches_per_draw=1,
        save_metrics=save_metrics,
        output_path=store,
        flush_interval=flush_interval,
        progress_callback=progress_callback,
        progress_bar=False,
    )
