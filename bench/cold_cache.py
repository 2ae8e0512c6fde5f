"""What the engine's steps cost for one profile when the caches are cold, as they are
between requests under load (bench/bench_http.py shares two cores between wrk, the
kernel's network stack and two workers).

    .venv/bin/python bench/cold_cache.py [--calls 2000]

For each step: the median time of ``--calls`` calls in a row (warm), and of as many calls
each made right after a pass over 16 MB of memory (cold). Figures only; nothing asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import orjson

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from formwise.models.recommender import Recommender  # noqa: E402 (after the project folder is on the path)
from formwise.service.api.schemas import ProfileSchema  # noqa: E402

BODY = PROJECT.parent / "shared" / "bench" / "request.json"
THRASH_BYTES = 16 * 1024 * 1024


def median_us(samples: list[int]) -> float:
    return sorted(samples)[len(samples) // 2] / 1000


def warm_and_cold(step, calls: int, thrash) -> tuple[float, float]:
    warm, cold = [], []
    for _ in range(calls):
        started = time.perf_counter_ns()
        step()
        warm.append(time.perf_counter_ns() - started)
    for _ in range(calls):
        thrash()
        started = time.perf_counter_ns()
        step()
        cold.append(time.perf_counter_ns() - started)
    return median_us(warm), median_us(cold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    recommender = Recommender()
    profile = ProfileSchema().load(orjson.loads(BODY.read_bytes())["profile"])
    batch = recommender.batch([profile])
    scored = recommender.engine.score(batch)
    memory = np.ones(THRASH_BYTES // 8)
    steps = {
        "profile batch (Recommender.batch)": lambda: recommender.batch([profile]),
        "engine.score": lambda: recommender.engine.score(batch),
        "answers (AnswerBuilder.answers)": lambda: recommender.answers.answers(batch, scored, 3, "en"),
        "full answer (Recommender.recommend)": lambda: recommender.recommend([profile], limit=3),
        "one NumPy call (np.zeros((1, 3)))": lambda: np.zeros((1, 3), dtype=np.int16),
        "an empty Python call": lambda: None,
    }
    print(f"one profile ({BODY.name}); median of {args.calls} calls; cold = after a pass over "
          f"{THRASH_BYTES // (1024 * 1024)} MB")
    for name, step in steps.items():
        warm, cold = warm_and_cold(step, args.calls, memory.sum)
        print(f"  {name:38s} warm {warm:7.2f} us   cold {cold:7.2f} us   ({cold / warm:4.1f}x)")


if __name__ == "__main__":
    main()
