"""Load and fault benchmark (issues 7 and 19): 60 s of load on loopback against 2 gunicorn
workers; the same load while one worker is killed with SIGKILL half-way through; the same
load while slow clients hold connections on every worker; and, with ``--keyed``, the same
load while the Redis holding the rate limits is stopped for the middle third of the run.

    .venv/bin/python bench/bench_load.py [--duration 60] [--workers 2] [--threads 2]
                                         [--connections 16] [--kill-at 0.5] [--body FILE] [--keyed]
                                         [--slow-clients 20]

Each run starts its own ``formwise serve --workers N`` (the production settings of
service/ops/gunicorn_config.py: preload, gevent workers, JSON request log at info) on a free
loopback port, checks that it answers 200, and drives it with ``wrk`` POSTing one profile
to /v1/recommendations through bench/wrk_post.lua. Printed per run: requests, throughput,
latency p50 and p99, answers with status >= 400 and socket errors (0 expected in the steady
run), and the server's own count of answered requests from /metrics. The fault run also
prints the killed worker, its replacement, and the requests that failed: at most those in
flight on the killed worker, one per connection it held (a gevent worker holds several of
wrk's keep-alive connections; their requests die with it, and wrk reconnects to the
others). The slow-client run keeps ``--slow-clients`` connections sending their headers a
byte a second and as many sending their bodies a byte every three seconds, and probes
/health/live twice a second with a 1 s timeout; every probe should be answered. The Redis
run (``--keyed``) starts its own redis-server on a free port for the limits, stops it at a
third of the run and starts it again at two thirds: calls meanwhile get 503 problems with
Retry-After (never a 500), and the service answers 200 again once Redis is back.

With ``--keyed`` both runs are a web shop's: the server requires API keys
(``FORMWISE_REQUIRE_API_KEY=1``), a shop with a two-product catalog is created first
(``formwise shops create``, then ``PUT /v1/catalog``), and wrk sends its secret key, so each
answer looks up the key, counts against the key's rate limit (lifted to 1,000,000 a minute,
so that none is refused), lists the shop's products and stores its recommendation id. The
database is a SQLite file in a scratch folder, or ``DATABASE_URL`` when set (``REDIS_URL``
moves the limits to Redis); each run then also prints the answer ids stored against the
answers the server counted.

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

import sqlalchemy as sa
from common import run_wrk  # bench/ is on sys.path when run as a script

from formwise.service.store.database import SQLITE_FILE_NAME, normalize_database_url

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))  # the test suite's server helper, tests/e2e/server.py

from tests.e2e.server import formwise_command, free_port, serving, worker_pids  # noqa: E402

PATH = "/v1/recommendations"
DEFAULT_BODY = {"profile": {"age": 54, "sex": "female", "egfr": 58, "conditions": ["constipation"],
                            "goals": ["sleep"], "medications": ["doxycycline", "omeprazole"]}}
SHOP_ORIGIN = "https://shop.example"
SHOP_CATALOG = {"products": [
    {"sku": "MG-CIT-100", "name": "Magnesium citrate 100 mg", "form": "citrate", "elemental_mg_per_unit": 100,
     "units_per_pack": 60, "price": 9.5, "currency": "EUR", "url": SHOP_ORIGIN + "/p/citrate"},
    {"sku": "MG-GLY-120", "name": "Magnesium glycinate 120 mg", "form": "glycinate", "elemental_mg_per_unit": 120,
     "units_per_pack": 90, "price": 14.9, "currency": "EUR", "url": SHOP_ORIGIN + "/p/glycinate"},
]}
LIFTED_RATE_LIMIT = "1000000/minute"


class Shop:
    """A web shop's setting for keyed runs: its own database (a scratch SQLite file unless
    DATABASE_URL is set), required keys, a lifted rate limit, and the shop's secret key."""

    def __init__(self, scratch: Path):
        self.env = {**os.environ, "FORMWISE_REQUIRE_API_KEY": "1", "FORMWISE_RATE_LIMIT": LIFTED_RATE_LIMIT,
                    "FORMWISE_SECRET_RATE_LIMIT": LIFTED_RATE_LIMIT}
        if not os.environ.get("DATABASE_URL"):
            self.env["FORMWISE_DATA_DIR"] = str(scratch)
        created = subprocess.run([formwise_command(), "shops", "create", f"bench shop {os.getpid()}-{time.time_ns()}",
                                  "--origin", SHOP_ORIGIN, "--json"], cwd=PROJECT, env=self.env,
                                 capture_output=True, text=True, timeout=120, check=True)
        answer = json.loads(created.stdout)
        self.shop_id, self.secret_key = answer["shop_id"], answer["secret_key"]
        url = os.environ.get("DATABASE_URL") or f"sqlite:///{scratch / SQLITE_FILE_NAME}"
        self.database = sa.create_engine(normalize_database_url(url))

    def upload_catalog(self, base: str) -> None:
        request = urllib.request.Request(base + "/v1/catalog", data=json.dumps(SHOP_CATALOG).encode(), method="PUT",
                                         headers={"Content-Type": "application/json", "X-API-Key": self.secret_key})
        with urllib.request.urlopen(request, timeout=30) as response:
            stored = json.load(response)["products_stored"]
        if stored != len(SHOP_CATALOG["products"]):
            raise SystemExit(f"the catalog upload stored {stored} products")

    def stored_answer_ids(self) -> int:
        """The recommendation ids stored for this shop (ids only, as the service keeps them)."""
        with self.database.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM recommendations WHERE shop_id = :shop"),
                                      {"shop": self.shop_id}).scalar_one()


