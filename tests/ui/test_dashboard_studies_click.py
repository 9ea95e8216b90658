"""Clicking a cell of the Studies tab opens that run's traces in the single-run view (the Run
tab), through StudiesView.selected_store -> StudyLauncher.selected_store -> open_store."""

from pathlib import Path

import numpy as np
import torch
from tiny_models import TinyLM

from devinterp_ui.study import LocalExecutor
from devinterp_ui.ui.dashboard import Dashboard


def test_a_clicked_study_cell_opens_in_the_run_tab(tmp_path):
    data = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    dashboard = Dashboard(
        TinyLM(),
        data,
        {"train": data},
        runs_dir=tmp_path,
        lr=1e-3,
        n_beta=20.0,
        num_chains=2,
        num_draws=8,
        batch_size=8,
        num_burnin_steps=2,
        num_init_loss_batches=2,
    )
    executor = LocalExecutor(max_workers=1)
    try:
        dashboard.studies.executor = executor
        dashboard.studies.inputs["lr"].value = "1e-3"
        study = dashboard.studies.start()
        assert study is not None and study.wait(timeout=120)
        view = dashboard.studies.view
        view.refresh()
        (title,) = view.figures
        store = view.sources[title].data["store"][0]
        tabs = dashboard.main
        tabs.active = 1  # the user is on the Studies tab
        view.selected_store = store  # what a tap on the cell does
        assert Path(str(dashboard.reader.path)).resolve() == Path(store).resolve()
        assert tabs.active == 0
        assert dashboard.wait(60)
        assert dashboard.current.label == "opened"
        assert np.isfinite(dashboard.current.llc_mean)
    finally:
        executor.shutdown()
