"""A pharmacist's regression set (tests/cases/pharmacist.jsonl): profiles with the properties
their answers must have, each written from the source it names (a label, an SmPC, a trial,
the contract), not from what the service answered. Run through the API; every answer also
meets the contract's hard rules."""

from __future__ import annotations

import json

import pytest

from formwise.models.engine.timing import parse_clock
from tests.conftest import PROJECT_ROOT
from tests.contract_rules import check_contract

CASES_PATH = PROJECT_ROOT / "tests" / "cases" / "pharmacist.jsonl"
CASES = [json.loads(line) for line in CASES_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
PROFILE_DEFAULTS = {"sex": "unspecified", "pregnant": False, "breastfeeding": False, "egfr": None, "dialysis": False,
                    "serum_magnesium": None, "conditions": [], "goals": [], "medications": [],
                    "preferences": {"avoid_forms": [], "max_units_per_day": None}}


def check_case(case: dict, answer: dict) -> None:
    expect = case["expect"]
    ranked = [r["form"] for r in answer["recommendations"]]
    by_form = {r["form"]: r for r in answer["recommendations"]}
    caveats = {c["code"]: c for c in answer["caveats"]}
    excluded = {e["form"]: [r["code"] for r in e["reasons"]] for e in answer["excluded"]}
    label = f"{case['id']} ({case['note']})"
    for key, value in expect.items():
        if key == "excluded_all":
            assert ranked == [] and len(excluded) >= 10, label
        elif key == "excluded_with":
            for form, code in value.items():
                assert code in excluded.get(form, []), (label, form, excluded.get(form))
        elif key == "status_all":
            assert ranked and {r["status"] for r in answer["recommendations"]} == {value}, label
        elif key == "max_severity":
            assert answer["max_severity"] == value, (label, answer["max_severity"])
        elif key == "caveats_include":
            assert set(value) <= set(caveats), (label, set(caveats))
        elif key == "caveats_exclude":
            assert not set(value) & set(caveats), (label, set(caveats))
        elif key == "caveat_severity":
            for code, severity in value.items():
                assert caveats[code]["severity"] == severity, (label, code, caveats.get(code))
        elif key == "caveat_text_includes":
            for code, fragments in value.items():
                for fragment in fragments:
                    assert fragment in caveats[code]["text"], (label, code, caveats[code]["text"])
        elif key == "recommended_includes":
            assert set(value) <= set(ranked), (label, ranked)
        elif key == "recommended_excludes":
            assert not set(value) & set(ranked), (label, ranked)
        elif key == "recommendations_nonempty":
            assert ranked, label
        elif key == "top1_not_in":
            assert ranked and ranked[0] not in value, (label, ranked)
        elif key == "ranked_below":
            for form, above in value.items():
                for other in above:
                    if other in ranked:
                        assert ranked.index(other) < ranked.index(form), (label, ranked)
        elif key == "form_caveats_include":
            for form, codes in value.items():
                assert set(codes) <= {c["code"] for c in by_form[form]["caveats"]}, (label, form)
        elif key == "form_status":
            for form, status in value.items():
                assert by_form[form]["status"] == status, (label, form)
        elif key == "interaction":
            for wanted in value:
                matches = [i for i in answer["interactions"] if all(
                    (wanted_value in i["text"]) if field == "text_includes" else i.get(field) == wanted_value
                    for field, wanted_value in wanted.items())]
                assert matches, (label, wanted, answer["interactions"])
        elif key == "interactions_empty":
            assert answer["interactions"] == [], label
        elif key == "unrecognized_include":
            assert set(value) <= set(answer["unrecognized_medications"]), label
        elif key == "unrecognized_exclude":
            assert not set(value) & set(answer["unrecognized_medications"]), (label, answer["unrecognized_medications"])
        elif key == "unrecognized_empty":
            assert answer["unrecognized_medications"] == [], (label, answer["unrecognized_medications"])
        elif key == "suggestions":
            offered = {s["sent"]: s["did_you_mean"] for s in answer["medication_suggestions"]}
            for sent, names in value.items():
                assert set(names) <= set(offered.get(sent, [])), (label, offered)
        elif key == "no_plus_reason_on":
            for recommendation in answer["recommendations"]:
                for reason in recommendation["reasons"]:
                    assert not (reason["effect"] == "+" and reason["attribute"] in value), (label, reason)
        elif key == "reason_evidence":
            for form, wanted in value.items():
                reasons = [r for r in by_form[form]["reasons"] if r["attribute"] == wanted["attribute"]]
                assert reasons, (label, form, by_form[form]["reasons"])
                evidence = reasons[0]["evidence"]
                assert evidence["grade"] == wanted["grade"], (label, evidence)
                assert evidence["source"] == wanted.get("source", evidence["source"]), (label, evidence)
        elif key == "timing":
            timing = answer["timing"]
            assert timing["possible"] is value["possible"], (label, timing)
            for fragment in value.get("text_includes", ()):
                assert fragment in timing["text"], (label, timing["text"])
            if "suggested_not_before" in value:
                assert parse_clock(timing["suggested_times"][0]) >= parse_clock(value["suggested_not_before"]), label
            if "suggested_not_after" in value:
                assert parse_clock(timing["suggested_times"][0]) <= parse_clock(value["suggested_not_after"]), label
        else:
            raise AssertionError(f"{label}: unknown expectation {key}")


def test_the_set_is_large_and_every_case_names_its_source():
    assert len(CASES) >= 40
    assert len({case["id"] for case in CASES}) == len(CASES)
    assert all(case["source"] and case["note"] and case["expect"] for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_pharmacist_case_through_the_api(client, case):
    options = {"limit": 5, **case.get("options", {})}
    response = client.post("/v1/recommendations", json={"profile": case["profile"], "options": options})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    check_case(case, answer)
    profile = {**PROFILE_DEFAULTS, **case["profile"]}
    check_contract(profile, answer, client.application.extensions["formwise"].engine.form_ids)
