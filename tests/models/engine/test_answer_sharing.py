"""Answers share the parts that recur (caveats, exclusions, reasons, interactions; see
formwise.models.engine.answers.AnswerBuilder): no path may change a shared part, and the lists an answer
holds must be its own."""

from __future__ import annotations

import copy

import pytest

from formwise.models.engine.answers import AnswerBuilder
from formwise.models.recommender import Recommender
from formwise.service.app import create_app

PROFILES = [
    {"age": 54, "sex": "female", "egfr": 58, "conditions": ["leg_cramps", "constipation"], "goals": ["sleep"],
     "medications": ["doxycycline", "omeprazole", "no-such-medicine"]},
    {"age": 70, "egfr": 25, "conditions": ["diarrhea"], "medications": ["levothyroxine"]},
    {"age": 30, "pregnant": True, "goals": ["migraine_prevention"], "conditions": ["migraine"],
     "preferences": {"avoid_forms": ["citrate"]}},
    {"age": 8, "conditions": ["constipation"], "goals": ["sleep"]},
]
SCHEDULE = {"doxycycline": "08:00", "omeprazole": ["07:00", "19:00"], "levothyroxine": "06:30"}


def answers_of(builder: AnswerBuilder, recommender: Recommender, **options) -> list[dict]:
    batch = recommender.batch(PROFILES)
    return builder.answers(batch, recommender.score(batch), **options)


@pytest.fixture()
def recommender():
    return Recommender(artifact=None)


def test_explaining_changes_only_the_explained_answers_reasons(recommender):
    plain_before = copy.deepcopy(answers_of(recommender.answers, recommender))
    explained = answers_of(recommender.answers, recommender, explain=True, schedule=SCHEDULE)
    assert all("evidence" in reason for answer in explained for item in answer["recommendations"]
               for reason in item["reasons"])
    assert answers_of(recommender.answers, recommender) == plain_before


def test_an_answers_lists_are_its_own(recommender):
    first, second = answers_of(recommender.answers, recommender)[:2], answers_of(recommender.answers, recommender)[:2]
    expected = copy.deepcopy(second)
    for answer in first:
        for item in answer["recommendations"]:
            item["reasons"].append("added by a hook")
            item["caveats"].append("added by a hook")
            item["products"] = []
        for item in answer["interactions"]:
            item["medication"] = "renamed by a hook"
        for key in ("recommendations", "excluded", "caveats", "interactions", "unrecognized_medications"):
            answer[key].append("added by a hook")
    assert second == expected
    assert answers_of(recommender.answers, recommender)[:2] == expected


def test_every_http_path_leaves_the_shared_parts_as_built():
    """The answers of the app's builder after its answering paths ran (explain, timing, two
    languages, the batch endpoint, a CDS Hooks card, the printable handout) equal those of
    a builder that never answered anything."""
    app = create_app({"TESTING": True})
    client = app.test_client()
    profile = PROFILES[0]
    for options in ({}, {"explain": True, "locale": "de"}, {"explain": True, "schedule": SCHEDULE}):
        assert client.post("/v1/recommendations", json={"profile": profile, "options": options}).status_code == 200
    batch_items = [{"id": str(i), "profile": p} for i, p in enumerate(PROFILES)]
    response = client.post("/v1/recommendations/batch", json={"items": batch_items, "options": {"explain": True}})
    assert response.status_code == 200
    assert client.post("/v1/handout", json={"profile": profile, "options": {"explain": True}}).status_code == 200
    hook = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01",
                                     "gender": "female"},
                         **{name: {"resourceType": "Bundle", "type": "searchset", "entry": []}
                            for name in ("observations", "conditions", "medicationRequests")},
                         "medicationStatements": {"resourceType": "Bundle", "type": "searchset", "entry": [
                             {"resource": {"resourceType": "MedicationStatement", "status": "active",
                                           "medicationCodeableConcept": {"text": "doxycycline"}}}]}}}
    assert client.post("/cds-services/magnesium-form-advice", json=hook).status_code == 200

    served = app.extensions["formwise"]
    fresh = AnswerBuilder(served.engine)
    for options in ({}, {"explain": True, "locale": "de"}, {"explain": True, "schedule": SCHEDULE}):
        assert answers_of(served.answers, served, **options) == answers_of(fresh, served, **options)
