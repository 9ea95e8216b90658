"""How long the run library takes to list N stores: cold scan, warm rescan, table build.

Makes one real store with sample() (tiny LM, 2 chains x 5 draws) and copies it N times into a
temporary runs directory (real stores, byte for byte), then times:
  1. `RunIndex.scan()` on a cold index (reads every store's root zarr.json once);
  2. the same scan again (warm: unchanged stores cost one stat each);
  3. a warm scan after 10 stores changed (their marker rewritten);
  4. `RunLibrary(runs_dir)`: scan plus the table's DataFrame, as a page load pays it, and how
     many of its rows show an LLC at once (every store records its final LLC in its root attrs);
  5. reading one store's traces (what ticking a row costs), cold and cached;
  6. older stores without the LLC record (`--older`, the record stripped from that many copies):
     how long the index's background thread takes until every one shows its LLC.

    python bench/run_library.py            # 1,000 stores, 100 of them without the record
    python bench/run_library.py --stores 200 --older 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def make_template(root: Path) -> Path:
    from devinterp_ui import sample

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(11, 6), torch.nn.Linear(6, 11))
    data = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(1))
    path = root / "template.zarr"
    sample(model, data, {"o": data}, lr=1e-3, n_beta=20.0, num_chains=2, num_draws=5,
           batch_size=8, num_init_loss_batches=1, output_path=path, progress_bar=False)  # fmt: skip
    return path


def timed(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--older", type=int, default=100)
    args = parser.parse_args()

    from devinterp_ui.ui.run_index import RunIndex
    from devinterp_ui.ui.run_library import RunLibrary

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        template = make_template(tmp)
        runs = tmp / "runs"
        runs.mkdir()
        t0 = time.perf_counter()
        for i in range(args.stores):
            shutil.copytree(template, runs / f"run{i:05d}.zarr")
        print(f"{args.stores} stores copied in {time.perf_counter() - t0:.1f} s")

        cold = []
        for _ in range(3):
            index = RunIndex(runs)
            t0 = time.perf_counter()
            listed = index.scan()
            cold.append(time.perf_counter() - t0)
        assert len(listed) == args.stores
        print(f"cold scan (root attrs of every store): {statistics.median(cold) * 1e3:8.1f} ms")
        print(f"warm rescan (nothing changed):         {timed(index.scan) * 1e3:8.1f} ms")

        for i in range(10):
            meta = runs / f"run{i:05d}.zarr" / "zarr.json"
            doc = json.loads(meta.read_text())
            doc["attributes"]["progress"]["updated_at"] += 1
            meta.write_text(json.dumps(doc))
        t0 = time.perf_counter()
        index.scan()
        print(f"rescan with 10 stores changed:         {(time.perf_counter() - t0) * 1e3:8.1f} ms")

        t_lib = timed(lambda: RunLibrary(runs, index=index))
        print(f"RunLibrary with its table (warm index): {t_lib * 1e3:7.1f} ms")
        t_lib_cold = timed(lambda: RunLibrary(runs))
        print(f"RunLibrary with its table (cold index): {t_lib_cold * 1e3:7.1f} ms")
        frame = RunLibrary(runs, max_rows=args.stores).table.object
        shown = int(frame["LLC"].notna().sum())
        print(f"rows showing an LLC at once (recorded): {shown} of {len(frame)}")

        t0 = time.perf_counter()
        index.traces(listed[0])
        first = time.perf_counter() - t0  # includes starting Zarr's I/O loop
        cold = []
        for summary in listed[1:6]:
            t0 = time.perf_counter()
            index.traces(summary)
            cold.append(time.perf_counter() - t0)
        warm = timed(lambda: index.traces(listed[1]))
        print(
            f"traces of one store: {first * 1e3:.0f} ms the first time in a process, then "
            f"{statistics.median(cold) * 1e3:.1f} ms per new store, {warm * 1e6:.1f} us cached"
        )

        older = min(args.older, args.stores)
        for i in range(older):
            meta = runs / f"run{args.stores - 1 - i:05d}.zarr" / "zarr.json"
            doc = json.loads(meta.read_text())
            doc["attributes"].pop("llc_summary", None)
            meta.write_text(json.dumps(doc))
        index = RunIndex(runs)
        t0 = time.perf_counter()
        library = RunLibrary(runs, index=index, max_rows=args.stores)
        t_table = time.perf_counter() - t0
        missing = int(library.table.object["LLC"].isna().sum())
        assert index.wait_llc(3600)
        t_fill = time.perf_counter() - t0
        library.refresh()
        left = int(library.table.object["LLC"].isna().sum())
        print(
            f"{older} older stores: table drawn in {t_table * 1e3:.0f} ms with {missing} LLCs "
            f"pending; all computed in the background after {t_fill:.1f} s "
            f"({t_fill / max(older, 1) * 1e3:.0f} ms each); {left} still missing"
        )


if __name__ == "__main__":
    main()
