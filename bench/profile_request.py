"""Where one POST /v1/recommendations spends its time, in-process (no sockets, no gunicorn).

    .venv/bin/python bench/profile_request.py [--requests 3000] [--top 30] [--sort tottime] [--keyed] 2>/dev/null

(stderr carries the service's request log lines.)

Calls the WSGI app of the service and of the bare Flask floor (../shared/bench/bare_flask.py)
with the same body, prints the time per request of each (median of
chunk means) and their ratio (an upper
bound on what gunicorn can show: it adds the same socket and parsing cost to both), then
a cProfile table of the service's request path.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SHARED_BENCH = PROJECT.parent / "shared" / "bench"
PATH = "/v1/recommendations"


def load_bare_app(folder: Path):
    spec = importlib.util.spec_from_file_location("bare_flask", folder / "bare_flask.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def caller(app, body: bytes, headers: dict | None = None):
    """A zero-argument function that runs one request through the app's WSGI callable."""
    from werkzeug.test import EnvironBuilder

    template = EnvironBuilder(path=PATH, method="POST", data=body, content_type="application/json",
                              headers=headers or {}).get_environ()

    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            raise RuntimeError(f"status {status}")

    def call():
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(body)
        for _chunk in app(environ, start_response):
            pass

    return call


def bench_shop_key(app) -> str:
    """A shop with one secret key and no products, in the app's database; returns the key."""
    from formwise.service.shops import keys as shops
    from formwise.service.store import queries as storage

    key = shops.generate_key("secret")
    with app.app_context():
        storage.add_shop("profile-bench", [], [("secret", shops.display_prefix(key), shops.hash_key(key))])
    return key


def mean_us(call, requests: int, chunks: int = 10) -> float:
    """Median over ``chunks`` of the mean time per request (robust to a noisy machine)."""
    for _ in range(min(300, requests)):
        call()
    per_chunk = max(1, requests // chunks)
    means = []
    for _ in range(chunks):
        start = time.perf_counter_ns()
        for _ in range(per_chunk):
            call()
        means.append((time.perf_counter_ns() - start) / per_chunk / 1000)
    return statistics.median(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="pstats sort key: tottime or cumulative")
    parser.add_argument("--body", type=Path, default=SHARED_BENCH / "request.json")
    parser.add_argument("--project", type=Path, default=PROJECT, help="where wsgi.py, models/ and service/ are")
    parser.add_argument("--keyed", action="store_true",
                        help="send a shop's secret key (a shop made in a temporary SQLite file, rate limit lifted)")
    args = parser.parse_args()

    sys.path.insert(0, str(args.project))
    headers = {}
    if args.keyed:
        os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='formwise-profile-')}/shops.db"
        os.environ["FORMWISE_RATE_LIMIT"] = "1000000/minute"
    from wsgi import app as service_app

    if args.keyed:
        headers["X-API-Key"] = bench_shop_key(service_app)
    body = args.body.read_bytes()
    service = caller(service_app, body, headers)
    bare = caller(load_bare_app(SHARED_BENCH), body)
    service_us, bare_us = mean_us(service, args.requests), mean_us(bare, args.requests)
    print(f"in-process mean per request: service {service_us:.1f} us, bare {bare_us:.1f} us, "
          f"service work {service_us - bare_us:.1f} us; bare/service {bare_us / service_us:.3f}")

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.requests):
        service()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
