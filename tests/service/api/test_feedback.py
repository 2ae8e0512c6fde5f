"""POST /v1/feedback on the real database (SQLite and PostgreSQL): stored with ids and
ratings only, bad input a problem naming the field."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

URL = "/v1/feedback"
KNOWLEDGE_BASE_ORDER = ("citrate", "glycinate", "oxide", "malate", "chloride", "lactate", "taurate", "l_threonate",
                        "carbonate", "hydroxide", "sulfate", "aspartate", "orotate")  # forms.csv's rows
STORED_COLUMNS = {"id", "recommendation_id", "form", "tolerated", "helpful", "created_at", "shop_id"}


@pytest.fixture()
def db_client(db_app):
    return db_app.test_client()


def stored(db_app, recommendation_id: str) -> list[dict]:
    from formwise.service.store.queries import list_outcomes

    with db_app.app_context():
        return [item for item in list_outcomes() if item["recommendation_id"] == recommendation_id]


def real_answer(client, profile=None, limit=3) -> tuple[str, str]:
    """A fresh answer's id and its first recommended form."""
    answer = client.post("/v1/recommendations", json={"profile": profile or {"age": 40},
                                                      "options": {"limit": limit}}).get_json()
    return answer["recommendation_id"], answer["recommendations"][0]["form"]


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
    from formwise.service.store.database import engine_of

    columns = {column["name"] for column in sa.inspect(engine_of(db_app)).get_columns("outcomes")}
    assert columns == STORED_COLUMNS  # nothing in the table could hold a profile


@pytest.mark.parametrize(("body", "tolerated", "helpful"), [
    ({"tolerated": False}, False, None),
    ({"helpful": 1}, None, 1),
    ({"tolerated": None, "helpful": 5}, None, 5),
])
def test_one_rating_is_enough(db_app, db_client, body, tolerated, helpful):
    recommendation_id, form = real_answer(db_client)
    response = db_client.post(URL, json={"recommendation_id": recommendation_id, "form": form} | body)
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


# ---- only answers this service issued, on their own forms, once (issue 19) -----------------


def test_an_id_this_service_did_not_issue_is_refused(db_app, db_client):
    made_elsewhere = str(uuid.uuid4())  # a well-formed uuid4, as a forger would send
    response = db_client.post(URL, json={"recommendation_id": made_elsewhere, "form": "citrate", "helpful": 5})
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    (error,) = response.get_json()["errors"]
    assert error["field"] == "recommendation_id" and "Not an answer this service issued" in error["message"]
    assert stored(db_app, made_elsewhere) == []


def test_an_issued_id_with_one_bit_changed_is_refused(db_app, db_client):
    recommendation_id, form = real_answer(db_client)
    number = uuid.UUID(recommendation_id).int
    for bit in (0, 20, 40, 70, 100, 127):  # tag, random part, form bits, day, and a version bit
        tampered = str(uuid.UUID(int=number ^ (1 << bit)))
        response = db_client.post(URL, json={"recommendation_id": tampered, "form": form, "helpful": 5})
        assert response.status_code == 422, bit
        assert response.get_json()["errors"][0]["field"] == "recommendation_id"


def test_only_the_forms_the_answer_recommended_take_feedback(db_app, db_client):
    answer = db_client.post("/v1/recommendations", json={"profile": {"age": 40}, "options": {"limit": 2}}).get_json()
    recommended = [item["form"] for item in answer["recommendations"]]
    other = next(form for form in ("citrate", "glycinate", "oxide", "malate") if form not in recommended)
    response = db_client.post(URL, json={"recommendation_id": answer["recommendation_id"], "form": other,
                                         "tolerated": True})
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["field"] == "form"
    assert error["message"] == ("Not one of this answer's recommended forms (allowed: "
                                f"{', '.join(sorted(recommended, key=KNOWLEDGE_BASE_ORDER.index))}).")
    for form in recommended:
        response = db_client.post(URL, json={"recommendation_id": answer["recommendation_id"], "form": form,
                                             "tolerated": True})
        assert response.status_code == 201


def test_each_form_of_an_answer_takes_one_report(db_app, db_client):
    recommendation_id, form = real_answer(db_client)
    first = db_client.post(URL, json={"recommendation_id": recommendation_id, "form": form, "helpful": 5})
    again = db_client.post(URL, json={"recommendation_id": recommendation_id, "form": form, "helpful": 1})
    assert first.status_code == 201
    assert again.status_code == 409 and again.mimetype == "application/problem+json"
    assert "already recorded" in again.get_json()["detail"]
    assert [record["helpful"] for record in stored(db_app, recommendation_id)] == [5]


def test_feedback_on_an_answer_older_than_the_retention_period_is_refused(database_url):
    import time

    from formwise.service.app import create_app
    from formwise.service.store.database import engine_of

    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "FORMWISE_RETENTION_DAYS": 30})
    client = app.test_client()
    today = int(time.time() // 86400)
    signer = app.extensions["formwise_answer_ids"]
    old, recent = signer.mint(["citrate"], day=today - 31), signer.mint(["citrate"], day=today - 30)
    response = client.post(URL, json={"recommendation_id": old, "form": "citrate", "helpful": 4})
    assert response.status_code == 422
    assert "more than 30 days old" in response.get_json()["errors"][0]["message"]
    assert client.post(URL, json={"recommendation_id": recent, "form": "citrate", "helpful": 4}).status_code == 201
    engine_of(app).dispose()


def test_two_thousand_forged_posts_store_nothing(db_app, db_client):
    """The attack of issue 19: anonymous posts with made-up ids, forms an answer did not
    recommend, and one real report repeated."""
    from formwise.service.store.queries import list_outcomes

    recommendation_id, form = real_answer(db_client, limit=1)
    assert db_client.post(URL, json={"recommendation_id": recommendation_id, "form": form,
                                     "helpful": 3}).status_code == 201
    with db_app.app_context():
        before = len(list_outcomes())
    statuses = {}
    forms = list(KNOWLEDGE_BASE_ORDER)
    for i in range(2000):
        if i % 4 == 0:  # the real answer again, on its own form or another
            body = {"recommendation_id": recommendation_id, "form": forms[i % len(forms)], "helpful": 1}
        else:
            body = {"recommendation_id": str(uuid.uuid4()), "form": forms[i % len(forms)], "helpful": 1}
        status = db_client.post(URL, json=body).status_code
        statuses[status] = statuses.get(status, 0) + 1
    assert set(statuses) <= {409, 422} and sum(statuses.values()) == 2000
    with db_app.app_context():
        assert len(list_outcomes()) == before
