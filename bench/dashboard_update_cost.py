"""A dashboard update costs the same at step 1k, 10k and 100k: evidence, with synthetic rows.

1. `LivePlots.update` (bokeh figures with a fixed point budget, BucketSeries underneath) fed
   `NewRows`-shaped batches of --batch-steps new steps per chain (a 4 Hz poll of a run at
   4 x 100 steps/s by default), from step 0 to --steps; the time of each update is recorded and
   summarised in windows ending at 1k, 10k and 100k steps, with the points held by the plots.
2. `StoreReader.read_new()` on a long synthetic store (4 chains, --steps steps, 9 metrics,
   2 observables, small per-token rows): rows are filled in bulk up to just before 1k, 10k and
   100k steps, then --polls polls each find --batch-steps new steps per chain; each poll is timed.

3. The Health panel's recompute (`HealthPanel.update(..., force=True)`: diagnose + health +
   the HTML) on a run of 1k, 10k and 100k steps per chain, fed as `StoreReader.accumulated()`
   gives it (loss trace only) and as the reader's rows with SGLD metrics; --polls repeats each
   (the fastest is the least disturbed figure on a shared machine).
   R-hat/ESS/MCSE run on at most MAX_DIAG_DRAWS draws per chain (thinned), so the arviz-stats
   part is flat; what is left is linear numpy work over the trace.

    python bench/dashboard_update_cost.py                 # to 100k steps (~1-2 min)
    python bench/dashboard_update_cost.py --steps 20000   # quicker; windows at 1k, 10k, 20k

Needs the UI dependencies (bokeh, panel) for parts 1 and 3; part 2 only the core.
`--skip-plots` skips part 1, `--skip-health` part 3.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import xarray as xr

from devinterp_ui.sgld import METRIC_NAMES

CHECKPOINTS = (1_000, 10_000, 100_000)


def _checkpoints(total: int) -> list[int]:
    points = [c for c in CHECKPOINTS if c < total]
    return [*points, total]


def _new_rows(chains: int, start: int, n: int, rng: np.random.Generator):
    """A NewRows look-alike: `n` steps (= draws) per chain from `start`."""
    chain = np.repeat(np.arange(chains), n)
    step = np.tile(np.arange(start, start + n), chains)
    size = chain.size
    steps = xr.Dataset(
        {
            "loss": ("row", 3 + 0.1 * rng.standard_normal(size)),
            "llc": ("row", 20 + rng.standard_normal(size)),
            **{
                f"metrics_{m}": ("row", np.abs(rng.standard_normal(size)).astype(np.float32) + 0.1)
                for m in METRIC_NAMES
            },
        },
        coords={"chain": ("row", chain), "step": ("row", step)},
    )
    draws = xr.Dataset(
        {f"loss_{o}": ("row", 3 + rng.standard_normal(size)) for o in ("a", "b", "c", "d")},
        coords={"chain": ("row", chain), "draw": ("row", step), "step": ("row", step)},
    )
    return SimpleNamespace(steps=steps, draws=draws, status=None, empty=False)


def plots_cost(args) -> list[str]:
    from devinterp_ui.ui.plots import LivePlots

    rng = np.random.default_rng(0)
    plots = LivePlots(args.chains, ["a", "b", "c", "d"], save_metrics=True)
    marks = _checkpoints(args.steps)
    window = {m: [] for m in marks}
    points = {}
    step = 0
    while step < args.steps:
        new = _new_rows(args.chains, step, args.batch_steps, rng)
        t0 = time.perf_counter()
        plots.update(new)
        took = time.perf_counter() - t0
        step += args.batch_steps
        for m in marks:
            if m - args.window_steps < step <= m:
                window[m].append(took)
            if step == m:
                points[m] = plots.points()
    lines = [
        f"LivePlots.update, {args.chains} chains, {args.batch_steps} new steps per chain "
        f"per update (all figures: loss, llc, 6 norms, 3 cosines, 4 observables)"
    ]
    for m in marks:
        t = np.array(window[m]) * 1e3
        lines.append(
            f"  at step {m:>7,}: {np.median(t):6.2f} ms median (min {t.min():.2f}, p90 "
            f"{np.percentile(t, 90):.2f}, {len(t)} updates); points held "
            f"{points.get(m, plots.points())}"
        )
    return lines


def reader_cost(args) -> list[str]:
    from devinterp_ui.live import StoreReader
    from devinterp_ui.store.progress import RunProgress
    from devinterp_ui.store.schema import Layout, build_schema
    from devinterp_ui.store.writer import StoreWriter

    chains, total = args.chains, args.steps + args.polls * args.batch_steps
    layout = Layout(
        num_chains=chains,
        total_steps=total,
        num_draws=total,
        batch_size=4,
        batch_sampling=4,
        num_positions=7,
        seq_len=8,
        observable_rows={"a": 8, "b": 8},
        save_metrics=True,
    )
    schema = build_schema(layout)
    progress = RunProgress.fresh(chains, total, total)
    attrs = {
        "metadata": {
            "config": {
                "sampler": {"n_beta": 10.0, "num_burnin_steps": 0},
                "observables": [{"obs_id": "a"}, {"obs_id": "b"}],
            }
        },
        "progress": progress.to_json(),
    }
    rng = np.random.default_rng(1)
    lines = [
        f"StoreReader.read_new(), {chains} chains, 9 metrics, 2 observables; each poll "
        f"finds {args.batch_steps} new steps per chain"
    ]
    with tempfile.TemporaryDirectory() as tmp:
        writer = StoreWriter(Path(tmp) / "run.zarr", schema, attrs)
        writer.write_whole("init_loss", np.full((chains, 7), 3.0, np.float32))
        writer.write_whole("n_beta", 10.0)
        reader = StoreReader(writer.path)
        done = 0

        def fill(to: int) -> None:
            nonlocal done
            for name, spec in schema.items():
                if spec.row_dim is None:
                    continue
                block = rng.standard_normal((chains, to - done, *spec.shape[2:]))
                writer.arrays[name][:, done:to] = block.astype(spec.dtype) + 3
            for c in progress.chains:
                c.steps_written = c.draws_written = to
            writer.root.attrs.update({"progress": progress.to_json()})
            done = to

        for mark in _checkpoints(args.steps):
            fill(mark - args.polls * args.batch_steps)
            reader.read_new()  # catch up, untimed
            took = []
            for _ in range(args.polls):
                fill(done + args.batch_steps)
                t0 = time.perf_counter()
                rows = reader.read_new()
                took.append(time.perf_counter() - t0)
                assert rows.steps.sizes["row"] == chains * args.batch_steps
            t = np.array(took) * 1e3
            lines.append(
                f"  at step {done:>7,}: {statistics.median(t):6.2f} ms median "
                f"({t.min():.2f}..{t.max():.2f}, {len(t)} polls)"
            )
        writer.close()
    return lines


def _health_sources(chains: int, steps: int, rng: np.random.Generator):
    """(accumulated, rows): a run of `steps` steps per chain as StoreReader.accumulated() and
    as concatenated reader rows with SGLD metrics."""
    loss = 3 + 0.1 * rng.standard_normal((chains, steps))
    attrs = {"metadata": {"config": {"sampler": {"n_beta": 10.0, "num_burnin_steps": 0}}}}
    accumulated = xr.Dataset(
        {
            "loss_trace": (("chain", "step"), loss),
            "init_loss": (("chain", "token_pos"), np.full((chains, 7), 2.9)),
        },
        attrs=attrs,
    )
    chain, step = np.meshgrid(np.arange(chains), np.arange(steps), indexing="ij")
    metric = np.abs(rng.standard_normal(loss.size)) + 0.1
    rows = xr.Dataset(
        {
            "loss": ("row", loss.ravel()),
            **{
                f"metrics_{m}": ("row", metric) for m in ("scaled_grad", "localization", "distance")
            },
        },
        coords={"chain": ("row", chain.ravel()), "step": ("row", step.ravel())},
        attrs={"n_beta": 10.0, "init_loss": 2.9, "num_burnin_steps": 0},
    )
    return accumulated, rows


def health_cost(args) -> list[str]:
    from devinterp_ui.analysis.diagnostics import MAX_DIAG_DRAWS
    from devinterp_ui.ui.health_panel import HealthPanel

    rng = np.random.default_rng(2)
    lines = [
        f"HealthPanel.update(force=True): diagnose + health + HTML, {args.chains} chains; "
        f"R-hat/ESS/MCSE on <= {MAX_DIAG_DRAWS} draws per chain"
    ]
    for mark in _checkpoints(args.steps):
        accumulated, rows = _health_sources(args.chains, mark, rng)
        for label, source in (("accumulated", accumulated), ("rows+metrics", rows)):
            panel = HealthPanel()
            took = []
            for _ in range(max(args.polls // 2, 3)):
                t0 = time.perf_counter()
                panel.update(source, force=True)
                took.append(time.perf_counter() - t0)
            t = np.array(took) * 1e3
            lines.append(
                f"  at step {mark:>7,} ({label:>12}): {t.min():7.1f} ms fastest, "
                f"{statistics.median(t):.1f} median, {t.max():.1f} slowest; "
                f"thin {panel.diagnostics.attrs['thin']}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--batch-steps", type=int, default=100)
    parser.add_argument(
        "--window-steps",
        type=int,
        default=2_000,
        help="updates in the last N steps before each checkpoint are summarised",
    )
    parser.add_argument("--polls", type=int, default=10)
    parser.add_argument("--skip-plots", action="store_true")
    parser.add_argument("--skip-health", action="store_true")
    args = parser.parse_args()
    if not args.skip_plots:
        print("\n".join(plots_cost(args)), flush=True)
    print("\n".join(reader_cost(args)), flush=True)
    if not args.skip_health:
        print("\n".join(health_cost(args)))


if __name__ == "__main__":
    main()
