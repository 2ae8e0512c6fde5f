"""Benchmark `formwise score` CSV -> CSV against the floor and the single-profile loop.

    .venv/bin/python bench/bench_score.py                 # 1,000,000 rows, then 5,000,000 for memory
    .venv/bin/python bench/bench_score.py --rows 200000 --large-rows 0

For each size it generates a seeded synthetic CSV (contract columns, realistic mixes of
conditions, goals, medicines known and unknown, eGFR missing half the time), then times,
each in a fresh process and end to end (start-up included):

- ``formwise score INPUT.csv -o OUT.csv --quiet``;
- the floor: Python + pyarrow reading that CSV (every column as text, as the scorer
  does) and writing the same number of rows back to CSV, no scoring;
- the single-profile path: ``Recommender().recommend([profile])`` looped over a sample
  of the same rows (already parsed), extrapolated to every row.

Peak memory is each process's maximum RSS (getrusage of the finished child, read by a
fresh wrapper process per run so runs never mix). It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
FORMWISE = Path(sys.executable).parent / "formwise"
COLUMNS = ("id", "age", "sex", "pregnant", "breastfeeding", "egfr", "dialysis", "conditions", "goals", "medications")
MEDICINES = ("omeprazole", "doxycycline", "levothyroxine", "furosemide", "Synthroid", "ciprofloxacin 500 mg",
             "alendronate", "gabapentin", "hydrochlorothiazide", "amlodipine", "metformin", "atorvastatin",
             "rxcui:10582", "lisinopril", "vitamin d", "LASIX", "spironolactone", "digoxin")
TARGETS = {"rows_per_second": 250_000, "floor_ratio": 4.0, "loop_speedup": 30.0, "rss_5m_mib": 1024,
           "rss_growth": 1.5}

FLOOR = """
import sys, pyarrow as pa, pyarrow.csv as c
names = {names!r}
table = c.read_csv(sys.argv[1], convert_options=c.ConvertOptions(column_types={{n: pa.string() for n in names}}))
c.write_csv(table, sys.argv[2])
print(table.num_rows)
"""


# ---- data ---------------------------------------------------------------------------


def generate(path: Path, rows: int, seed: int = 20261122, block: int = 500_000) -> None:
    """A seeded synthetic input, written in blocks (memory stays small for 5M rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    from formwise.models.knowledge import vocabulary as vocab

    rng = np.random.default_rng(seed)

    def pool(words, most, size, p_empty):
        cells = []
        for _ in range(size):
            k = 0 if rng.random() < p_empty else int(rng.integers(1, most + 1))
            cells.append(";".join(str(w) for w in rng.choice(words, k, replace=False)))
        return pa.array(cells)

    conditions = pool(vocab.CONDITIONS, 3, 4000, 0.5)
    goals = pool(vocab.GOALS, 2, 500, 0.3)
    medications = pool(MEDICINES, 3, 4000, 0.55)
    sexes = pa.array(["", "female", "male", "unspecified"])
    flags = pa.array(["", "false", "true", "0", "1"])
    writer = None
    try:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            ids = pc.binary_join_element_wise("c", pa.array(np.arange(start, start + n)).cast(pa.string()), "")
            egfr_values = np.round(rng.uniform(5, 130, n), 1)
            egfr = pa.array(egfr_values).cast(pa.string())
            egfr = pc.if_else(pa.array(rng.random(n) < 0.5), "", egfr)
            table = pa.table({
                "id": ids,
                "age": pa.array(rng.integers(0, 121, n)).cast(pa.string()),
                "sex": sexes.take(pa.array(rng.integers(0, 4, n))),
                "pregnant": flags.take(pa.array(np.where(rng.random(n) < 0.03, 2, rng.integers(0, 2, n)))),
                "breastfeeding": flags.take(pa.array(np.where(rng.random(n) < 0.02, 4, 3))),
                "egfr": egfr,
                "dialysis": flags.take(pa.array(np.where(rng.random(n) < 0.01, 2, 0))),
                "conditions": conditions.take(pa.array(rng.integers(0, len(conditions), n))),
                "goals": goals.take(pa.array(rng.integers(0, len(goals), n))),
                "medications": medications.take(pa.array(rng.integers(0, len(medications), n))),
            })
            if writer is None:
                writer = pa_csv.CSVWriter(str(path), table.schema, write_options=pa_csv.WriteOptions(
                    quoting_style="none"))
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def sample_profiles(path: Path, count: int) -> list[dict]:
    """The first ``count`` rows as validated profile dicts (the API's shape)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    with pa_csv.open_csv(str(path), convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in COLUMNS})) as reader:
        rows = []
        for batch in reader:
            rows.extend(batch.to_pylist())
            if len(rows) >= count:
                break
    rows = rows[:count]

    def words(cell):
        return [item.strip() for item in cell.split(";")] if cell.strip() else []

    profiles = []
    for row in rows:
        profiles.append({
            "age": int(row["age"]), "sex": row["sex"] or "unspecified",
            "pregnant": row["pregnant"].lower() in ("true", "1"),
            "breastfeeding": row["breastfeeding"].lower() in ("true", "1"),
            "egfr": float(row["egfr"]) if row["egfr"] else None,
            "dialysis": row["dialysis"].lower() in ("true", "1"),
            "conditions": words(row["conditions"]), "goals": words(row["goals"]),
            "medications": words(row["medications"]),
            "preferences": {"avoid_forms": [], "max_units_per_day": None},
        })
    return profiles


# ---- measuring ----------------------------------------------------------------------


def measure(command: list[str]) -> dict:
    """Run ``command`` through a fresh wrapper process: wall seconds and the child's peak RSS."""
    wrapper = [sys.executable, __file__, "--measure-child", "--", *command]
    done = subprocess.run(wrapper, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_child(command: list[str]) -> None:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(done.returncode)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"wall": wall, "peak_mib": peak_kib / 1024, "stdout": done.stdout.strip()[-200:]}))