def settled_answered_posts(base: str) -> int:
    """``answered_posts`` once the requests still in flight when wrk stopped have finished
    (two readings half a second apart agree), so that what they stored is counted too."""
    last = answered_posts(base)
    while True:
        time.sleep(0.5)
        current = answered_posts(base)
        if current == last:
            return current
        last = current


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


def check_answers(base: str, body: bytes, shop: Shop | None) -> None:
    headers = {"Content-Type": "application/json"}
    if shop is not None:
        headers["X-API-Key"] = shop.secret_key
    request = urllib.request.Request(base + PATH, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise SystemExit(f"the service answered {response.status} to the body")
        answer = json.load(response)
    if shop is not None and not any(item.get("products") for item in answer["recommendations"]):
        raise SystemExit("the keyed answer lists none of the shop's products")


def load(base: str, args, body_path: Path, shop: Shop | None, count_statuses: bool = False) -> dict:
    """wrk through bench/wrk_post.lua, plus what this benchmark reports: failed requests."""
    options = ["-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s", "--latency",
               "--timeout", "30s"]
    figures = {key: int(value) if value.is_integer() else value
               for key, value in run_wrk(options, base + PATH, body_path, timeout=args.duration + 90,
                                         api_key=shop.secret_key if shop else None,
                                         count_statuses=count_statuses).items()}
    figures["failed"] = figures["status_ge_400"] + figures["socket_errors"]
    return figures


def print_figures(title: str, figures: dict, served: int) -> None:
    print(f"{title}:")
    print(f"  requests {figures['requests']}  throughput {figures['rps']:.1f} req/s  "
          f"latency p50 {figures['latency_p50_us'] / 1000:.1f} ms  p99 {figures['latency_p99_us'] / 1000:.1f} ms")
    print(f"  failed {figures['failed']} (status >= 400 {figures['status_ge_400']}, "
          f"connect {figures['connect_errors']}, read {figures['read_errors']}, write {figures['write_errors']}, "
          f"timeout {figures['timeouts']})")
    print(f"  the server counted {served} answered POSTs (/metrics, all workers, once settled; includes requests "
          f"still in flight when wrk stopped counting, and the one check request)")


def stored_matches(shop: Shop | None, before: int, served: int, slack: int) -> bool:
    """Prints the answer ids stored during the run against the answers the server counted;
    whether they differ by at most ``slack`` (the requests in flight on a killed worker)."""
    if shop is None:
        return True
    stored = shop.stored_answer_ids() - before
    print(f"  answer ids stored for the shop: {stored} (answered POSTs: {served})")
    return abs(stored - served) <= slack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of load per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--kill-at", type=float, default=0.5, help="when to kill a worker, as a share of the run")
    parser.add_argument("--body", type=Path, help="the JSON request body (default: a 54-year-old with 2 medicines)")
    parser.add_argument("--slow-clients", type=int, default=20,
                        help="slow connections of each kind (headers, body) in the slow-client run")
    parser.add_argument("--keyed", action="store_true",
                        help="a web shop's calls: required keys, its secret key, its catalog, stored answer ids")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")

    with tempfile.TemporaryDirectory(prefix="formwise-bench-load-") as scratch:
        scratch = Path(scratch)
        body_path = args.body or scratch / "body.json"
        if args.body is None:
            body_path.write_text(json.dumps(DEFAULT_BODY))
        shop = Shop(scratch) if args.keyed else None
        database = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "SQLite"
        limits = "Redis" if os.environ.get("REDIS_URL") else "memory"
        keyed = f", keyed (a shop's secret key; database {database}, limits in {limits})" if shop else ""
        print(f"formwise load and fault benchmark: {args.workers} workers, wrk -t{args.threads} "
              f"-c{args.connections} -d{args.duration}s, POST {PATH}{keyed}, {os.cpu_count()} CPUs")
        # wrk calls from one address: the per-address limit without a key is lifted like the key's
        env = shop.env if shop else {**os.environ, "FORMWISE_OPEN_RATE_LIMIT": LIFTED_RATE_LIMIT}

        with serving(scratch / "steady.log", args.workers, env, cwd=PROJECT) as (base, _master):
            if shop is not None:
                shop.upload_catalog(base)
            stored_before = shop.stored_answer_ids() if shop else 0
            check_answers(base, body_path.read_bytes(), shop)
            steady = load(base, args, body_path, shop)
            served = settled_answered_posts(base)
            print_figures("steady load", steady, served)
            steady_stored = stored_matches(shop, stored_before, served, slack=0)

        with serving(scratch / "fault.log", args.workers, env, cwd=PROJECT) as (base, master):
            stored_before = shop.stored_answer_ids() if shop else 0
            check_answers(base, body_path.read_bytes(), shop)
            before = worker_pids(master)
            killed: list[int] = []

            def kill_one_worker():
                victim = min(worker_pids(master))
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

            timer = threading.Timer(args.duration * args.kill_at, kill_one_worker)
            timer.start()
            fault = load(base, args, body_path, shop)
            timer.join()
            after = worker_pids(master)
            served = settled_answered_posts(base)
            print_figures(f"one worker killed with SIGKILL at {args.duration * args.kill_at:.0f} s", fault, served)
            fault_stored = stored_matches(shop, stored_before, served, slack=args.connections)
            replacements = sorted(after - before)
            print(f"  killed worker {killed[0]}; workers before {sorted(before)}, after {sorted(after)} "
                  f"(replacement {replacements[0] if replacements else 'none'})")
            print(f"  requests failed: {fault['failed']} (at most those in flight on the killed worker expected: one "
                  f"per connection it held, {args.connections} at most)")
            replaced = len(after) == args.workers and killed[0] not in after
            at_most_in_flight = fault["failed"] <= args.connections

        with serving(scratch / "slow.log", args.workers, env, cwd=PROJECT) as (base, _master):
            check_answers(base, body_path.read_bytes(), shop)
            with slow_clients(base, args.slow_clients) as probes:
                slow = load(base, args, body_path, shop)
            served = settled_answered_posts(base)
            print_figures(f"{args.slow_clients} connections trickling headers and {args.slow_clients} trickling "
                          "bodies, all the time", slow, served)
            late = [seconds for seconds in probes if seconds >= 1.0]
            print(f"  /health/live probes: {len(probes)}, answered within 1 s: {len(probes) - len(late)}, "
                  f"slowest {max(probes):.3f} s")
            slow_ok = slow["failed"] == 0 and not late and bool(probes)

        outage_ok = True
        if shop is not None:
            outage_ok = redis_outage_run(args, scratch, body_path, shop)
        ok = (steady["failed"] == 0 and at_most_in_flight and replaced and steady_stored and fault_stored
              and slow_ok and outage_ok)
        print("result:", "as expected" if ok else "NOT as expected")
    return 0 if ok else 1


@contextlib.contextmanager
def slow_clients(base: str, count: int):
    """``count`` connections sending a request's headers a byte a second and ``count`` sending
    a body a byte every three seconds, until the block ends; yields the list the probe
    thread fills with /health/live answer times (inf for a failed probe)."""
    host, port = base.removeprefix("http://").split(":")
    head = (b"POST /v1/recommendations HTTP/1.1\r\nHost: formwise\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n")
    stop, probes = threading.Event(), []

    def trickle(pieces: list[bytes], pause: float):
        while not stop.is_set():  # a connection the server cut off is opened again
            try:
                with socket.create_connection((host, int(port)), timeout=30) as sock:
                    for piece in pieces:
                        if stop.wait(pause):
                            return
                        sock.sendall(piece)
                    sock.recv(1)
            except OSError:
                continue

    def probe():
        while not stop.wait(0.5):
            started = time.monotonic()
            try:
                urllib.request.urlopen(base + "/health/live", timeout=1).read()
                probes.append(time.monotonic() - started)
            except (urllib.error.URLError, OSError):
                probes.append(float("inf"))

    threads = [threading.Thread(target=trickle, args=([bytes([b]) for b in head], 1.0), daemon=True)
               for _ in range(count)]
    threads += [threading.Thread(target=trickle, args=([head] + [b" "] * 200, 3.0), daemon=True)
                for _ in range(count)]
    threads.append(threading.Thread(target=probe, daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield probes
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=35)


def redis_outage_run(args, scratch: Path, body_path: Path, shop: Shop) -> bool:
    """The keyed load with the limits in a redis-server of this run's own, stopped for the
    middle third of the run: prints the statuses answered; True when they were only 200 and
    503 and the service answers 200 again after Redis is back."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("Redis stopped mid-run: skipped (no redis-server)")
        return True
    port = free_port()
    command = [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    env = {**shop.env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    redis = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        with serving(scratch / "redis.log", args.workers, env, cwd=PROJECT) as (base, _master):
            check_answers(base, body_path.read_bytes(), shop)
            events: list[str] = []

            def stop_redis():
                redis.terminate()
                redis.wait()
                events.append(f"stopped at {args.duration / 3:.0f} s")

            def start_redis():
                nonlocal redis
                redis = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                events.append(f"started again at {2 * args.duration / 3:.0f} s")

            timers = [threading.Timer(args.duration / 3, stop_redis), threading.Timer(2 * args.duration / 3,
                                                                                      start_redis)]
            for timer in timers:
                timer.start()
            outage = load(base, args, body_path, shop, count_statuses=True)
            for timer in timers:
                timer.join()
            statuses = {int(key.removeprefix("status_")): int(value) for key, value in outage.items()
                        if key.startswith("status_") and key[7:].isdigit()}
            print_figures(f"Redis (the rate limits) {', '.join(events)}", outage, settled_answered_posts(base))
            print(f"  answers by status: {dict(sorted(statuses.items()))}")
            time.sleep(1)
            check_answers(base, body_path.read_bytes(), shop)
            print("  after Redis is back: 200")
            return set(statuses) <= {200, 503} and outage["socket_errors"] == 0
    finally:
        redis.terminate()
        redis.wait()


if __name__ == "__main__":
    sys.exit(main())
