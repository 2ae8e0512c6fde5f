"""One answer's latency, this checkout against an earlier commit, measured in the same run.
Prints figures; asserts nothing.

    .venv/bin/python bench/bench_answer.py [--baseline f88bd07] [--rounds 5] [--calls 3000]

Each round times ``Recommender().recommend([profile])`` (the whole answer: profile batch,
medicine names, scoring, answer dicts) for a set of everyday profiles, in two fresh
processes: this checkout, and the baseline commit checked out in a temporary git worktree
(same interpreter, same packages). The two alternate which goes first. It prints each
round's p50 per side, the paired ratio (this / baseline) per round, and their median.

The profiles use only v1 fields so that both versions answer them; their medicines include
brand, German and combination names, as people type them (the baseline does not know some:
their cost is part of the comparison)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "f88bd07"  # the last commit before contract v1.1 and the label-based interactions
PROFILES = [
    {"age": 54, "sex": "female", "egfr": 58, "conditions": ["leg_cramps", "constipation"], "goals": ["sleep"],
     "medications": ["doxycycline", "omeprazole"]},  # ../shared/bench/request.json
    {"age": 72, "sex": "male", "goals": ["general"], "medications": ["Synthroid", "Lasix"]},
    {"age": 35, "sex": "female", "egfr": 100, "goals": ["sleep", "relaxation"]},
    {"age": 61, "egfr": 75, "conditions": ["constipation"],
     "medications": ["L-Thyroxin Henning 75", "Pantoprazol 20 mg"]},
    {"age": 44, "egfr": 95, "conditions": ["migraine"], "goals": ["migraine_prevention"],
     "medications": ["dolutegravir/lamivudine", "moxifloxacin 400 mg"]},
]


def measure(calls: int, warmup: int) -> dict:
    """p50 and p99 (us) of one answer, cycling through PROFILES, in this process's code tree."""
    sys.path.insert(0, os.getcwd())
    from formwise.models.recommender import Recommender

    recommender = Recommender()
    for i in range(warmup):
        recommender.recommend([PROFILES[i % len(PROFILES)]])
    samples = []
    clock = time.perf_counter_ns
    for i in range(calls):
        profile = PROFILES[i % len(PROFILES)]
        start = clock()
        recommender.recommend([profile])
        samples.append(clock() - start)
    samples.sort()
    return {"p50_us": samples[len(samples) // 2] / 1000, "p99_us": samples[int(len(samples) * 0.99)] / 1000}


def run_side(tree: Path, calls: int, warmup: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_answer.py"), "--measure",
                             "--calls", str(calls), "--warmup", str(warmup)],
                            cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"measurement in {tree} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="commit to compare against")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (median of their ratios)")
    parser.add_argument("--calls", type=int, default=3000, help="timed answers per side and round")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.calls, args.warmup)))
        return

    current = git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain",
                                                                                   "--untracked-files=no") else "")
    print(f"this checkout: {current}; baseline: {args.baseline}; nproc {os.cpu_count()}; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="formwise-baseline-") as folder:
        baseline_tree = Path(folder) / "tree"
        git("worktree", "add", "--detach", str(baseline_tree), args.baseline)
        try:
            ratios = []
            print(f"{'round':>5}  {'this p50 us':>12}  {'baseline p50 us':>16}  {'ratio':>6}")
            for round_number in range(args.rounds):
                sides = [("this", ROOT), ("baseline", baseline_tree)]
                if round_number % 2:
                    sides.reverse()
                figures = {name: run_side(tree, args.calls, args.warmup) for name, tree in sides}
                ratio = figures["this"]["p50_us"] / figures["baseline"]["p50_us"]
                ratios.append(ratio)
                print(f"{round_number + 1:>5}  {figures['this']['p50_us']:>12.1f}  "
                      f"{figures['baseline']['p50_us']:>16.1f}  {ratio:>6.3f}")
        finally:
            git("worktree", "remove", "--force", str(baseline_tree))
    print(f"median paired ratio (this / baseline) over {args.rounds} rounds: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
