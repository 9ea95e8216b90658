"""One real `panel serve app/dashboard.py` and one headless Debian Chromium for every browser test.

Chromium is Debian's (`apt-get install chromium chromium-driver`, done by scripts/test.sh);
Playwright only drives it (`executable_path`), it never downloads a browser.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DEVINTERP_UI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A `panel serve` process on a free port; sessions expire 1.5 s after their tab closes."""
    runs = tmp_path_factory.mktemp("runs")
    port = free_port()
    env = dict(os.environ, DEVINTERP_UI_RUNS_DIR=str(runs), OMP_NUM_THREADS="1")
    log = open(runs / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "panel",
            "serve",
            str(ROOT / "app" / "dashboard.py"),
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--allow-websocket-origin",
            f"127.0.0.1:{port}",
            "--check-unused-sessions",
            "500",
            "--unused-session-lifetime",
            "1500",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError as exc:
            if proc.poll() is not None:
                raise RuntimeError((runs / "server.log").read_text()) from exc
            time.sleep(0.2)
    yield {"url": f"http://127.0.0.1:{port}/dashboard", "runs": runs}
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()


@pytest.fixture(scope="module")
def browser():
    """Per module: a module with its own Playwright fixtures can run after this one (two sync
    Playwright instances cannot be alive at once)."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Debian's chromium is missing at {CHROMIUM}: run scripts/test.sh (it installs it)"
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()
