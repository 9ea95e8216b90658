"""The child side of a `DemoProcessJob`: `python -m devinterp_ui.live.demo_worker SPEC_JSON`.

Loads the demo named in the spec, runs a `SamplingJob` on it into the spec's output path, and
reports through two small JSON files next to the spec, each replaced atomically:
`progress.json` (the job's `JobProgress`, every `PROGRESS_S`) and `outcome.json` (the final
state and, for a failure, its message and traceback). SIGTERM or SIGINT asks the run to stop at
the next step; so does the parent process going away (a server killed without cleanup must not
leave orphans sampling).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

# Seconds between progress reports (the dashboard polls every 400 ms).
PROGRESS_S = 0.3


def write_json(path: Path, data: dict) -> None:
    """Replace `path` with `data` in one rename, so that the parent never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main(spec_path: str) -> int:
    spec_file = Path(spec_path)
    spec = json.loads(spec_file.read_text())
    folder = spec_file.parent
    parent = os.getppid()
    job = None
    stopping = threading.Event()

    def ask_stop(*_args) -> None:
        stopping.set()
        if job is not None:
            job.stop()

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    try:
        import torch

        torch.set_num_threads(int(spec.get("torch_threads", 1)))
        from devinterp_ui.demo import load_demo
        from devinterp_ui.live.job import SamplingJob

        demo = load_demo(spec["demo"], spec["step"])
        observables = {name: demo.datasets[name] for name in spec["observables"]}
        job = SamplingJob(
            demo.model,
            demo.datasets["train"],
            observables,
            loss_fn=demo.loss_fn,
            output_path=spec["output_path"],
            **spec["settings"],
        )
        job.start(wait=False)
        if stopping.is_set():  # a stop that came while the demo loaded
            job.stop()
        while not job.wait(PROGRESS_S):
            write_json(folder / "progress.json", _progress(job))
            if os.getppid() != parent:
                job.stop()
        write_json(folder / "progress.json", _progress(job))
        error = job.error
        outcome = {
            "state": job.state,
            "message": None if error is None else error.message,
            "traceback": None if error is None else error.traceback,
            "failed_before_store": job.failed_before_store,
        }
    except BaseException as exc:  # every way the child can end is reported to the parent
        outcome = {
            "state": "failed",
            "message": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc)),
            "failed_before_store": not (Path(spec["output_path"]) / "zarr.json").is_file(),
        }
    write_json(folder / "outcome.json", outcome)
    return 0


def _progress(job) -> dict:
    return dataclasses.asdict(job.progress)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
