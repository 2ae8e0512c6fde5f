"""Start the real service (``formwise serve``: gunicorn with the project's settings) on a
free port for end-to-end tests, and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_service(workdir: Path, workers: int = 2, env: dict | None = None):
    """Yields the base URL of a gunicorn-served formwise; the log goes to workdir."""
    port = free_port()
    formwise = shutil.which("formwise", path=str(Path(sys.executable).parent)) or "formwise"
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [formwise, "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
                try:
                    if requests.get(base + "/health/ready", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not become ready: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
