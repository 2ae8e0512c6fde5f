"""Load and fault benchmark (issue 7): 60 s of load on loopback against 2 gunicorn workers,
then the same load while one worker is killed with SIGKILL half-way through.

    .venv/bin/python bench/bench_load.py [--duration 60] [--workers 2] [--threads 2]
                                         [--connections 16] [--kill-at 0.5] [--body FILE]

Each run starts its own ``formwise serve --workers N`` (the production settings of
service/gunicorn_config.py: preload, sync workers, JSON request log at info) on a free
loopback port, checks that it answers 200, and drives it with ``wrk`` POSTing one profile
to /v1/recommendations through bench/wrk_post.lua. Printed per run: requests, throughput,
latency p50 and p99, answers with status >= 400 and socket errors (0 expected in the steady
run), and the server's own count of answered requests from /metrics. The fault run also prints the killed worker, its
replacement, and the requests that failed: at most the one in flight on the killed worker,
since a sync worker holds one connection at a time and waiting connections stay in the
listening socket's queue, which the replacement drains.

Figures only: nothing here is a test, and nothing asserts a timing. Needs wrk
(``apt-get install -y wrk``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import run_wrk  # bench/ is on sys.path when run as a script

PROJECT = Path(__file__).resolve().parent.parent
PATH = "/v1/recommendations"
DEFAULT_BODY = {"profile": {"age": 54, "sex": "female", "egfr": 58, "conditions": ["constipation"],
                            "goals": ["sleep"], "medications": ["doxycycline", "omeprazole"]}}
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def answered_posts(base: str) -> int:
    """The server's count of 200 answers to POST /v1/recommendations, summed over workers."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    prefix = "formwise_http_requests_total{"
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix) and f'endpoint="{PATH}"' in line and 'method="POST"' in line \
                and 'status="200"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


@contextlib.contextmanager
def serving(workers: int, log_path: Path):
    """``formwise serve`` on a free port until the block ends; yields (base URL, master pid)."""
    formwise = shutil.which("formwise", path=str(Path(sys.executable).parent))
    if formwise is None:
        raise SystemExit("formwise is not installed in this environment (pip install -e .)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen([formwise, "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
                                   cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the server exited: {log_path.read_text()[-2000:]}")
                try:
                    if urllib.request.urlopen(base + "/health/ready", timeout=2).status == 200 \
                            and len(worker_pids(process.pid)) == workers:
                        break
                except (urllib.error.URLError, ConnectionError):
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"the server did not become ready: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield base, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def check_answers(base: str, body: bytes) -> None:
    request = urllib.request.Request(base + PATH, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise SystemExit(f"the service answered {response.status} to the body")


def load(base: str, args, body_path: Path) -> dict:
    """wrk through bench/wrk_post.lua, plus what this benchmark reports: failed requests."""
    options = ["-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s", "--latency",
               "--timeout", "30s"]
    figures = {key: int(value) if value.is_integer() else value
               for key, value in run_wrk(options, base + PATH, body_path, timeout=args.duration + 90).items()}
    figures["failed"] = figures["status_ge_400"] + figures["socket_errors"]
    return figures


def print_figures(title: str, figures: dict, served: int) -> None:
    print(f"{title}:")
    print(f"  requests {figures['requests']}  throughput {figures['rps']:.1f} req/s  "
          f"latency p50 {figures['latency_p50_us'] / 1000:.1f} ms  p99 {figures['latency_p99_us'] / 1000:.1f} ms")
    print(f"  failed {figures['failed']} (status >= 400 {figures['status_ge_400']}, "
          f"connect {figures['connect_errors']}, read {figures['read_errors']}, write {figures['write_errors']}, "
          f"timeout {figures['timeouts']})")
    print(f"  the server counted {served} answered POSTs (/metrics, all workers; includes requests still in "
          f"flight when wrk stopped counting, and the one check request)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of load per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--kill-at", type=float, default=0.5, help="when to kill a worker, as a share of the run")
    parser.add_argument("--body", type=Path, help="the JSON request body (default: a 54-year-old with 2 medicines)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")

    with tempfile.TemporaryDirectory(prefix="formwise-bench-load-") as scratch:
        scratch = Path(scratch)
        body_path = args.body or scratch / "body.json"
        if args.body is None:
            body_path.write_text(json.dumps(DEFAULT_BODY))
        print(f"formwise load and fault benchmark: {args.workers} workers, wrk -t{args.threads} "
              f"-c{args.connections} -d{args.duration}s, POST {PATH}, {os.cpu_count()} CPUs")

        with serving(args.workers, scratch / "steady.log") as (base, _master):
            check_answers(base, body_path.read_bytes())
            steady = load(base, args, body_path)
            print_figures("steady load", steady, answered_posts(base))

        with serving(args.workers, scratch / "fault.log") as (base, master):
            check_answers(base, body_path.read_bytes())
            before = worker_pids(master)
            killed: list[int] = []

            def kill_one_worker():
                victim = min(worker_pids(master))
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

            timer = threading.Timer(args.duration * args.kill_at, kill_one_worker)
            timer.start()
            fault = load(base, args, body_path)
            timer.join()
            after = worker_pids(master)
            print_figures(f"one worker killed with SIGKILL at {args.duration * args.kill_at:.0f} s", fault,
                          answered_posts(base))
            replacements = sorted(after - before)
            print(f"  killed worker {killed[0]}; workers before {sorted(before)}, after {sorted(after)} "
                  f"(replacement {replacements[0] if replacements else 'none'})")
            print(f"  requests failed: {fault['failed']} (at most the 1 in flight on the killed worker expected)")
            replaced = len(after) == args.workers and killed[0] not in after
        ok = steady["failed"] == 0 and fault["failed"] <= 1 and replaced
        print("result:", "as expected" if ok else "NOT as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
