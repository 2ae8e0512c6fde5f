"""The formwise command: recommend (table and JSON), forms, and argument errors."""

from __future__ import annotations

import json

from formwise.service.cli.main import main


def test_recommend_prints_a_table_with_caveats_first(runner):
    result = runner.invoke(main, ["recommend", "--age", "54", "--sex", "female", "--egfr", "58", "--condition",
                                  "constipation", "--goal", "sleep", "--medication", "doxycycline"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("[WARNING]")
    assert any(line.startswith("1    citrate") for line in lines)
    assert ("Excluded: oxide (kidney_impairment_moderate), hydroxide (kidney_impairment_moderate), "
            "sulfate (kidney_impairment_moderate, not_for_daily_use)") in result.output
    assert "Interaction: doxycycline (tetracycline, separate): " in result.output


def test_recommend_json_is_the_api_answer_shape(runner, client):
    result = runner.invoke(main, ["recommend", "--age", "40", "--goal", "sleep", "--egfr", "95", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    api = client.post("/v1/recommendations", json={"profile": {"age": 40, "goals": ["sleep"], "egfr": 95}}).get_json()
    api.pop("recommendation_id")
    assert answer == api


def test_recommend_severe_kidney_says_no_form(runner):
    result = runner.invoke(main, ["recommend", "--age", "70", "--egfr", "20"])
    assert result.exit_code == 0
    assert "[CRITICAL]" in result.output and "No form is recommended" in result.output


def test_recommend_rejects_bad_values_naming_the_field(runner):
    result = runner.invoke(main, ["recommend", "--age", "130"])
    assert result.exit_code == 2
    assert "age" in result.output and "0 to 120" in result.output
    result = runner.invoke(main, ["recommend", "--age", "40", "--condition", "headache"])
    assert result.exit_code == 2 and "constipation" in result.output
    result = runner.invoke(main, ["recommend", "--age", "40", "--avoid", "unobtainium"])
    assert result.exit_code == 2 and "avoid_forms" in result.output


def test_forms_table_and_json(runner):
    result = runner.invoke(main, ["forms"])
    assert result.exit_code == 0 and "glycinate" in result.output and "60.3" in result.output
    result = runner.invoke(main, ["forms", "--json"])
    forms = json.loads(result.output)["forms"]
    assert {form["id"] for form in forms} >= {"citrate", "glycinate", "oxide"}
