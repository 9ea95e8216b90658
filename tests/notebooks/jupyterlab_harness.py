"""A real JupyterLab server and a Chromium page on it, for the notebook browser tests.

The same server also serves Jupyter Notebook 7 (the `notebook` package, classic Notebook's
successor) at /notebooks/<path>: `open_offline(..., ui="notebook")` opens a notebook there.
Both front ends expose the app as `window.jupyterapp`, with the same notebook panel API, so the
helpers below drive either.

The server runs with no token on a free localhost port, a temporary root folder, and Jupyter's
config, data, runtime and settings folders in that temporary tree, so nothing of the user's
Jupyter set-up is read or written. The page blocks every request that does not go to the
server (`page.route`): what renders, renders offline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    root: Path
    proc: subprocess.Popen
    log: Path

    def write_notebook(self, name: str, sources: list[str]) -> str:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
        nb.metadata = {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        }
        nbformat.write(nb, self.root / name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_lab(tmp: Path, env_extra: dict[str, str] | None = None) -> Lab:
    """`jupyter lab` on a free port, everything of it under `tmp`; returns once it answers."""
    root, home = tmp / "root", tmp / "jupyter"
    root.mkdir()
    dirs = {
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces",
        "IPYTHONDIR": home / "ipython",
    }
    for path in dirs.values():
        path.mkdir(parents=True)
    # No "get notified about news?" toast over the notebook, no update checks.
    notification = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port = free_port()
    env = {
        **os.environ,
        **{k: str(v) for k, v in dirs.items()},
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **(env_extra or {}),
    }
    log = tmp / "jupyterlab.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--ServerApp.open_browser=False",
            "--ServerApp.disable_check_xsrf=True",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",  # never asks PyPI about extensions
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        cwd=root,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lab = Lab(f"http://127.0.0.1:{port}", root, proc, log)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return lab
        except OSError:
            time.sleep(0.3)
    lab.stop()
    raise RuntimeError(f"jupyter lab did not answer within 120 s:\n{log.read_text()}")


@dataclass
class PageLog:
    """What the page said and what it tried to fetch from elsewhere (blocked)."""

    console: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def errors(self, *words: str) -> list[str]:
        return [m for m in self.console if m.startswith("error") and any(w in m for w in words)]

    def containing(self, text: str) -> list[str]:
        """Every console message (any level) holding `text`."""
        return [m for m in self.console if text in m]


def plot_overflow(page, index: int) -> dict:
    """How far the Bokeh plots shown in code cell `index`'s output reach past that output's
    right edge, in px (<= 0: every plot fits), and how many plots were measured."""
    return page.evaluate(
        """(i) => {
            const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
            const out = cell.outputArea.node;
            const right = out.getBoundingClientRect().right;
            // Up through shadow roots (Bokeh's views live in them) to the output node.
            const inside = (el) => {
                for (let n = el; n; n = n.parentNode || n.host) if (n === out) return true;
                return false;
            };
            let worst = -Infinity, plots = 0;
            const walk = (view) => {
                if (!view) return;
                if (view.frame !== undefined && view.el && view.el.isConnected) {
                    const box = view.el.getBoundingClientRect();
                    if (box.width > 0 && inside(view.el)) {
                        plots += 1;
                        worst = Math.max(worst, box.right - right);
                    }
                }
                for (const child of view.child_views ?? []) walk(child);
            };
            for (const view of Object.values(window.Bokeh ? Bokeh.index : {})) walk(view);
            return {overflow: worst, plots: plots};
        }""",
        index,
    )


# Page script: BokehJS's "could not set initial ranges" names no plot; log, next to it, the
# titles of the plots whose ranges are unset at that moment, so that a failing check says which.
NAME_UNSET_RANGES = """
(() => {
  const warn = console.warn.bind(console);
  console.warn = (...args) => {
    warn(...args);
    if (!args.some((a) => String(a).includes("could not set initial ranges"))) return;
    const titles = [];
    const walk = (view) => {
      if (!view) return;
      if (view.frame !== undefined && view.model) {
        try {
          const ranges = [...view.frame.x_ranges.values(), ...view.frame.y_ranges.values()];
          if (ranges.some((r) => isNaN(r.start + r.end))) {
            titles.push(String(view.model.title ? view.model.title.text : view.model.type));
          }
        } catch (e) {}
      }
      for (const child of view.child_views ?? []) walk(child);
    };
    for (const view of Object.values((window.Bokeh && Bokeh.index) || {})) walk(view);
    warn("unset ranges in: " + (titles.join(" | ") || "?"));
  };
})();
"""


def open_offline(
    browser, lab: Lab, path: str, width: int = 1280, height: int = 1000, ui: str = "lab"
):
    """A page on `path` with every non-localhost request aborted: in JupyterLab (`ui="lab"`,
    under /lab/tree) or in Jupyter Notebook 7 (`ui="notebook"`, under /notebooks)."""
    if ui not in ("lab", "notebook"):
        raise ValueError(f"ui must be 'lab' or 'notebook', got {ui!r}")
    page = browser.new_page(viewport={"width": width, "height": height})
    page.add_init_script(NAME_UNSET_RANGES)
    log = PageLog()
    page.on("console", lambda m: log.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: log.console.append(f"error: pageerror {e}"))

    def route(r):
        host = urlparse(r.request.url).hostname
        if host in ("127.0.0.1", "localhost", None) or r.request.url.startswith("data:"):
            r.continue_()
        else:
            log.blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    if ui == "notebook":
        page.goto(f"{lab.url}/notebooks/{path}", timeout=120_000)
    else:
        # A workspace of its own, reset: JupyterLab would otherwise reopen earlier pages' tabs.
        workspace = Path(path).stem
        page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{path}?reset", timeout=120_000)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        " === 'idle'",
        timeout=120_000,
    )
    return page, log


def run_cell(page, index: int, wait: bool = True, timeout_ms: int = 300_000) -> None:
    """Run code cell `index` of the open notebook, and by default wait until it finished."""
    page.evaluate(
        """(i) => {
            const app = window.jupyterapp;
            const panel = app.shell.currentWidget;
            panel.content.activeCellIndex = i;
            window.__cellRun = app.commands.execute('notebook:run-cell');
        }""",
        index,
    )
    if wait:
        wait_cell(page, index, timeout_ms)


def wait_cell(page, index: int, timeout_ms: int = 300_000) -> None:
    page.wait_for_function(
        """(i) => {
            const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
            return cell.model.executionCount !== null && cell.model.executionState === 'idle';
        }""",
        arg=index,
        timeout=timeout_ms,
    )


def cell_text(page, index: int) -> str:
    """The text of code cell `index`'s outputs (stdout, results, tracebacks)."""
    return page.evaluate(
        """(i) => {
            const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
            return cell.outputArea.node.innerText;
        }""",
        index,
    )


