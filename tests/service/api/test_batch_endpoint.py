"""POST /v1/recommendations/batch: one result per item in input order, a problem for each
bad item while the others are answered, each output the single endpoint's answer (but for
recommendation_id), and at most 1,000 items."""

from __future__ import annotations

import pytest

from tests.service.batch.test_score_agreement import random_profiles

BATCH = "/v1/recommendations/batch"


def without_id(answer: dict) -> dict:
    return {key: value for key, value in answer.items() if key != "recommendation_id"}


def test_bad_items_get_their_own_error_and_the_rest_are_answered_in_order(client):
    items = [
        {"id": "good-1", "profile": {"age": 40, "goals": ["sleep"]}},
        {"id": "bad-age", "profile": {"age": "forty"}},
        "not an object",
        {"profile": {"age": 30}},
        {"id": "bad-word", "profile": {"age": 30, "conditions": ["gout"]}},
        {"id": "extra", "profile": {"age": 30}, "colour": "blue"},
        {"id": "no-profile"},
        {"id": "good-2", "profile": {"age": 70, "egfr": 45, "medications": ["doxycycline", "zzz"]}},
    ]
    response = client.post(BATCH, json={"items": items})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [result["id"] for result in results] == ["good-1", "bad-age", None, None, "bad-word", "extra", "no-profile",
                                                     "good-2"]
    answered = [result["output"] is not None for result in results]
    assert answered == [True, False, False, False, False, False, False, True]
    for result in results:
        assert (result["output"] is None) != (result["error"] is None)
    fields = {result["id"] or f"#{position}": [error["field"] for error in result["error"]["errors"]]
              for position, result in enumerate(results) if result["error"]}
    assert fields == {"bad-age": ["profile.age"], "#2": ["item"], "#3": ["id"], "bad-word": ["profile.conditions.0"],
                      "extra": ["colour"], "no-profile": ["profile"]}
    for result in results:
        if result["error"]:
            problem = result["error"]
            assert problem["status"] == 422 and problem["title"] and problem["type"].endswith("validation-error")
            assert all(error["message"] for error in problem["errors"])
    assert "Must be one of:" in results[4]["error"]["errors"][0]["message"]


def test_each_output_equals_the_single_endpoints_answer(client):
    profiles = random_profiles(40, seed=7)
    response = client.post(BATCH, json={"items": [{"id": f"p{i}", "profile": p} for i, p in enumerate(profiles)],
                                        "options": {"limit": 5}})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [result["id"] for result in results] == [f"p{i}" for i in range(len(profiles))]
    ids = set()
    for profile, result in zip(profiles, results, strict=True):
        single = client.post("/v1/recommendations", json={"profile": profile, "options": {"limit": 5}})
        assert single.status_code == 200
        assert result["error"] is None
        assert without_id(result["output"]) == without_id(single.get_json())
        ids.add(result["output"]["recommendation_id"])
    assert len(ids) == len(profiles)  # every answer gets its own id


def test_duplicate_ids_are_answered_separately(client):
    items = [{"id": "same", "profile": {"age": 30}}, {"id": "same", "profile": {"age": 0}}]
    results = client.post(BATCH, json={"items": items}).get_json()["results"]
    assert [result["output"]["max_severity"] for result in results] == ["info", "critical"]


def test_one_thousand_items_are_answered(client):
    items = [{"id": str(i), "profile": {"age": i % 121}} for i in range(1000)]
    response = client.post(BATCH, json={"items": items})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [result["id"] for result in results] == [str(i) for i in range(1000)]
    assert all(result["error"] is None for result in results)


@pytest.mark.parametrize("count", [1001, 0])
def test_more_than_one_thousand_items_or_none_is_a_422_problem(client, count):
    items = [{"id": str(i), "profile": {"age": 30}} for i in range(count)]
    response = client.post(BATCH, json={"items": items})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 422
    assert [error["field"] for error in problem["errors"]] == ["items"]
    assert "1000" in problem["errors"][0]["message"] or "1,000" in problem["errors"][0]["message"]


def test_a_body_without_items_is_a_422_problem(client):
    response = client.post(BATCH, json={"profiles": []})
    assert response.status_code == 422
    assert {error["field"] for error in response.get_json()["errors"]} >= {"items"}


def test_a_whole_number_id_is_taken_as_its_text_as_the_files_take_it(client):
    """A warehouse's numeric keys: the JSON Lines files and Parquet columns accept them, so
    the endpoint does too (as text); other kinds of id are refused by name."""
    items = [{"id": 42, "profile": {"age": 40}}, {"id": "42b", "profile": {"age": 40}},
             {"id": True, "profile": {"age": 40}}, {"id": 4.5, "profile": {"age": 40}},
             {"id": 10**250, "profile": {"age": 40}}]
    results = client.post("/v1/recommendations/batch", json={"items": items}).get_json()["results"]
    assert [result["id"] for result in results] == ["42", "42b", None, None, None]
    assert [result["error"] is None for result in results] == [True, True, False, False, False]
    assert {error["field"] for result in results[2:] for error in result["error"]["errors"]} == {"id"}


def test_a_json_lines_file_with_numeric_ids_scores_them_as_the_endpoint_does(runner, tmp_path):
    import json

    from formwise.service.cli.main import main

    (tmp_path / "in.jsonl").write_text('{"id": 7, "profile": {"age": 40}}\n{"id": false, "profile": {"age": 40}}\n')
    result = runner.invoke(main, ["score", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")])
    assert "rows_in=2 rows_scored=1 rows_rejected=1" in result.output
    assert json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])["id"] == "7"
