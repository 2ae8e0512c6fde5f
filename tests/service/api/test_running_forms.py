"""Form ids are checked against the knowledge base the app runs on: a folder set by
FORMWISE_KNOWLEDGE_BASE_DIR may lack a packaged form or hold one the package does not."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from formwise.data import DATA_DIR
from formwise.service.app import create_app

DROPPED, ADDED, TEMPLATE = "orotate", "bisglycinate_chelate", "glycinate"
FORM_FILES = {"forms.csv": "id", "form_attributes.csv": "form", "evidence.csv": "form"}


def rewrite_forms(path: Path, column: str) -> None:
    """Drop DROPPED's rows; add ADDED as a copy of TEMPLATE's rows."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        names, rows = reader.fieldnames, list(reader)
    kept = [row for row in rows if row[column] != DROPPED]
    kept += [{**row, column: ADDED} for row in rows if row[column] == TEMPLATE]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, names)
        writer.writeheader()
        writer.writerows(kept)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    target = tmp_path_factory.mktemp("kb") / "data"
    shutil.copytree(DATA_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    folder = target / "supplements" / "magnesium"
    for name, column in FORM_FILES.items():
        rewrite_forms(folder / name, column)
    return create_app({"TESTING": True, "FORMWISE_KNOWLEDGE_BASE_DIR": folder}).test_client()


def avoiding(client, forms):
    return client.post("/v1/recommendations", json={"profile": {"age": 40, "preferences": {"avoid_forms": forms}}})


def test_a_packaged_form_the_knowledge_base_lacks_is_refused_not_a_500(client):
    response = avoiding(client, [DROPPED])
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    (error,) = response.get_json()["errors"]
    assert error["field"] == "profile.preferences.avoid_forms.0"
    assert ADDED in error["message"] and DROPPED not in error["message"]


def test_a_form_only_the_knowledge_base_has_is_accepted_and_avoided(client):
    answer = avoiding(client, [ADDED]).get_json()
    (avoided,) = [item for item in answer["excluded"] if item["form"] == ADDED]
    assert [reason["code"] for reason in avoided["reasons"]] == ["avoided_by_user"]


def test_batches_and_feedback_follow_the_running_forms_too(client):
    batch = client.post("/v1/recommendations/batch", json={"items": [
        {"id": "a", "profile": {"age": 40, "preferences": {"avoid_forms": [DROPPED]}}},
        {"id": "b", "profile": {"age": 40, "preferences": {"avoid_forms": [ADDED]}}}]}).get_json()["results"]
    assert batch[0]["error"]["status"] == 422 and batch[1]["output"] is not None
    answer = client.post("/v1/recommendations", json={"profile": {"age": 40}, "options": {"limit": 20}}).get_json()
    assert ADDED in [item["form"] for item in answer["recommendations"]]
    feedback = {"recommendation_id": answer["recommendation_id"], "form": DROPPED, "tolerated": True}
    refused = client.post("/v1/feedback", json=feedback)
    assert refused.status_code == 422 and [e["field"] for e in refused.get_json()["errors"]] == ["form"]
    assert client.post("/v1/feedback", json={**feedback, "form": ADDED}).status_code == 201


def test_the_openapi_document_lists_the_served_forms(client):
    preferences = client.get("/openapi.json").get_json()["components"]["schemas"]["Preferences"]
    forms = preferences["properties"]["avoid_forms"]["items"]["enum"]
    assert ADDED in forms and DROPPED not in forms