def cell_outputs(page, index: int) -> list[dict]:
    """The outputs of code cell `index` as the notebook model holds them (nbformat dicts)."""
    return page.evaluate(
        """(i) => {
            const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
            return cell.model.outputs.toJSON();
        }""",
        index,
    )


def bokeh_documents_js() -> str:
    """JS expression: every BokehJS document in the page (inline outputs and jupyter_bokeh
    widgets; the latter are reachable only through their root views in Bokeh.index)."""
    return """(() => {
        const docs = new Set(window.Bokeh ? Bokeh.documents : []);
        if (window.Bokeh && Bokeh.index) {
            for (const view of Object.values(Bokeh.index)) {
                if (view && view.model && view.model.document) docs.add(view.model.document);
            }
        }
        return [...docs];
    })()"""


def line_lengths(page, key: str, chains: int, skip: list[str] = ()) -> list[list[int]]:
    """Per Bokeh document holding the plot `key`: the points in each chain's line (of the
    newest such line: a new run's plots join the document after the old ones). `skip`: ids of
    sources not to count (an earlier run's lines stay in the document until the new run's
    figures arrive with their first points; see `source_ids`)."""
    return page.evaluate(
        f"""([key, chains, skip]) => {{
            const out = [];
            for (const doc of {bokeh_documents_js()}) {{
                const row = [];
                for (let c = 0; c < chains; c++) {{
                    let n = -1;
                    for (const m of doc._all_models.values()) {{
                        if (m.name === `${{key}}:chain${{c}}` && m.data && m.data.x
                            && !skip.includes(m.id)) n = m.data.x.length;
                    }}
                    row.push(n);
                }}
                if (row.some((n) => n >= 0)) out.push(row);
            }}
            return out;
        }}""",
        [key, chains, list(skip)],
    )


def source_ids(page, key: str) -> list[str]:
    """The ids of every source named `<key>:chain<c>` now in the page's Bokeh documents."""
    return page.evaluate(
        f"""(key) => {{
            const out = [];
            for (const doc of {bokeh_documents_js()}) {{
                for (const m of doc._all_models.values()) {{
                    if (typeof m.name === "string" && m.name.startsWith(`${{key}}:chain`)) out.push(m.id);
                }}
            }}
            return out;
        }}""",
        key,
    )
