"""POST /v1/feedback on the real database (SQLite and PostgreSQL): stored with ids and
ratings only, bad input a problem naming the field."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

URL = "/v1/feedback"
STORED_COLUMNS = {"id", "recommendation_id", "form", "tolerated", "helpful", "created_at", "shop_id"}


@pytest.fixture()
def db_client(db_app):
    return db_app.test_client()


def stored(db_app, recommendation_id: str) -> list[dict]:
    from service.storage import list_outcomes

    with db_app.app_context():
        return [item for item in list_outcomes() if item["recommendation_id"] == recommendation_id]


def test_feedback_on_a_real_answer_is_stored_without_profile_data(db_app, db_client):
    answer = db_client.post("/v1/recommendations", json={"profile": {"age": 54, "conditions": ["migraine"]}})
    recommendation_id = answer.get_json()["recommendation_id"]
    form = answer.get_json()["recommendations"][0]["form"]
    response = db_client.post(URL, json={"recommendation_id": recommendation_id, "form": form, "tolerated": True,
                                         "helpful": 4})
    assert response.status_code == 201
    assert response.get_json() == {"recommendation_id": recommendation_id, "form": form, "tolerated": True,
                                   "helpful": 4}
    (record,) = stored(db_app, recommendation_id)
    assert set(record) == STORED_COLUMNS
    assert (record["form"], record["tolerated"], record["helpful"], record["shop_id"]) == (form, True, 4, None)
    from service.db import engine_of

    columns = {column["name"] for column in sa.inspect(engine_of(db_app)).get_columns("outcomes")}
    assert columns == STORED_COLUMNS  # nothing in the table could hold a profile


@pytest.mark.parametrize(("body", "tolerated", "helpful"), [
    ({"tolerated": False}, False, None),
    ({"helpful": 1}, None, 1),
    ({"tolerated": None, "helpful": 5}, None, 5),
])
def test_one_rating_is_enough(db_app, db_client, body, tolerated, helpful):
    recommendation_id = str(uuid.uuid4())
    response = db_client.post(URL, json={"recommendation_id": recommendation_id, "form": "citrate"} | body)
    assert response.status_code == 201
    (record,) = stored(db_app, recommendation_id)
    assert (record["tolerated"], record["helpful"]) == (tolerated, helpful)


GOOD = {"recommendation_id": "8d3e2b9c-3f4c-4a57-9a55-0f7e8a2b1c10", "form": "glycinate", "tolerated": True,
        "helpful": 3}


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"recommendation_id": "not-a-uuid"}, "recommendation_id", "Not a valid UUID."),
    ({"recommendation_id": None}, "recommendation_id", "Field may not be null."),
    ({"form": "unobtainium"}, "form", "Must be one of: citrate, glycinate"),
    ({"tolerated": "yes"}, "tolerated", "Must be true or false."),
    ({"helpful": 6}, "helpful", "Must be a whole number from 1 (not at all) to 5 (very), or null."),
    ({"helpful": 0}, "helpful", "Must be a whole number from 1"),
    ({"helpful": 2.5}, "helpful", "Must be a whole number."),
    ({"helpful": True}, "helpful", "Must be a whole number."),
    ({"age": 54}, "age", "Unknown field. Allowed fields: recommendation_id, form, tolerated, helpful."),
    ({"conditions": ["migraine"]}, "conditions", "Unknown field."),
    ({"tolerated": None, "helpful": None}, "tolerated", "Give tolerated (true or false), helpful (1 to 5), or both."),
])
def test_bad_feedback_is_a_problem_naming_the_field(db_app, db_client, changes, field, message):
    response = db_client.post(URL, json=GOOD | changes)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    errors = response.get_json()["errors"]
    assert any(error["field"] == field and message in error["message"] for error in errors), errors
    assert stored(db_app, GOOD["recommendation_id"]) == []


@pytest.mark.parametrize("missing", ["recommendation_id", "form"])
def test_required_fields_are_named(db_client, missing):
    response = db_client.post(URL, json={key: value for key, value in GOOD.items() if key != missing})
    assert response.status_code == 422
    assert {"field": missing, "message": "Missing data for required field."} in response.get_json()["errors"]


def test_feedback_is_documented_in_openapi(client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/v1/feedback"]["post"]
    assert "201" in operation["responses"] and "422" in operation["responses"]
