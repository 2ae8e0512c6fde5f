"""The v1 API through the Flask test client, including every kind of bad input."""

from __future__ import annotations

import re
import uuid

import pytest

from formwise.models.knowledge.loading import default_knowledge_base

KB = default_knowledge_base()
URL = "/v1/recommendations"


def post(client, body, **kwargs):
    return client.post(URL, json=body, **kwargs)


def assert_problem(response, status, *fields):
    assert response.status_code == status, response.data
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["type"]
    named = {error["field"] for error in body.get("errors", [])}
    for field in fields:
        assert field in named, (field, body)
    return body


def test_answer_has_every_contract_field(client):
    response = post(client, {"profile": {"age": 40, "goals": ["sleep"]}})
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) >= {"recommendation_id", "knowledge_base_version", "model_version", "max_severity",
                         "recommendations", "excluded", "caveats", "interactions", "unrecognized_medications",
                         "disclaimer"}
    uuid.UUID(body["recommendation_id"])
    assert len(body["recommendations"]) == 3
    assert body["caveats"][0]["code"] == "consult_clinician" or any(
        c["code"] == "consult_clinician" for c in body["caveats"])
    assert response.headers["Content-Language"] == "en"


def test_each_answer_gets_a_fresh_id_but_the_same_content(client):
    first = post(client, {"profile": {"age": 40}}).get_json()
    second = post(client, {"profile": {"age": 40}}).get_json()
    assert first.pop("recommendation_id") != second.pop("recommendation_id")
    assert first == second


def test_limit_and_unknown_locale_fall_back_to_english(client):
    response = post(client, {"profile": {"age": 40}, "options": {"limit": 20, "locale": "xx-YY"}})
    assert response.status_code == 200
    daily = [form for form in KB.forms if form.use == "daily"]  # rule 8: Epsom salt is no daily supplement
    assert len(response.get_json()["recommendations"]) == len(daily)
    assert response.headers["Content-Language"] == "en"


