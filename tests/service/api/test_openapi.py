"""/openapi.json is a valid OpenAPI 3.1 document generated from the validating schemas,
and real answers conform to the response schemas it documents."""

from __future__ import annotations

import jsonschema
import pytest
from openapi_spec_validator import validate

from formwise.models.knowledge import vocabulary as vocab
from formwise.service.app import create_app


@pytest.fixture(scope="module")
def spec():
    """One document for the module: reading it changes nothing, and each test only reads it."""
    return create_app({"TESTING": True}).test_client().get("/openapi.json").get_json()


def test_the_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_operation_is_documented(spec):
    paths = spec["paths"]
    assert "post" in paths["/v1/recommendations"]
    assert "post" in paths["/v1/recommendations/batch"]
    assert "get" in paths["/v1/forms"] and "get" in paths["/v1/forms/{form_id}"]
    assert "get" in paths["/health/live"] and "get" in paths["/health/ready"]


def test_request_vocabularies_come_from_the_validating_schema(spec):
    profile = spec["components"]["schemas"]["Profile"]["properties"]
    assert profile["conditions"]["items"]["enum"] == list(vocab.CONDITIONS)
    assert profile["goals"]["items"]["enum"] == list(vocab.GOALS)
    assert profile["sex"]["enum"] == list(vocab.SEXES)
    assert profile["age"]["minimum"] == 0 and profile["age"]["maximum"] == 120
    assert "age" in spec["components"]["schemas"]["Profile"]["required"]


def test_errors_are_documented_as_problems(spec):
    responses = spec["paths"]["/v1/recommendations"]["post"]["responses"]
    assert "422" in responses
    assert responses["422"] == {"$ref": "#/components/responses/UNPROCESSABLE_ENTITY"}
    documented = spec["components"]["responses"]["UNPROCESSABLE_ENTITY"]["content"]
    assert documented == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def validator(spec, name):
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]})


@pytest.mark.parametrize("profile", [
    {"age": 40, "goals": ["sleep"]},
    {"age": 70, "egfr": 20},
    {"age": 50, "egfr": 45, "medications": ["doxycycline", "unknownium"], "conditions": ["sensitive_stomach"]},
])
def test_answers_conform_to_the_documented_schema(client, spec, profile):
    answer = client.post("/v1/recommendations", json={"profile": profile, "options": {"limit": 20}}).get_json()
    validator(spec, "RecommendationResponse").validate(answer)


def test_batch_answers_and_problems_conform(client, spec):
    body = client.post("/v1/recommendations/batch",
                       json={"items": [{"id": "a", "profile": {"age": 40}}, {"id": "b", "profile": {"age": "x"}}]})
    validator(spec, "BatchResponse").validate(body.get_json())
    problem = client.post("/v1/recommendations", json={"profile": {"age": "x"}}).get_json()
    validator(spec, "Problem").validate(problem)


def test_forms_conform(client, spec):
    validator(spec, "FormList").validate(client.get("/v1/forms").get_json())
    validator(spec, "Form").validate(client.get("/v1/forms/citrate").get_json())
