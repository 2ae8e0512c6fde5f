"""Learning benchmark (issue 6). Prints figures; asserts nothing.

    .venv/bin/python bench/bench_learning.py [--repeats 7] [--profiles 100000] [--singles 2000]

(a) Training on the shipped judgments: load + pairs + fit, and the whole ``formwise train``
    recipe (fit + 5-fold cross-validation). Target: under 10 s.
(b) Cross-validated NDCG@3 and pairwise accuracy, learned vs hand-set, on the same folds.
    Target: learned >= hand-set.
(c) Scoring speed with the learned weights vs the hand-set ones, timed alternately in one run:
    ``engine.score`` on a batch of random profiles, and the full one-profile answer
    ``Recommender.recommend``. Target: learned within 20% of hand-set.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from formwise.models.engine.scoring import Engine
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.learning.training import JudgedCases, cross_validate, load_judgments, new_ranker, train
from formwise.models.recommender import Recommender

TRAIN_TARGET_S = 10.0
SPEED_TOLERANCE = 0.20
PROFILE = {"age": 54, "sex": "female", "egfr": 58, "conditions": ["leg_cramps", "constipation"], "goals": ["sleep"],
           "medications": ["doxycycline", "omeprazole"]}


def random_profiles(n: int, form_ids, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    profiles = []
    for _ in range(n):
        profiles.append({
            "age": int(rng.integers(0, 121)),
            "sex": str(rng.choice(vocab.SEXES)),
            "pregnant": bool(rng.random() < 0.05),
            "breastfeeding": bool(rng.random() < 0.05),
            "egfr": None if rng.random() < 0.3 else float(rng.uniform(5, 130)),
            "dialysis": bool(rng.random() < 0.02),
            "conditions": list(rng.choice(vocab.CONDITIONS, rng.integers(0, 3), replace=False)),
            "goals": list(rng.choice(vocab.GOALS, rng.integers(0, 3), replace=False)),
            "medications": [],
            "preferences": {"avoid_forms": list(rng.choice(form_ids, rng.integers(0, 2), replace=False)),
                            "max_units_per_day": None},
        })
    return profiles


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--singles", type=int, default=2_000)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    knowledge_base = default_knowledge_base()
    engine = Engine(knowledge_base)

    # (a) training time
    def fit_once():
        judgments = load_judgments(knowledge_base)
        pairs = JudgedCases.build(judgments, engine).pairs(engine.centred_attributes)
        new_ranker(engine).fit(pairs.X, pairs.y, pairs.sample_weight)

    fit_seconds = statistics.median(seconds(fit_once) for _ in range(3))
    judgments = load_judgments(knowledge_base)
    started, started_cpu = time.perf_counter(), time.process_time()
    result = train(knowledge_base, judgments)
    recipe_seconds, recipe_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    print(f"(a) training on {len(judgments)} judgments ({result.metadata['judged_pairs']} pairs): "
          f"load+pairs+fit median {fit_seconds:.2f} s; with 5-fold cross-validation {recipe_seconds:.2f} s "
          f"({recipe_cpu:.2f} s CPU) (target < {TRAIN_TARGET_S:.0f} s: "
          f"{'met' if recipe_seconds < TRAIN_TARGET_S else 'MISSED'})")

    # (b) quality on the same folds
    metrics = cross_validate(JudgedCases.build(judgments, engine), engine)
    learned, hand_set = metrics["learned"], metrics["hand_set"]
    print(f"(b) cross-validated on the same {metrics['folds']} folds of {metrics['cases']} ranked cases: "
          f"NDCG@3 learned {learned['ndcg_at_3']:.4f} vs hand-set {hand_set['ndcg_at_3']:.4f} "
          f"(ratio {learned['ndcg_at_3'] / hand_set['ndcg_at_3']:.3f}); pairwise accuracy "
          f"{learned['pairwise_accuracy']:.4f} vs {hand_set['pairwise_accuracy']:.4f} "
          f"(target learned >= hand-set: {'met' if learned['ndcg_at_3'] >= hand_set['ndcg_at_3'] else 'MISSED'})")

    # (c) scoring speed, learned vs hand-set, alternating so that load changes hit both
    models = {"hand-set": Recommender(knowledge_base, artifact=None),
              "learned": Recommender(knowledge_base, weights=result.ranker.weights_, model_version="learned")}
    batch = models["hand-set"].batch(random_profiles(args.profiles, knowledge_base.form_ids))
    batch_times = {name: [] for name in models}
    single_times = {name: [] for name in models}
    for recommender in models.values():  # warm-up
        recommender.score(batch)
        recommender.recommend([PROFILE])
    for _ in range(args.repeats):
        for name, recommender in models.items():
            batch_times[name].append(seconds(lambda r=recommender: r.score(batch)))
            single_times[name].append(seconds(lambda r=recommender: [r.recommend([PROFILE])
                                                                       for _ in range(args.singles)]) / args.singles)
    batch_ratio = statistics.median(batch_times["learned"]) / statistics.median(batch_times["hand-set"])
    single_ratio = statistics.median(single_times["learned"]) / statistics.median(single_times["hand-set"])
    for name in models:
        print(f"(c) {name:>8}: engine.score on {args.profiles:,} profiles median "
              f"{statistics.median(batch_times[name]):.3f} s; one full answer median "
              f"{statistics.median(single_times[name]) * 1e6:.0f} us")
    worst = max(batch_ratio, single_ratio)
    print(f"(c) learned / hand-set time: batch {batch_ratio:.3f}, one answer {single_ratio:.3f} "
          f"(target <= {1 + SPEED_TOLERANCE:.2f}: {'met' if worst <= 1 + SPEED_TOLERANCE else 'MISSED'})")


if __name__ == "__main__":
    main()
