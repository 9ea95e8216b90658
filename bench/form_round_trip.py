"""Form round trip with several sessions sampling at once, against a real `panel serve`.

Starts `panel serve app/dashboard.py` on a free localhost port and headless Chromium (Debian's,
driven by Playwright), opens --sessions tabs on the DLN demo and starts a long run in each (so
every session's job samples while we measure). Then, round robin over the tabs, it types a new
num_draws into the form and times until the page shows the server's answer (the "applies to the
next run" note naming the new value): browser -> server -> form check -> browser.

    python bench/form_round_trip.py                  # 4 sessions x 10 round trips each
    python bench/form_round_trip.py --sessions 2 --rounds 5

Prints the median and worst round trip, the time each Start click took to come back (the
Stop button enabled), and the machine's core count. Goal (issue 13): median < 1 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DEVINTERP_UI_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(runs: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, DEVINTERP_UI_RUNS_DIR=str(runs), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(ROOT / "app" / "dashboard.py"),
         "--port", str(port), "--address", "127.0.0.1",
         "--allow-websocket-origin", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("panel serve did not start")


def set_field(page, name: str, value) -> None:
    field = page.get_by_label(name, exact=True)
    field.fill(str(value))
    field.press("Enter")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = serve(Path(tmp), port)
        url = f"http://127.0.0.1:{port}/dashboard?demo=dln"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                pages = []
                for _ in range(args.sessions):
                    page = browser.new_page(viewport={"width": 1400, "height": 1100})
                    page.goto(url, timeout=180_000)
                    page.get_by_role("button", name="▶ Start").wait_for(timeout=180_000)
                    set_field(page, "num_draws", 100_000)
                    pages.append(page)
                starts = []
                for page in pages:
                    t0 = time.perf_counter()
                    page.get_by_role("button", name="▶ Start").click()
                    expect(page.get_by_role("button", name="■ Stop", exact=True)).to_be_enabled(
                        timeout=180_000
                    )
                    starts.append(time.perf_counter() - t0)
                times = []
                for k in range(args.rounds):
                    for page in pages:
                        value = 3001 + k
                        t0 = time.perf_counter()
                        set_field(page, "num_draws", value)
                        page.get_by_text(f"num_draws 100000 → {value}").wait_for(timeout=180_000)
                        times.append(time.perf_counter() - t0)
                for page in pages:
                    page.get_by_role("button", name="■ Stop").click()
                browser.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    print(
        f"{args.sessions} sessions sampling, {len(times)} form round trips on "
        f"{os.cpu_count()} cores: median {statistics.median(times):.3f} s, "
        f"worst {max(times):.3f} s"
    )
    print(f"Start click until Stop enabled: median {statistics.median(starts):.3f} s, "
          f"worst {max(starts):.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
