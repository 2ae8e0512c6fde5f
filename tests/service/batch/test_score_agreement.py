"""`formwise score` answers what `POST /v1/recommendations` answers, profile for profile:
ranks, form ids, scores rounded as the API rounds them, excluded forms, caveat codes in
the API's order, max_severity and unrecognised medications (CSV and Parquet), and whole
answers apart from recommendation_id (JSON Lines). Several hundred seeded random profiles."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.service.app import create_app
from formwise.service.cli.main import main

FORM_IDS = default_knowledge_base().form_ids
MEDICINES = ("doxycycline", "Synthroid", "omeprazole", "LASIX", "rxcui:10582", "spironolactone", "Dyazide", "digoxin",
             "ciprofloxacin 500 mg", "gabapentin", "Tivicay", "alendronate", "vitamin c", "a, b", "Zzz-unknown")
N_PROFILES = 300


def random_profiles(n: int, seed: int = 20261122) -> list[dict]:
    rng = np.random.default_rng(seed)

    def some(words, most=3):
        k = int(rng.integers(0, most + 1))
        return [str(word) for word in rng.choice(words, size=k, replace=False)] if k else []

    profiles = []
    for _ in range(n):
        egfr_kind = rng.integers(0, 4)
        egfr = (None if egfr_kind == 0 else float(rng.integers(5, 130)) if egfr_kind == 1
                else round(float(rng.uniform(0, 150)), int(rng.integers(1, 4))) if egfr_kind == 2
                else float(rng.choice([29.999, 30.0, 59.99, 60.0, 0.0, 250.0])))
        profile = {
            "age": int(rng.choice([0, 1, 3, 4, 8, 9, 18, 64, 65, 120]) if rng.random() < 0.3 else rng.integers(0, 121)),
            "sex": str(rng.choice(vocab.SEXES)),
            "pregnant": bool(rng.random() < 0.1),
            "breastfeeding": bool(rng.random() < 0.1),
            "egfr": egfr,
            "dialysis": bool(rng.random() < 0.05),
            "conditions": some(vocab.CONDITIONS),
            "goals": some(vocab.GOALS, 2),
            "medications": some(MEDICINES),
            "preferences": {"avoid_forms": some(FORM_IDS, 2) if rng.random() < 0.2 else [],
                            "max_units_per_day": int(rng.integers(1, 13)) if rng.random() < 0.2 else None},
        }
        profiles.append(profile)
    return profiles


def csv_row(item_id: str, profile: dict) -> dict:
    def flag(value):
        return "true" if value else ""

    units = profile["preferences"]["max_units_per_day"]
    egfr = profile["egfr"]
    return {
        "id": item_id, "age": str(profile["age"]), "sex": profile["sex"], "pregnant": flag(profile["pregnant"]),
        "breastfeeding": flag(profile["breastfeeding"]), "egfr": "" if egfr is None else repr(egfr),
        "dialysis": flag(profile["dialysis"]), "conditions": ";".join(profile["conditions"]),
        "goals": ";".join(profile["goals"]), "medications": ";".join(profile["medications"]),
        "avoid_forms": ";".join(profile["preferences"]["avoid_forms"]), "max_units_per_day": "" if units is None
        else str(units),
    }


@pytest.fixture(scope="module")
def cases():
    """The API's answers to the module's profiles, asked once: every test compares a file
    run against the same answers."""
    profiles = random_profiles(N_PROFILES)
    client = create_app({"TESTING": True}).test_client()
    answers = []
    for profile in profiles:
        response = client.post("/v1/recommendations", json={"profile": profile})
        assert response.status_code == 200, response.get_json()
        answers.append(response.get_json())
    return [(f"p{i}", profile, answer) for i, (profile, answer) in enumerate(zip(profiles, answers, strict=True))]


@pytest.fixture(scope="module")
def input_csv(cases, tmp_path_factory):
    path = tmp_path_factory.mktemp("agreement") / "profiles.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(csv_row("x", cases[0][1])))
        writer.writeheader()
        for item_id, profile, _ in cases:
            writer.writerow(csv_row(item_id, profile))
    return path


def score(runner, *args):
    result = runner.invoke(main, ["score", *map(str, args), "--quiet", "--chunk-size", "64"])
    assert result.exit_code == 0, result.output
    assert f"rows_in={N_PROFILES} rows_scored={N_PROFILES} rows_rejected=0" in result.output
    return result


def expected_row(item_id: str, answer: dict) -> dict:
    row = {"id": item_id}
    for k in range(3):
        ranked = answer["recommendations"][k] if k < len(answer["recommendations"]) else None
        row[f"rank{k + 1}_form"] = ranked["form"] if ranked else None
        row[f"rank{k + 1}_score"] = ranked["score"] if ranked else None
    row["excluded"] = ";".join(item["form"] for item in answer["excluded"])
    row["caveat_codes"] = ";".join(item["code"] for item in answer["caveats"])
    row["max_severity"] = answer["max_severity"]
    row["unrecognized_medications"] = ";".join(answer["unrecognized_medications"])
    return row


def test_csv_output_rows_equal_the_api(runner, cases, input_csv, tmp_path):
    output = tmp_path / "scored.csv"
    score(runner, input_csv, "-o", output)
    with output.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(cases)
    for row, (item_id, _, answer) in zip(rows, cases, strict=True):
        got = {name: (value or None) if name.startswith("rank") else value for name, value in row.items()}
        for k in range(1, 4):
            if got[f"rank{k}_score"] is not None:
                got[f"rank{k}_score"] = float(got[f"rank{k}_score"])
        assert got == expected_row(item_id, answer)


def test_parquet_output_rows_equal_the_api(runner, cases, input_csv, tmp_path):
    output = tmp_path / "scored.parquet"
    score(runner, input_csv, "-o", output)
    rows = pq.read_table(output).to_pylist()
    assert rows == [expected_row(item_id, answer) for item_id, _, answer in cases]


def test_jsonl_output_answers_equal_the_api_but_for_the_id(runner, cases, input_csv, tmp_path):
    output = tmp_path / "answers.jsonl"
    score(runner, input_csv, "-o", output)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["id"] for line in lines] == [item_id for item_id, _, _ in cases]
    ids = set()
    for line, (_, _, answer) in zip(lines, cases, strict=True):
        assert line["error"] is None
        output_answer = dict(line["output"])
        ids.add(output_answer.pop("recommendation_id"))
        assert output_answer == {key: value for key, value in answer.items() if key != "recommendation_id"}
    assert len(ids) == len(cases)


def test_jsonl_input_scores_like_csv_input(runner, cases, input_csv, tmp_path):
    jsonl = tmp_path / "profiles.jsonl"
    jsonl.write_text("".join(json.dumps({"id": item_id, "profile": profile}) + "\n" for item_id, profile, _ in cases))
    score(runner, jsonl, "-o", tmp_path / "from_jsonl.csv")
    score(runner, input_csv, "-o", tmp_path / "from_csv.csv")
    assert (tmp_path / "from_jsonl.csv").read_bytes() == (tmp_path / "from_csv.csv").read_bytes()
