"""Clicking a cell of the Studies tab opens that run's traces in the single-run view (the Run
tab), through StudiesView.selected_store -> StudyLauncher.selected_store -> open_store."""

from pathlib import Path

import numpy as np

from devinterp_ui.study import LocalExecutor


def test_a_clicked_study_cell_opens_in_the_run_tab(make_dashboard, tmp_path):
    dashboard = make_dashboard(num_burnin_steps=2)
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
