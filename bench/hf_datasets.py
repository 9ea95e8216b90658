"""sample() fed a Hugging Face `datasets.Dataset` against the same token ids as a tensor.

Both runs sample the demo TinyLM with the same settings; only the dataset object differs. The
Dataset goes in as a user would pass it (torch format unless --format says otherwise); it is
read once as whole Arrow columns (devinterp_ui/hf_data.py), so after that the run should cost
what the tensor run costs. Also printed: the one-off column read and, for reference, reading the
column the slow way (`np.asarray(ds["input_ids"])`, one Python row at a time, what a
`datasets` 4.x or 5.x `Column` gives).

    python bench/hf_datasets.py                    # 2 chains x 40 draws, 20k rows of 64 tokens
    python bench/hf_datasets.py --reps 5 --draws 50
    python bench/hf_datasets.py --format numpy

Times are process CPU time (all threads), which neighbours on a shared machine disturb less
than wall time. Reps alternate (tensor, dataset, dataset, tensor, ...); the ratio is the
median over reps of dataset time / tensor time of the same rep.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from devinterp_ui import sample
from devinterp_ui.data import as_source
from devinterp_ui.demo.tiny_lm import TinyLM, TinyLMConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--format", default="torch", choices=["torch", "numpy", "arrow", "none"])
    args = parser.parse_args()

    import datasets

    torch.set_num_threads(1)
    vocab = 512
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (args.rows, args.seq_len), generator=gen)
    ds = datasets.Dataset.from_dict({"input_ids": ids.numpy()})
    ds = ds.with_format(None if args.format == "none" else args.format)
    model = TinyLM(TinyLMConfig(vocab_size=vocab, seq_len=args.seq_len))
    settings = dict(
        lr=1e-4,
        n_beta=30.0,
        num_chains=args.chains,
        num_draws=args.draws,
        batch_size=args.batch_size,
        num_init_loss_batches=4,
        progress_bar=False,
    )

    start = time.perf_counter()
    source = as_source(ds, "dataset")
    read = time.perf_counter() - start
    assert torch.equal(source.ids, ids)
    slow_rows = min(args.rows, 2000)
    start = time.perf_counter()
    np.asarray(ds.with_format(None).select(range(slow_rows))["input_ids"])
    slow = (time.perf_counter() - start) * args.rows / slow_rows

    def run(data) -> float:
        # Process CPU time (every thread of this process): on a machine shared with other
        # work, wall time mostly measures the neighbours.
        start = time.process_time()
        sample(model, data, {}, **settings)
        return time.process_time() - start

    run(ids)  # warm-up: imports, allocator, zarr
    ratios, tensor_times, dataset_times = [], [], []
    for rep in range(args.reps):
        order = [("tensor", ids), ("dataset", ds)]
        if rep % 2:
            order.reverse()
        times = {name: run(data) for name, data in order}
        tensor_times.append(times["tensor"])
        dataset_times.append(times["dataset"])
        ratios.append(times["dataset"] / times["tensor"])

    print(
        f"rows {args.rows} x {args.seq_len} tokens, format {args.format}, datasets {datasets.__version__}"
    )
    print(f"column read once (Arrow, whole): {read * 1e3:.1f} ms")
    print(f"same column row by row (np.asarray(Column), extrapolated): {slow * 1e3:.0f} ms")
    print(
        f"sample() {args.chains} chains x {args.draws} draws, batch {args.batch_size}: "
        f"tensor {statistics.median(tensor_times):.2f} s, dataset "
        f"{statistics.median(dataset_times):.2f} s CPU (medians of {args.reps})"
    )
    print(
        f"dataset / tensor: {statistics.median(ratios):.3f} "
        f"(per rep {min(ratios):.3f}..{max(ratios):.3f}; goal <= 1.10)"
    )


if __name__ == "__main__":
    main()
