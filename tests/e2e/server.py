"""Start the real service (``formwise serve``: gunicorn with the project's settings) on a
free port, and stop it afterwards. The end-to-end tests use it, and so do the benchmarks in
``bench/`` (the load run), so that both start the service the same way."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_SECONDS = 60
# The browser the page tests drive: Debian's Chromium (never a downloaded one).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def formwise_command() -> str:
    """The ``formwise`` command of this Python environment."""
    formwise = shutil.which("formwise", path=str(Path(sys.executable).parent)) or shutil.which("formwise")
    if formwise is None:
        raise RuntimeError("formwise is not installed in this environment (pip install -e .)")
    return formwise


def worker_pids(master: int) -> set[int]:
    """The master's children, from /proc (gunicorn's workers)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            children.add(int(entry.name))
    return children


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def serving(log_path: Path, workers: int = 2, env: dict | None = None, cwd: Path | None = None):
    """``formwise serve`` on a free port until the block ends, with ``env`` as its whole
    environment (default: this one) and its output in ``log_path``. Yields (base URL, master
    pid) once /health/ready answers 200 and every worker has started."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [formwise_command(), "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            cwd=cwd or log_path.parent, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + READY_SECONDS
            while not (_ready(base) and len(worker_pids(process.pid)) == workers):
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not become ready: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield base, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def running_service(workdir: Path, workers: int = 2, env: dict | None = None):
    """Yields the base URL of a gunicorn-served formwise run in ``workdir`` (its log is
    ``workdir/server.log``); ``env`` is added to this process's environment."""
    with serving(workdir / "server.log", workers, {**os.environ, **(env or {})}, cwd=workdir) as (base, _master):
        yield base


def formwise_cli(*args: str, env: dict) -> str:
    """Runs a ``formwise`` command of this environment with ``env`` added; its standard output."""
    result = subprocess.run([formwise_command(), *args], env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
