"""A GPT-2-small-sized model end to end on CPU: time per SGLD step and peak memory.

`transformers.GPT2LMHeadModel(GPT2Config())` (124M parameters, random init, nothing
downloaded) sampled by `sample()` with the default next-token loss (called without a KV
cache) on random token rows. Peak resident memory is polled every 20 ms from /proc during the
run and reported above the process's memory just before the model was built, in units of one
model copy (parameters x 4 bytes): the budget is (chains + 2) copies (the caller's model, which
also serves as the chains' anchors, and one per chain) plus buffers bounded by the batch
(activations, logits B x T x vocab), by one parameter (a tied embedding's gradient) and the
store's row chunks (docs/performance.md sections 11 and 15). A lockstep or sequential chain
updates each segment inside the backward, so the model's gradients never exist at once;
`--plain-step` makes it compute them all first and update after (the way before), to compare.
Run under `MALLOC_MMAP_THRESHOLD_=131072` to see the peak without glibc's freed-page slack.

    python bench/midsize_model.py                          # 1 chain, 4 draws, batch 4 x 128
    python bench/midsize_model.py --draws 8 --seq-len 256
    python bench/midsize_model.py --plain-step                # every gradient, then the update
    python bench/midsize_model.py --device cuda --chains 4 --schedule vectorized   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import torch

from devinterp_ui import sample


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Highest resident set size seen while the block runs (polled every 20 ms)."""

    def __enter__(self):
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=1)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--schedule", default="lockstep")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument(
        "--plain-step", action="store_true", help="no update inside the backward (to compare)"
    )
    args = parser.parse_args()
    if args.plain_step:
        from devinterp_ui.chain import PlainGradient

        PlainGradient.updates_in_backward = lambda *a: False
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    before = _rss()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    copy_bytes = n_params * 4
    built = _rss()
    ids = torch.randint(0, model.config.vocab_size, (args.rows, args.seq_len))
    step_times: list[float] = []

    def on_step(summary) -> None:
        step_times.append(time.perf_counter())

    start = time.perf_counter()
    with PeakRss() as peak:
        tree = sample(
            model,
            ids,
            {},
            lr=1e-6,
            n_beta=10.0,
            num_chains=args.chains,
            num_draws=args.draws,
            batch_size=args.batch_size,
            num_init_loss_batches=1,
            device=args.device,
            chain_schedule=args.schedule,
            progress_callback=on_step,
            progress_bar=False,
        )
    total = time.perf_counter() - start
    gaps = [b - a for a, b in zip(step_times, step_times[1:], strict=False)]
    per_step = statistics.median(gaps) if gaps else float("nan")
    above = peak.peak - before
    loss = float(tree["sampling_loss_micro"].mean())
    print(
        f"GPT2LMHeadModel(GPT2Config()): {n_params / 1e6:.1f}M parameters, one copy {copy_bytes / 2**20:.0f} MiB"
    )
    print(
        f"{args.chains} chain(s) x {args.draws} draws, batch {args.batch_size} x {args.seq_len} "
        f"tokens, {args.device}, {args.schedule}, torch threads {torch.get_num_threads()}, "
        f"{'plain step' if args.plain_step else 'update inside the backward'}"
    )
    print(f"time per chain step (median of {len(gaps)}): {per_step:.2f} s; whole run {total:.1f} s")
    logits = args.batch_size * args.seq_len * model.config.vocab_size * 4
    print(
        f"peak RSS above start: {above / 2**20:.0f} MiB = {above / copy_bytes:.2f} model copies "
        f"(budget {args.chains + 2} copies + buffers; one logits tensor is {logits / 2**20:.0f} MiB)"
    )
    print(
        f"  of which the caller's model as built: {(built - before) / copy_bytes:.2f} copies; "
        f"sample() itself: {(peak.peak - built) / copy_bytes:.2f} copies"
    )
    print(f"mean sampling loss {loss:.3f} (ln vocab = {torch.log(torch.tensor(50257.0)):.3f})")


if __name__ == "__main__":
    main()