@pytest.mark.parametrize(
    ("body", "field", "allowed_hint"),
    [
        ({"profile": {}}, "profile.age", "required"),
        ({}, "profile", "required"),
        ({"profile": {"age": "40"}}, "profile.age", "whole number"),
        ({"profile": {"age": True}}, "profile.age", "whole number"),
        ({"profile": {"age": 40.5}}, "profile.age", "whole number"),
        ({"profile": {"age": -1}}, "profile.age", "0 to 120"),
        ({"profile": {"age": 121}}, "profile.age", "0 to 120"),
        ({"profile": {"age": 40, "sex": "f"}}, "profile.sex", "female, male"),
        ({"profile": {"age": 40, "pregnant": "yes"}}, "profile.pregnant", "true or false"),
        ({"profile": {"age": 40, "egfr": -3}}, "profile.egfr", "0 to 250"),
        ({"profile": {"age": 40, "egfr": 251}}, "profile.egfr", "0 to 250"),
        ({"profile": {"age": 40, "egfr": "58"}}, "profile.egfr", "number"),
        ({"profile": {"age": 40, "dialysis": 1}}, "profile.dialysis", "true or false"),
        ({"profile": {"age": 40, "conditions": ["headache"]}}, "profile.conditions.0", "constipation"),
        ({"profile": {"age": 40, "conditions": "insomnia"}}, "profile.conditions", "list"),
        ({"profile": {"age": 40, "goals": ["sleep", "weight_loss"]}}, "profile.goals.1", "migraine_prevention"),
        ({"profile": {"age": 40, "medications": [42]}}, "profile.medications.0", "string"),
        ({"profile": {"age": 40, "medications": [""]}}, "profile.medications.0", "1 to 200"),
        ({"profile": {"age": 40, "preferences": {"avoid_forms": ["unobtainium"]}}},
         "profile.preferences.avoid_forms.0", "glycinate"),
        ({"profile": {"age": 40, "preferences": {"max_units_per_day": 13}}},
         "profile.preferences.max_units_per_day", "1 to 12"),
        ({"profile": {"age": 40, "weight": 70}}, "profile.weight", "Allowed fields: age"),
        ({"profile": {"age": 40}, "options": {"limit": 0}}, "options.limit", "1 to 20"),
        ({"profile": {"age": 40}, "options": {"limit": 21}}, "options.limit", "1 to 20"),
        ({"profile": {"age": 40}, "options": {"explain": "no"}}, "options.explain", "true or false"),
        ({"profile": {"age": 40}, "extra": 1}, "extra", "Allowed fields: profile, options"),
        ({"profile": [1, 2]}, "profile", "Must be an object"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_and_what_is_allowed(client, body, field, allowed_hint):
    problem = assert_problem(post(client, body), 422, field)
    message = next(e["message"] for e in problem["errors"] if e["field"] == field)
    assert allowed_hint.lower() in message.lower()
    assert field in problem["detail"]


def test_a_json_array_body_is_a_422(client):
    assert_problem(client.post(URL, json=[1, 2]), 422)


@pytest.mark.parametrize("data", ["{bad json", "", "NaN", '{"profile": {"age": NaN}}', "[" * 5000 + "]" * 5000])
def test_malformed_json_is_a_400_or_422_problem(client, data):
    response = client.post(URL, data=data, content_type="application/json")
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"


def test_wrong_content_type_is_a_415_problem(client):
    body = assert_problem(client.post(URL, data="age=40", content_type="application/x-www-form-urlencoded"), 415)
    assert "application/json" in body["detail"]
    assert_problem(client.post(URL, data='{"profile": {"age": 40}}'), 415)


def test_a_body_over_one_mib_is_a_413_problem(client):
    padding = "x" * (1024 * 1024)
    response = client.post(URL, data=f'{{"profile": {{"age": 40}}, "pad": "{padding}"}}',
                           content_type="application/json")
    body = assert_problem(response, 413)
    assert body["detail"] == "The request body is too large: at most 1 MiB, or 8 MiB for /v1/recommendations/batch."


def test_the_413_problem_names_the_caps_the_app_is_configured_with():
    from formwise.service.app import create_app

    client = create_app({"TESTING": True, "SINGLE_MAX_CONTENT_LENGTH": 512 * 1024,
                         "MAX_CONTENT_LENGTH": 2 * 1024 * 1024}).test_client()
    response = client.post(URL, data='{"pad": "' + "x" * (512 * 1024) + '"}', content_type="application/json")
    body = assert_problem(response, 413)
    assert body["detail"] == "The request body is too large: at most 0.5 MiB, or 2 MiB for /v1/recommendations/batch."


def test_the_batch_endpoint_takes_more_than_one_mib(client):
    items = [{"id": str(i), "profile": {"age": 40, "medications": ["m" * 150] * 5}} for i in range(1000)]
    response = client.post(URL + "/batch", json={"items": items})
    assert response.status_code == 200
    assert len(response.get_json()["results"]) == 1000


def test_unknown_path_and_method_are_problems(client):
    assert_problem(client.get("/v1/unknown"), 404)
    response = client.delete(URL)
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]
    assert_problem(client.get(URL), 405)


def test_forms_list_and_one_form(client):
    body = client.get("/v1/forms").get_json()
    assert body["knowledge_base_version"] == KB.version
    assert [form["id"] for form in body["forms"]] == list(KB.form_ids)
    oxide = client.get("/v1/forms/oxide").get_json()
    assert oxide["attributes"]["elemental_fraction"] == {"value": 0.603, "source": "molecules2021-table1",
                                                         "note": "Table 1 row 'Magnesium Oxide': MW 40.30, 60.3%"}
    assert oxide["laxative"] is True
    for source in {a["source"] for a in oxide["attributes"].values()}:
        assert oxide["citations"][source]["url"]


def test_unknown_form_is_a_404_problem_listing_the_known_ones(client):
    body = assert_problem(client.get("/v1/forms/unobtainium"), 404)
    assert "glycinate" in body["detail"]


def test_health(client):
    assert client.get("/health/live").get_json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.get_json()["checks"]["engine"] == "ok"


def test_readiness_is_503_when_the_engine_cannot_answer():
    from formwise.service.app import create_app

    class Broken:
        version = "x"
        model_version = "x"
        knowledge_base = default_knowledge_base()  # the forms its answer ids would name

        def recommend(self, *args, **kwargs):
            raise RuntimeError("down")

    client = create_app({"TESTING": True, "RECOMMENDER": Broken()}).test_client()
    response = client.get("/health/ready")
    assert response.status_code == 503 and response.get_json()["status"] == "unavailable"


def test_an_unexpected_error_is_a_500_problem_without_health_data_in_the_log(caplog):
    from formwise.service.app import create_app

    class Exploding:
        version = "x"
        model_version = "x"
        knowledge_base = default_knowledge_base()  # the forms its answer ids would name

        def recommend(self, profiles, **kwargs):
            raise KeyError(profiles[0]["conditions"][0])

    client = create_app({"TESTING": False, "RECOMMENDER": Exploding()}).test_client()
    response = client.post(URL, json={"profile": {"age": 40, "conditions": ["fibromyalgia"]}})
    assert_problem(response, 500)
    assert "fibromyalgia" not in caplog.text
    assert "KeyError" in caplog.text


def test_docs_page_is_swagger_ui_from_this_server(client):
    """The page loads Swagger UI's files and its start script from this server, never a CDN
    (tests/e2e/test_docs_page.py renders it in Chromium)."""
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert sources and all(source.startswith("/") for source in sources), sources
    assert {"/docs/swagger-ui/swagger-ui-bundle.js", "/docs/swagger-ui/swagger-ui.css", "/docs/start.js",
            "/openapi.json"} <= set(sources) | set(re.findall(r'data-spec-url="([^"]+)"', text))
    for source in sources:
        assert client.get(source).status_code == 200, source
    assert client.get("/docs/swagger-ui/swagger-ui-bundle.js.map").status_code == 404  # only the files it uses
