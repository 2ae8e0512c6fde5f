"""In-process scoring benchmark (issue 2, "Speed"). Prints figures; asserts nothing.

    .venv/bin/python bench/bench_engine.py [--repeats 5000] [--warmup 500] [--n 1000000]
                                           [--runs 3] [--blas-threads N]

(a) One profile: p50/p99 of ``engine.score(batch)`` for a one-profile batch, and of the
    full answer ``Recommender().recommend([profile])`` (features + score + answer dicts).
(b) 1,000,000 seeded random profiles built directly as numpy arrays: median of 3 timings
    of ``engine.score(batch)``.

Targets: one profile p50 <= 100 us; 1,000,000 profiles <= 2 s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from common import code_state  # bench/ is on sys.path when run as a script

from formwise import models
from formwise.models.engine.features import ProfileBatch
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.recommender import Recommender

REQUEST = Path(__file__).resolve().parents[2] / "shared" / "bench" / "request.json"
FALLBACK_PROFILE = {
    "age": 54,
    "sex": "female",
    "egfr": 58,
    "conditions": ["leg_cramps", "constipation"],
    "goals": ["sleep"],
    "medications": ["doxycycline", "omeprazole"],
}
ONE_PROFILE_TARGET_US = 100.0
MILLION_TARGET_S = 2.0


def load_profile() -> tuple[dict, str]:
    """The HTTP benchmark's profile (../shared/bench/request.json), so both benches score
    the same person; a built-in copy when ../shared is absent."""
    if REQUEST.is_file():
        profile, origin = json.loads(REQUEST.read_text())["profile"], str(REQUEST)
    else:
        profile, origin = dict(FALLBACK_PROFILE), "built-in copy of request.json"
    return profile, origin


def percentiles_us(samples_ns: list[int]) -> tuple[float, float, float]:
    ordered = np.sort(np.asarray(samples_ns, dtype=np.float64)) / 1000.0
    return (
        float(np.percentile(ordered, 50)),
        float(np.percentile(ordered, 99)),
        float(ordered.mean()),
    )


def time_calls(call, repeats: int, warmup: int) -> list[int]:
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(repeats):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def random_batch(n: int, n_forms: int, seed: int) -> ProfileBatch:
    """n profiles as columns, seeded: every field varies over its whole range."""
    rng = np.random.default_rng(seed)
    batch = ProfileBatch.empty(n, n_forms, keep_names=False)
    batch.age[:] = rng.integers(0, 121, n, dtype=np.int16)
    batch.sex[:] = rng.integers(0, len(vocab.SEXES), n, dtype=np.int8)
    female = batch.sex == vocab.SEXES.index("female")
    adult_female = female & (batch.age >= 14) & (batch.age <= 50)
    batch.pregnant[:] = adult_female & (rng.random(n) < 0.1)
    batch.breastfeeding[:] = adult_female & ~batch.pregnant & (rng.random(n) < 0.05)
    egfr = rng.uniform(5.0, 130.0, n)
    egfr[rng.random(n) < 0.4] = np.nan  # unknown kidney function
    batch.egfr[:] = egfr
    batch.dialysis[:] = rng.random(n) < 0.01
    batch.conditions[:] = rng.random(batch.conditions.shape) < 0.08
    batch.goals[:] = rng.random(batch.goals.shape) < 0.15
    batch.interaction_classes[:] = rng.random(batch.interaction_classes.shape) < 0.05
    batch.has_unrecognized_medication[:] = rng.random(n) < 0.02
    batch.avoid_forms[:] = rng.random(batch.avoid_forms.shape) < 0.03
    units = rng.integers(0, 5, n, dtype=np.int16)
    units[rng.random(n) < 0.8] = 0  # most profiles set no unit cap
    batch.max_units_per_day[:] = units
    return batch


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed (skipped)"
    pools = [f"{p.get('internal_api')}={p.get('num_threads')}" for p in threadpool_info()]
    return ", ".join(pools) or "no BLAS/OpenMP pools loaded"


def verdict(value: float, target: float) -> str:
    ratio = value / target
    return f"{ratio:.2f}x of target ({'MET' if ratio <= 1.0 else 'MISSED'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5000, help="timed calls per one-profile figure")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls before timing")
    parser.add_argument("--n", type=int, default=1_000_000, help="profiles in the large batch")
    parser.add_argument("--runs", type=int, default=3, help="timings of the large batch (median)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS threads (threadpoolctl); default: the library's own choice")
    args = parser.parse_args()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)

    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"code: {code_state(Path(models.__file__).resolve().parents[1])}")
    print(f"nproc: {os.cpu_count()}  (affinity: {len(os.sched_getaffinity(0))}); load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"BLAS/OpenMP threads: {blas_threads()}")

    recommender = Recommender()
    engine = recommender.engine
    profile, origin = load_profile()
    print(f"profile: {origin}")

    # ---- (a) one profile ---------------------------------------------------------------
    one = recommender.batch([profile])
    score_ns = time_calls(lambda: engine.score(one), args.repeats, args.warmup)
    answer_ns = time_calls(lambda: recommender.recommend([profile]), args.repeats, args.warmup)
    s50, s99, smean = percentiles_us(score_ns)
    a50, a99, amean = percentiles_us(answer_ns)
    print()
    print(f"one profile, {args.repeats} timed calls after {args.warmup} warm-up calls:")
    print(f"  engine.score(batch)      p50 {s50:8.1f} us  p99 {s99:8.1f} us  mean {smean:8.1f} us")
    print(f"  recommender.recommend()  p50 {a50:8.1f} us  p99 {a99:8.1f} us  mean {amean:8.1f} us")
    print(f"  target p50 <= {ONE_PROFILE_TARGET_US:.0f} us: engine.score {verdict(s50, ONE_PROFILE_TARGET_US)}; "
          f"full answer {verdict(a50, ONE_PROFILE_TARGET_US)}")

    # ---- (b) 1,000,000 profiles --------------------------------------------------------
    start = time.perf_counter()
    big = random_batch(args.n, len(engine.form_ids), args.seed)
    built_s = time.perf_counter() - start
    engine.score(random_batch(1000, len(engine.form_ids), args.seed + 1))  # warm-up, small
    timings = []
    for _ in range(args.runs):
        start = time.perf_counter_ns()
        scored = engine.score(big)
        timings.append((time.perf_counter_ns() - start) / 1e9)
        del scored
    median_s = statistics.median(timings)
    print()
    print(f"{args.n:,} profiles (seed {args.seed}; batch built in {built_s:.2f} s, not timed):")
    print(f"  engine.score(batch)  median {median_s:.3f} s of {args.runs}: "
          + ", ".join(f"{t:.3f}" for t in timings)
          + f"  ({args.n / median_s / 1e6:.2f} M profiles/s)")
    print(f"  target <= {MILLION_TARGET_S:.0f} s: {verdict(median_s * 1_000_000 / args.n, MILLION_TARGET_S)}"
          + ("" if args.n == 1_000_000 else " (scaled to 1,000,000)"))


if __name__ == "__main__":
    main()
