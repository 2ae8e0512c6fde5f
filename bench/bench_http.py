"""HTTP throughput benchmark (issue 2, "Speed"): the service against the bare Flask floor.

    .venv/bin/python bench/bench_http.py [--threads 2] [--connections 16] [--duration 15]
                                         [--rounds 3] [--workers 2]

Starts ``gunicorn -w 2 wsgi:app`` (the service, from the project folder) and
``gunicorn -w 2 --chdir ../shared/bench bare_flask:app`` (the floor) with the SAME
settings (``-c`` an empty config file, so the project's gunicorn.conf.py is not picked up,
then the same explicit flags for both), checks that the service answers 200 to the body, then
loads both with ``wrk`` and bench/wrk_post.lua (POST ../shared/bench/request.json,
Content-Type application/json), alternating, ``--rounds`` times each. Prints the median
requests/s of each, the ratio service / bare (target >= 0.6), latency p50/p99 and the
error counts. Both servers are stopped at the end, also on error or Ctrl-C.

Figures only: nothing here is a test, and nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import WRK_LUA, code_state, run_wrk  # bench/ is on sys.path when run as a script

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
sys.path.insert(0, str(PROJECT))  # the test suite's server helper, tests/e2e/server.py

from tests.e2e.server import free_port  # noqa: E402

SHARED_BENCH = PROJECT.parent / "shared" / "bench"
PATH = "/v1/recommendations"
RATIO_TARGET = 0.6
# wrk calls without a key from one address, thousands of times a second: the per-address
# limit for such calls is raised out of reach, so that its check is measured, not its 429s.
SERVICE_ENV = {"FORMWISE_OPEN_RATE_LIMIT": "1000000000/minute"}



# The production worker classes (service/ops/gunicorn_config.py); both servers run the same one.
WORKER_CLASSES = {"gevent": "formwise.service.ops.gunicorn_workers.ProblemGeventWorker",
                  "sync": "formwise.service.ops.gunicorn_workers.ProblemSyncWorker"}


def gunicorn_command(gunicorn: str, config: Path, workers: int, port: int, app: str, chdir: Path,
                     worker_class: str = "gevent") -> list[str]:
    """The one set of settings both servers get."""
    return [
        gunicorn,
        "-c", str(config),  # an empty file, not the project's gunicorn.conf.py: both servers alike
        "-w", str(workers),
        "-k", WORKER_CLASSES[worker_class],
        "-b", f"127.0.0.1:{port}",
        "--timeout", "30",
        "--log-level", "warning",
        "--chdir", str(chdir),
        app,
    ]


class Server:
    def __init__(self, name: str, command: list[str], port: int, cwd: Path, log_dir: Path,
                 env: dict | None = None):
        self.name, self.command, self.port, self.cwd = name, command, port, cwd
        self.env = env or {}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def start(self) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            self.command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()

    def wait_ready(self, body: bytes, timeout_s: float = 60.0) -> tuple[int, bytes]:
        """Until the server answers the benchmark body (any HTTP status): (status, body)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            try:
                return post(self.url, body)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer on port {self.port} "
                                       f"within {timeout_s:.0f} s; see {self.log_path}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # gunicorn's master is the session leader: TERM the group (master and its workers).
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (-t)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (-c)")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run (-d)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per server, alternating")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of untimed wrk load per server first")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both servers")
    parser.add_argument("--worker-class", choices=sorted(WORKER_CLASSES), default="gevent",
                        help="gunicorn worker class, both servers (production: gevent)")
    parser.add_argument("--body", type=Path, default=SHARED_BENCH / "request.json")
    parser.add_argument("--bare-dir", type=Path, default=SHARED_BENCH, help="folder holding bare_flask.py")
    parser.add_argument("--service-app", default="wsgi:app",
                        help="gunicorn app of the service (e.g. a module that applies a candidate change)")
    parser.add_argument("--service-dir", type=lambda text: Path(text).resolve(), default=PROJECT,
                        help="gunicorn --chdir for --service-app")
    parser.add_argument("--gunicorn", default=str(PROJECT / ".venv" / "bin" / "gunicorn"))
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed: install it with `apt-get update && apt-get install -y wrk` "
              "(Debian's package) and run this again.", file=sys.stderr)
        return 2
    for needed in (args.body, args.bare_dir / "bare_flask.py", Path(args.gunicorn)):
        if not needed.exists():
            print(f"missing {needed}", file=sys.stderr)
            return 2
    body = args.body.read_bytes()
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()[:1]

    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"code: {code_state(args.service_dir)}")
    print(f"nproc: {os.cpu_count()}  (affinity: {len(os.sched_getaffinity(0))}); load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"client: {' '.join(wrk_version)}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s "
          f"--latency -s {WRK_LUA.relative_to(PROJECT)} (body {args.body}), {args.rounds} rounds alternating, "
          f"{args.warmup} s warm-up each")

    log_dir = Path(tempfile.mkdtemp(prefix="formwise-bench-"))
    config = log_dir / "empty_gunicorn_conf.py"
    config.write_text("# No settings: both servers get gunicorn's defaults plus the same flags.\n")
    service_port, bare_port = free_port(), free_port()
    service_command = gunicorn_command(args.gunicorn, config, args.workers, service_port, args.service_app,
                                       args.service_dir, args.worker_class)
    bare_command = gunicorn_command(args.gunicorn, config, args.workers, bare_port, "bare_flask:app", args.bare_dir,
                                    args.worker_class)
    servers = {
        "service": Server("service", service_command, service_port, args.service_dir, log_dir, SERVICE_ENV),
        "bare": Server("bare", bare_command, bare_port, args.bare_dir, log_dir),
    }
    print("servers (same settings):")
    for server in servers.values():
        print("  " + " ".join(server.command))
    print(f"server logs: {log_dir}")

    results: dict[str, list[dict]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            server.start()
        for name, server in servers.items():
            status, answer = server.wait_ready(body)
            if status != 200:
                raise RuntimeError(f"{name} answered {status} to {args.body}, not 200:\n{answer[:2000]!r}")
            if name == "service":
                recommended = [item["form"] for item in json.loads(answer)["recommendations"]]
                print(f"check: service answers 200, recommends {recommended}")
        def load(url: str, seconds: int) -> dict[str, float]:
            options = [f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency"]
            return run_wrk(options, url, args.body, timeout=seconds + 60)

        if args.warmup > 0:
            for server in servers.values():
                load(server.url, args.warmup)
        for round_number in range(1, args.rounds + 1):
            for name, server in servers.items():
                figures = load(server.url, args.duration)
                results[name].append(figures)
                p50_ms, p99_ms = figures["latency_p50_us"] / 1000, figures["latency_p99_us"] / 1000
                print(f"  round {round_number} {name:7s} {figures['rps']:9.1f} req/s  "
                      f"p50 {p50_ms:6.2f} ms  p99 {p99_ms:6.2f} ms  "
                      f"errors: status>=400 {int(figures['status_ge_400'])}, socket {int(figures['socket_errors'])}")
    finally:
        for server in servers.values():
            server.stop()

    print()
    print(f"{'server':8s} {'median req/s':>13s} {'p50 ms':>8s} {'p99 ms':>8s} {'requests':>9s} "
          f"{'non-2xx':>8s} {'socket err':>10s}")
    medians = {}
    for name, runs in results.items():
        medians[name] = statistics.median(run["rps"] for run in runs)
        p50 = statistics.median(run["latency_p50_us"] for run in runs) / 1000
        p99 = statistics.median(run["latency_p99_us"] for run in runs) / 1000
        print(f"{name:8s} {medians[name]:13.1f} {p50:8.2f} {p99:8.2f} {int(sum(r['requests'] for r in runs)):9d} "
              f"{int(sum(r['status_ge_400'] for r in runs)):8d} {int(sum(r['socket_errors'] for r in runs)):10d}")
    ratio = medians["service"] / medians["bare"]
    print(f"ratio service / bare (medians): {ratio:.3f}  (target >= {RATIO_TARGET}: "
          f"{'MET' if ratio >= RATIO_TARGET else 'MISSED'})")
    per_round = [s["rps"] / b["rps"] for s, b in zip(results["service"], results["bare"], strict=True)]
    print("ratio per round (paired): " + ", ".join(f"{r:.3f}" for r in per_round)
          + f"; median {statistics.median(per_round):.3f}")
    if any(r["status_ge_400"] for runs in results.values() for r in runs):
        print("WARNING: some responses were not 2xx; the figures are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
