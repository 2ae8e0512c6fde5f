"""options.explain: scores broken into contributions that add up, graded and cited reasons,
and the dose in tablets or capsules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings

from formwise.models.engine.answers import SCORE_BASELINE, apportion, load_source_grades
from formwise.models.knowledge.base import EVIDENCE_GRADES, FEATURE_NAMES, SCORED_ATTRIBUTES
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.recommender import Recommender
from tests.models.profiles import profiles

KB = default_knowledge_base()
RECOMMENDER = Recommender(KB)
FORMS = {form.id: form for form in KB.forms}


def explained(profile: dict, limit: int = 20) -> dict:
    return RECOMMENDER.recommend([profile], limit=limit, explain=True)[0]


def assert_adds_up(recommendation: dict) -> None:
    explanation = recommendation["explanation"]
    total = explanation["baseline"] + sum(item["score"] for item in explanation["contributions"])
    assert total == pytest.approx(recommendation["score"], abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(profile=profiles)
def test_contributions_add_up_to_every_score(profile):
    for recommendation in explained(profile)["recommendations"]:
        assert_adds_up(recommendation)
        for item in recommendation["explanation"]["contributions"]:
            if item["kind"] == "term" and abs(item["score"]) > 1e-5:
                # a term's share has the sign of its utility: it pulls the score its own way
                assert math.copysign(1, item["score"]) == math.copysign(1, item["utility"])


def test_a_term_is_its_weight_times_the_attribute_against_the_average():
    recommendations = explained({"age": 40, "goals": ["sleep"]})["recommendations"]
    (glycinate,) = [r for r in recommendations if r["form"] == "glycinate"]
    explanation = glycinate["explanation"]
    assert explanation["baseline"] == SCORE_BASELINE
    assert explanation["score_before_safety_rules"] == pytest.approx(1 / (1 + math.exp(-explanation["utility"])),
                                                                     abs=1e-6)
    sleep = next(item for item in explanation["contributions"] if item["factor"] == "sleep")
    engine = RECOMMENDER.engine
    row, column = FEATURE_NAMES.index("goal:sleep"), engine.attribute_names.index("evidence_sleep")
    assert sleep["attribute"] == "evidence_sleep" and sleep["weight"] == engine.weights[row, column]
    assert sleep["source"] == engine.weight_rows[(row, column)].source == "mah2021"
    assert sleep["utility"] == pytest.approx(sleep["weight"] * sleep["attribute_vs_average"], abs=1e-3)
    assert sum(item["utility"] for item in explanation["contributions"]) == pytest.approx(explanation["utility"],
                                                                                         abs=1e-5)


def test_a_safety_rule_that_moves_a_score_is_its_own_contribution():
    answer = explained({"age": 40, "egfr": 90, "conditions": ["sensitive_stomach", "constipation"],
                        "goals": ["constipation_relief"]})
    laxatives = [r for r in answer["recommendations"] if FORMS[r["form"]].laxative]
    assert laxatives and answer["recommendations"][0]["form"] not in {r["form"] for r in laxatives}
    demoted = [r for r in laxatives if any(item["kind"] == "safety_rule" for item in r["explanation"]["contributions"])]
    assert demoted
    for recommendation in demoted:
        rule = next(item for item in recommendation["explanation"]["contributions"] if item["kind"] == "safety_rule")
        assert rule["score"] < 0 and rule["factor"] == "rank_laxatives_below_others"
        assert_adds_up(recommendation)


def test_each_reason_carries_a_graded_citation_from_the_data():
    answer = explained({"age": 70, "goals": ["sleep"], "conditions": ["constipation"]})
    for recommendation in answer["recommendations"]:
        for reason in recommendation["reasons"]:
            evidence = reason["evidence"]
            assert evidence["grade"] in EVIDENCE_GRADES
            citation = KB.citations[evidence["source"]]
            assert (evidence["title"], evidence["year"], evidence["url"]) == (citation.title, citation.year,
                                                                               citation.url)
    glycinate = next(r for r in answer["recommendations"] if r["form"] == "glycinate")
    sleep_reason = next(reason for reason in glycinate["reasons"] if reason["factor"] == "sleep")
    row = FORMS["glycinate"].evidence["sleep"]  # the form's own evidence row grades a goal reason
    assert (sleep_reason["evidence"]["grade"], sleep_reason["evidence"]["source"]) == (row.grade, row.source)


def test_every_source_a_reason_can_cite_has_a_grade():
    grades = load_source_grades()
    cited = {weight.source for weight in KB.weights}
    for form in KB.forms:
        cited |= {form.attributes[name].source for name in SCORED_ATTRIBUTES}
        cited |= {evidence.source for evidence in form.evidence.values()}
    assert cited - set(grades) == set()
    assert set(grades) <= set(KB.citations)


@pytest.mark.parametrize("profile", [{"age": 40}, {"age": 6}, {"age": 2}, {"age": 30, "preferences":
                                                                           {"max_units_per_day": 2}}])
def test_units_per_day_stay_within_the_dose(profile):
    for recommendation in explained(profile)["recommendations"]:
        dose = recommendation["dose"]
        (units,) = dose["units_per_day"]
        form = FORMS[recommendation["form"]]
        assert units["unit_elemental_mg"] == form.attributes["unit_elemental_mg"].value
        assert units["max"] * units["unit_elemental_mg"] <= dose["elemental_mg_per_day"]["max"] + 1e-9
        assert units["fits_dose"] == (units["max"] >= 1)
        if units["fits_dose"]:
            assert units["min"] <= units["max"]
            assert (units["min"] * units["unit_elemental_mg"] >= dose["elemental_mg_per_day"]["min"] - 1e-9
                    or units["min"] == units["max"])


def test_a_unit_larger_than_a_childs_dose_says_so():
    oxide = next(r for r in explained({"age": 2, "egfr": 100})["recommendations"] if r["form"] == "oxide")
    (units,) = oxide["dose"]["units_per_day"]
    assert oxide["dose"]["elemental_mg_per_day"]["max"] == 65 and units["unit_elemental_mg"] > 65
    assert units["fits_dose"] is False and units["max"] == 0


def test_without_explain_the_answer_stays_lean():
    answer = RECOMMENDER.recommend([{"age": 40, "goals": ["sleep"]}])[0]
    for recommendation in answer["recommendations"]:
        assert "explanation" not in recommendation and "units_per_day" not in recommendation["dose"]
        assert all(set(reason) == {"factor", "effect", "text"} for reason in recommendation["reasons"])


def test_explain_changes_no_ranking_score_or_caveat():
    profile = {"age": 55, "egfr": 50, "conditions": ["migraine"], "medications": ["doxycycline"]}
    plain, rich = RECOMMENDER.recommend([profile])[0], explained(profile, limit=3)
    assert [(r["form"], r["score"], r["caveats"]) for r in plain["recommendations"]] == [
        (r["form"], r["score"], r["caveats"]) for r in rich["recommendations"]]
    assert plain["caveats"] == rich["caveats"] and plain["excluded"] == rich["excluded"]


def test_apportion_rounds_to_an_exact_total():
    values = [0.1234567, -0.0333333, 0.0000004]
    rounded = apportion(values, 0.0901)
    assert sum(rounded) == pytest.approx(0.0901, abs=1e-12)
    assert all(abs(a - b) <= 1e-4 for a, b in zip(rounded, values, strict=True))
    assert apportion([], 0.0) == []