def time_loop(profiles: list[dict]) -> float:
    """Seconds per row of Recommender().recommend([profile]), one profile per call."""
    from formwise.models.recommender import Recommender

    recommender = Recommender()
    for profile in profiles[:50]:
        recommender.recommend([profile])
    started = time.perf_counter()
    for profile in profiles:
        recommender.recommend([profile])
    return (time.perf_counter() - started) / len(profiles)


def bench_size(rows: int, workdir: Path, repeat: int, loop_sample: int) -> dict:
    source = workdir / f"profiles-{rows}.csv"
    if not source.exists():
        started = time.perf_counter()
        generate(source, rows)
        print(f"  generated {source.name} ({source.stat().st_size / 2**20:,.0f} MiB) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    floor_script = FLOOR.format(names=COLUMNS)
    runs, floors = [], []
    for attempt in range(repeat):
        floor = measure([sys.executable, "-c", floor_script, str(source), str(workdir / "floor.csv")])
        run = measure([str(FORMWISE), "score", str(source), "-o", str(workdir / "scored.csv"), "--quiet"])
        if f"rows_in={rows} rows_scored=" not in run["stdout"]:
            raise SystemExit(f"unexpected summary: {run['stdout']}")
        floors.append(floor)
        runs.append(run)
        print(f"  run {attempt + 1}: formwise score {run['wall']:.2f} s ({rows / run['wall']:,.0f} rows/s, "
              f"peak {run['peak_mib']:,.0f} MiB); floor {floor['wall']:.2f} s; ratio {run['wall'] / floor['wall']:.2f}",
              flush=True)
    result = {
        "rows": rows,
        "score_s": statistics.median(r["wall"] for r in runs),
        "floor_s": statistics.median(f["wall"] for f in floors),
        "ratio": statistics.median(r["wall"] / f["wall"] for r, f in zip(runs, floors, strict=True)),
        "peak_mib": max(r["peak_mib"] for r in runs),
        "floor_peak_mib": max(f["peak_mib"] for f in floors),
    }
    result["rows_per_s"] = rows / result["score_s"]
    if loop_sample:
        per_row = time_loop(sample_profiles(source, loop_sample))
        result["loop_s"] = per_row * rows
        result["speedup"] = result["loop_s"] / result["score_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=5_000_000, help="0 to skip the memory run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; medians are reported")
    parser.add_argument("--loop-sample", type=int, default=3_000)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the generated files here")
    arguments = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cores (nproc): {cores}; load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="formwise-bench-score-") as temporary:
        workdir = arguments.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"{arguments.rows:,} rows:")
        main_result = bench_size(arguments.rows, workdir, arguments.repeat, arguments.loop_sample)
        large = None
        if arguments.large_rows:
            print(f"{arguments.large_rows:,} rows (memory):")
            large = bench_size(arguments.large_rows, workdir, 1, 0)
            if not arguments.workdir:
                (workdir / f"profiles-{arguments.large_rows}.csv").unlink(missing_ok=True)

    def mark(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    r = main_result
    print()
    print(f"formwise score, {r['rows']:,} rows CSV -> CSV (median of {arguments.repeat}): {r['score_s']:.2f} s")
    print(f"  throughput      {r['rows_per_s']:>12,.0f} rows/s   target >= {TARGETS['rows_per_second']:,}  "
          f"{mark(r['rows_per_s'] >= TARGETS['rows_per_second'])}")
    print(f"  vs floor        {r['ratio']:>12.2f} x        floor {r['floor_s']:.2f} s; target <= "
          f"{TARGETS['floor_ratio']}  {mark(r['ratio'] <= TARGETS['floor_ratio'])}")
    if "speedup" in r:
        print(f"  vs loop         {r['speedup']:>12.1f} x        loop extrapolated {r['loop_s']:.0f} s; target >= "
              f"{TARGETS['loop_speedup']:.0f}  {mark(r['speedup'] >= TARGETS['loop_speedup'])}")
    print(f"  peak RSS        {r['peak_mib']:>12,.0f} MiB      (floor {r['floor_peak_mib']:,.0f} MiB)")
    if large:
        growth = large["peak_mib"] / r["peak_mib"]
        print(f"formwise score, {large['rows']:,} rows: {large['score_s']:.2f} s "
              f"({large['rows_per_s']:,.0f} rows/s, {large['ratio']:.2f} x floor)")
        print(f"  peak RSS        {large['peak_mib']:>12,.0f} MiB      target < {TARGETS['rss_5m_mib']} MiB  "
              f"{mark(large['peak_mib'] < TARGETS['rss_5m_mib'])}")
        print(f"  vs {r['rows']:,} rows {growth:>10.2f} x        target <= {TARGETS['rss_growth']}  "
              f"{mark(growth <= TARGETS['rss_growth'])}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--measure-child":
        measure_child(sys.argv[3:])
    else:
        sys.path.insert(0, str(PROJECT))
        main()
