"""A sampling process killed with SIGKILL at random moments leaves a store that tells the truth."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from live_fixtures import observables_of

from devinterp_ui import StoreConflictError, compute_llc, sample
from devinterp_ui.live import StoreReader

# Long enough (2 chains x 3000 steps) that every kill lands mid-run; flushing every 5 ms makes
# kills between a chunk write and the marker write likely.
SETTINGS = {
    "lr": 1e-3,
    "n_beta": 10.0,
    "num_chains": 2,
    "num_draws": 1500,
    "num_burnin_steps": 20,
    "num_steps_bw_draws": 2,
    "batch_size": 8,
    "num_init_loss_batches": 2,
    "batches_per_draw": 2,
    "save_metrics": True,
}

SCRIPT = """
import json, sys
sys.path[:0] = [{tests_dir!r}, {tests_root!r}]
import torch
torch.set_num_threads(1)
from live_fixtures import ToyLM, VOCAB, ROWS, SEQ_LEN, observables_of
torch.manual_seed(0)
model = ToyLM()
tokens = torch.randint(0, VOCAB, (ROWS, SEQ_LEN), generator=torch.Generator().manual_seed(1))
settings = json.loads(sys.argv[2])
if sys.argv[3] == "job":
    from devinterp_ui.live.job import SamplingJob
    SamplingJob(model, tokens, observables_of(tokens), output_path=sys.argv[1], **settings).start().wait()
else:
    from devinterp_ui import sample
    sample(model, tokens, observables_of(tokens), output_path=sys.argv[1], progress_bar=False, **settings)
"""


def kill_mid_run(tmp_path: Path, seed: int, runner: str) -> Path:
    """Run the script, SIGKILL it once a random number of steps is written (plus a random
    delay), and return the store path."""
    rng = random.Random(seed)
    script = tmp_path / "run_sampler.py"
    here = Path(__file__).parent
    script.write_text(SCRIPT.format(tests_dir=str(here), tests_root=str(here.parent)))
    path = tmp_path / "run.zarr"
    settings = {**SETTINGS, "flush_interval": 0.005}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), json.dumps(settings), runner],
        stderr=subprocess.PIPE,
    )
    target = rng.randint(1, 40)  # burn-in is 20 steps: some kills land in it
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (path / "zarr.json").is_file():
                status = StoreReader(path).status()
                if status.recorded_status and min(status.steps_written) >= target:
                    break
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(rng.uniform(0.0, 0.1))
    finally:
        proc.kill()
        proc.wait()
    return path


@pytest.mark.parametrize(("seed", "runner"), [(0, "sample"), (1, "sample"), (2, "job"), (3, "job")])
def test_killed_run_leaves_whole_rows_marked_and_refuses_a_rerun(
    tmp_path, seed, runner, model, tokens
):
    path = kill_mid_run(tmp_path, seed, runner)
    status = StoreReader(path).status()
    assert status.status == "killed"
    assert not status.completed
    assert all(s == "running" for s in status.chain_status)  # no chain failed

    data = xr.open_datatree(str(path), engine="zarr").dataset.load()
    for c in range(2):
        steps, draws = status.steps_written[c], status.draws_written[c]
        assert steps >= 1
        assert draws == max(0, (steps - 20 + 1) // 2)  # the marker agrees with itself
        for name in ("sampling_loss_micro", "metrics_noise", "metrics_distance"):
            assert np.isfinite(data[name].values[c, :steps]).all(), name
        for name in ("sampling_loss", "loss_val"):
            assert np.isfinite(data[name].values[c, :draws]).all(), name
        assert (data["sampling_input_ids_micro"].values[c, :steps] >= 0).all()

    # A chunk the writer wrote just before the kill may hold rows the marker never counted:
    # the marker is the truth, and neither the reader nor compute_llc uses them.
    rows = StoreReader(path).read_new()
    assert rows.steps.sizes["row"] == sum(status.steps_written)
    assert np.isfinite(rows.steps["loss"].values).all()
    assert rows.draws.sizes["row"] == sum(status.draws_written)
    llc = compute_llc(xr.open_datatree(str(path), engine="zarr"))
    assert llc["n_steps_used"].values.tolist() == [max(0, n - 20) for n in status.steps_written]
    assert not list(path.rglob("*.partial"))  # the reader swept a killed writer's temp files

    with pytest.raises(StoreConflictError) as refused:
        sample(model, tokens, observables_of(tokens), output_path=path, **SETTINGS)
    message = str(refused.value)
    assert "holds an incomplete run with this configuration" in message
    assert "status 'running'" in message
    assert "resuming is not supported: delete that directory to sample again" in message


def plant_partial(path: Path) -> Path:
    """A temporary chunk file as a writer killed mid-write leaves it."""
    partial = path / "sampling_loss_micro" / "c" / "0" / "0.0123abcd.partial"
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"half a chunk")
    return partial


def test_a_killed_writers_partial_files_are_removed_on_the_next_open_or_run(
    tmp_path, model, tokens
):
    path = kill_mid_run(tmp_path, 4, "sample")
    partial = plant_partial(path)
    assert StoreReader(path).status().status == "killed"
    assert not partial.exists()  # removed on the next open
    partial = plant_partial(path)
    with pytest.raises(StoreConflictError):
        sample(model, tokens, observables_of(tokens), output_path=path, **SETTINGS)
    assert not partial.exists()  # and on the next run
    assert xr.open_datatree(str(path), engine="zarr").dataset["sampling_loss_micro"].shape[0] == 2


TWO_WRITERS = """
import sys, time
from pathlib import Path
sys.path[:0] = [{tests_dir!r}, {tests_root!r}]
import torch
torch.set_num_threads(1)
from live_fixtures import ToyLM, VOCAB, ROWS, SEQ_LEN
from devinterp_ui import StoreConflictError, sample
from devinterp_ui.store import writer

me, other = Path(sys.argv[2]), Path(sys.argv[3])
real_create = writer.create_store

def create_when_both_checked(path, schema, attrs):
    me.touch()  # this process found no store at the path
    deadline = time.monotonic() + 60
    while not other.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    return real_create(path, schema, attrs)

writer.create_store = create_when_both_checked
torch.manual_seed(0)
tokens = torch.randint(0, VOCAB, (ROWS, SEQ_LEN), generator=torch.Generator().manual_seed(1))
try:
    sample(ToyLM(), tokens, {{}}, output_path=sys.argv[1], lr=float(sys.argv[4]), n_beta=10.0,
           num_chains=1, num_draws=50, batch_size=8, num_init_loss_batches=1, progress_bar=False)
    print("WON")
except StoreConflictError as exc:
    print("CONFLICT", exc)
"""


def test_two_processes_starting_on_one_path_leave_one_store_and_a_conflict(tmp_path):
    """Real processes, both past their existence check before either builds the store."""
    here = Path(__file__).parent
    script = tmp_path / "two_writers.py"
    script.write_text(TWO_WRITERS.format(tests_dir=str(here), tests_root=str(here.parent)))
    path, a, b = tmp_path / "out" / "run.zarr", tmp_path / "a.ready", tmp_path / "b.ready"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), str(me), str(other), lr],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, other, lr in ((a, b, "1e-3"), (b, a, "2e-3"))
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    said = sorted(out.split(" ", 1)[0].strip() for out, _ in outputs)
    assert said == ["CONFLICT", "WON"], outputs
    conflict = next(out for out, _ in outputs if out.startswith("CONFLICT"))
    assert "different configuration" in conflict and "lr" in conflict
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.zarr"]  # no .building left
    assert StoreReader(path).status().status == "completed"
