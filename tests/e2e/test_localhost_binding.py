"""The served dashboard listens on loopback addresses only unless the user passes --address.

Both ways to serve it are started for real: the README's `scripts/run.sh` (which runs `panel
serve app/dashboard.py`) and `python -m devinterp_ui.ui.app`. The listening sockets of the
process tree are then read from the kernel, so the check holds whatever the machine's other
addresses are, and no traffic leaves loopback.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]

STARTUP_S = 180  # scripts/run.sh first reruns the (idempotent) set-up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(pid: int, port: int) -> set[str]:
    """The local addresses on which `pid` or its children listen on `port`."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    found = set()
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port:
                found.add(c.laddr.ip)
    return found


def serve_and_read_addresses(argv: list[str], port: int, env: dict) -> set[str]:
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{argv} exited with {proc.returncode}"
            found = listening_addresses(proc.pid, port)
            if found:
                time.sleep(1.0)  # let every address of the server bind
                return listening_addresses(proc.pid, port)
            time.sleep(0.5)
        pytest.fail(f"{argv} did not listen on port {port} within {STARTUP_S} s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def assert_loopback_only(addresses: set[str]) -> None:
    assert addresses, "the server listened on no address"
    for address in addresses:
        assert ipaddress.ip_address(address).is_loopback, (
            f"the dashboard listens on {address}, not only on loopback: {sorted(addresses)}"
        )


@pytest.mark.timeout(300)
def test_run_script_listens_on_loopback_only(tmp_path):
    port = free_port()
    env = dict(os.environ, PORT=str(port), DEVINTERP_UI_RUNS_DIR=str(tmp_path / "runs"))
    assert_loopback_only(serve_and_read_addresses(["bash", "scripts/run.sh"], port, env))


@pytest.mark.timeout(300)
def test_python_entry_point_listens_on_loopback_only(tmp_path):
    port = free_port()
    env = dict(os.environ, DEVINTERP_UI_RUNS_DIR=str(tmp_path / "runs"))
    argv = [sys.executable, "-m", "devinterp_ui.ui.app", "--port", str(port)]
    assert_loopback_only(serve_and_read_addresses(argv, port, env))
