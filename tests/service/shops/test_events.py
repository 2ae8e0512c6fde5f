"""Attribution: answer ids stored with shop, channel, time and the skus shown (never the
profile), and shop events, on SQLite and PostgreSQL. The figures made from them are tested
in test_reports.py."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from formwise.service.shops import keys as shops
from formwise.service.store import attribution
from formwise.service.store.database import engine_of

ORIGIN = "https://events.example"
# Words that would betray the profile if they reached the database.
PROFILE = {"age": 47, "sex": "female", "egfr": 54.5, "conditions": ["migraine", "insomnia"],
           "goals": ["sleep"], "medications": ["doxycycline", "zzq-private-medicine"]}
PROFILE_WORDS = ("migraine", "insomnia", "doxycycline", "zzq-private-medicine")


@pytest.fixture(scope="module")
def shop(db_app):
    with db_app.app_context():
        created = shops.create_shop(f"events-{uuid.uuid4().hex[:8]}", [ORIGIN])
    products = [{"sku": sku, "name": f"{form} capsules", "form": form, "elemental_mg_per_unit": 100,
                 "units_per_pack": 60, "price": 10, "currency": "EUR", "url": f"{ORIGIN}/{sku}"}
                for sku, form in (("GLY", "glycinate"), ("CIT", "citrate"), ("MAL", "malate"))]
    response = db_app.test_client().put("/v1/catalog", json={"products": products},
                                        headers={"X-API-Key": created["secret_key"]})
    assert response.status_code == 200
    return created


def browser(shop) -> dict:
    return {"X-API-Key": shop["publishable_key"], "Origin": ORIGIN}


def server(shop) -> dict:
    return {"X-API-Key": shop["secret_key"]}


def recommend(client, headers, profile=None) -> dict:
    response = client.post("/v1/recommendations", json={"profile": profile or PROFILE}, headers=headers)
    assert response.status_code == 200
    return response.get_json()


def dump_database(app) -> str:
    engine = engine_of(app)
    with engine.connect() as connection:
        tables = sa.inspect(engine).get_table_names()
        return json.dumps({table: [list(row) for row in connection.execute(sa.text(f"SELECT * FROM {table}"))]
                           for table in tables}, default=str)


def test_answer_ids_are_stored_with_shop_and_time_and_nothing_of_the_profile(db_app, shop):
    answer = recommend(db_app.test_client(), browser(shop))
    with engine_of(db_app).connect() as connection:
        row = connection.execute(sa.text("SELECT * FROM recommendations WHERE id = :id"),
                                 {"id": answer["recommendation_id"]}).mappings().one()
    assert set(row) == {"id", "shop_id", "created_at", "channel", "shown_skus", "experiment_id", "arm",
                        "safety_override"}
    assert (row["experiment_id"], row["arm"]) == (None, None)  # the shop runs no experiment
    assert row["shop_id"] == shop["shop_id"] and row["created_at"] is not None and row["channel"] == "widget"
    shown = {product["sku"] for item in answer["recommendations"] for product in item["products"]}
    assert shown and set(row["shown_skus"].split()) == shown
    everything = dump_database(db_app)
    assert answer["recommendation_id"] in everything
    for word in PROFILE_WORDS:
        assert word not in everything


def test_answers_without_a_key_are_not_stored(db_app, shop):
    answer = recommend(db_app.test_client(), {})
    with db_app.app_context():
        assert attribution.recommendation_shop(answer["recommendation_id"]) == (False, None)


def test_batch_answers_are_stored_too(db_app, shop):
    items = [{"id": str(n), "profile": {"age": 30 + n}} for n in range(5)]
    response = db_app.test_client().post("/v1/recommendations/batch", json={"items": items}, headers=browser(shop))
    with db_app.app_context():
        for result in response.get_json()["results"]:
            assert attribution.recommendation_shop(result["output"]["recommendation_id"]) == (True, shop["shop_id"])


def test_events_are_recorded_with_the_products_form(db_app, shop):
    client = db_app.test_client()
    answer = recommend(client, browser(shop), {"age": 40, "goals": ["sleep"]})
    listed = [(item["form"], product["sku"]) for item in answer["recommendations"] for product in item["products"]]
    assert listed
    form, sku = listed[0]
    for event_type in ("view", "click", "add_to_cart"):
        response = client.post("/v1/events", json={"type": event_type, "recommendation_id": answer["recommendation_id"],
                                                   "sku": sku}, headers=browser(shop))
        assert response.status_code == 201, response.data
        assert response.get_json()["form"] == form
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_purchases_count_only_from_the_shops_server(db_app, shop):
    client = db_app.test_client()
    answer = recommend(client, browser(shop), {"age": 40})
    event = {"type": "purchase", "recommendation_id": answer["recommendation_id"], "sku": "GLY", "order_id": "o-1"}
    refused = client.post("/v1/events", json=event, headers=browser(shop))
    assert refused.status_code == 403 and "secret key" in refused.get_json()["detail"]
    assert client.post("/v1/events", json=event, headers=server(shop)).status_code == 201


def problem_fields(response) -> set[str]:
    assert response.status_code == 422 and response.mimetype == "application/problem+json", response.data
    return {error["field"] for error in response.get_json()["errors"]}


def test_events_must_name_this_shops_answer_and_product(db_app, shop):
    client = db_app.test_client()
    answer = recommend(client, browser(shop), {"age": 40})
    rid = answer["recommendation_id"]
    assert problem_fields(client.post("/v1/events", json={"type": "view", "recommendation_id": str(uuid.uuid4()),
                                                          "sku": "GLY"}, headers=browser(shop))) == {
        "recommendation_id"}
    assert problem_fields(client.post("/v1/events", json={"type": "view", "recommendation_id": rid, "sku": "NOPE"},
                                      headers=browser(shop))) == {"sku"}
    bad_type = client.post("/v1/events", json={"type": "like", "recommendation_id": rid, "sku": "GLY"},
                           headers=browser(shop))
    assert problem_fields(bad_type) == {"type"} and "add_to_cart" in bad_type.get_json()["detail"]
    assert problem_fields(client.post("/v1/events", json={"type": "view", "recommendation_id": "x", "sku": "GLY",
                                                          "extra": 1}, headers=browser(shop))) == {
        "recommendation_id", "extra"}
    with db_app.app_context():
        other = shops.create_shop(f"other-{uuid.uuid4().hex[:8]}", ["https://other.example"])
    foreign = client.post("/v1/events", json={"type": "view", "recommendation_id": rid, "sku": "GLY"},
                          headers={"X-API-Key": other["secret_key"]})
    assert problem_fields(foreign) == {"recommendation_id"}


def test_events_need_a_shop_key_even_when_the_api_is_open(db_app, shop):
    response = db_app.test_client().post("/v1/events", json={"type": "view", "recommendation_id": str(uuid.uuid4()),
                                                             "sku": "GLY"})
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
