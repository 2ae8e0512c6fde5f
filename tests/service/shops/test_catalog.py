"""Catalog upload (API and CLI) and the shop's products in answers, on SQLite and PostgreSQL.

Expected units and costs are computed here from each answer's own dose range, never copied
from the service."""

from __future__ import annotations

import json
import math
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formwise.models.knowledge.loading import default_knowledge_base
from formwise.service.cli.main import main
from formwise.service.shops import keys as shops
from formwise.service.store import queries as storage
from tests.conftest import PROJECT_ROOT
from tests.models.profiles import profiles

FORM_IDS = default_knowledge_base().form_ids
ORIGIN = "https://shop.example"
HEADER = "sku,name,form,elemental_mg_per_unit,units_per_pack,price,currency,url"


def make_shop(app) -> dict:
    with app.app_context():
        return shops.create_shop(f"shop-{uuid.uuid4().hex[:8]}", [ORIGIN])


def secret(shop) -> dict:
    return {"X-API-Key": shop["secret_key"]}


def publishable(shop) -> dict:
    return {"X-API-Key": shop["publishable_key"], "Origin": ORIGIN}


def put_csv(client, shop, text):
    return client.put("/v1/catalog", data=text, headers={**secret(shop), "Content-Type": "text/csv"})


def every_form_catalog() -> dict:
    """Two products of every form: one small unit, one large."""
    products = []
    for form in FORM_IDS:
        for size, mg in (("small", 50), ("large", 200)):
            products.append({"sku": f"{form}-{size}", "name": f"{form} {mg} mg", "form": form,
                             "elemental_mg_per_unit": mg, "units_per_pack": 90, "price": 12.5, "currency": "EUR",
                             "url": f"{ORIGIN}/p/{form}-{size}"})
    return {"products": products}


@pytest.fixture(scope="module")
def stocked_shop(db_app):
    shop = make_shop(db_app)
    response = db_app.test_client().put("/v1/catalog", json=every_form_catalog(), headers=secret(shop))
    assert response.status_code == 200 and response.get_json()["products_stored"] == 2 * len(FORM_IDS)
    return shop


def test_bad_rows_are_reported_and_good_rows_kept(db_app):
    shop = make_shop(db_app)
    client = db_app.test_client()
    text = "\n".join([
        HEADER,
        "GLY-1,Glycinate 120,glycinate,100,120,19.90,EUR,https://shop.example/gly",
        "BAD-FORM,Mystery,unobtainium,100,60,9.90,EUR,https://shop.example/x",
        "BAD-NUM,Citrate,citrate,lots,60,9.90,EUR,https://shop.example/c",
        "GLY-1,Duplicate,glycinate,100,120,19.90,EUR,https://shop.example/gly2",
        "CIT-1,Citrate 150,citrate,150,90,12.00,USD,https://shop.example/cit",
        "BAD-PRICE,Citrate,citrate,150,90,12.001,usd,javascript:alert(1)",
    ]) + "\n"
    response = put_csv(client, shop, text)
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert (body["rows_in"], body["products_stored"], body["rows_rejected"]) == (6, 2, 4)
    by_row = {}
    for error in body["errors"]:
        by_row.setdefault(error["row"], set()).add(error["field"])
    assert by_row == {2: {"form"}, 3: {"elemental_mg_per_unit"}, 4: {"sku"}, 6: {"price", "currency", "url"}}
    assert any("row 1" in error["message"] for error in body["errors"] if error["row"] == 4)
    stored = client.get("/v1/catalog", headers=secret(shop)).get_json()["products"]
    assert [(item["sku"], item["price"], item["currency"]) for item in stored] == [
        ("CIT-1", 12.0, "USD"), ("GLY-1", 19.9, "EUR")]


def test_an_upload_where_every_row_is_bad_leaves_the_catalog_unchanged(db_app):
    shop = make_shop(db_app)
    client = db_app.test_client()
    assert put_csv(client, shop, f"{HEADER}\nA,A,glycinate,100,60,5,EUR,https://shop.example/a\n").status_code == 200
    response = put_csv(client, shop, f"{HEADER}\nB,B,glycinate,-1,60,5,EUR,https://shop.example/b\n")
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert response.get_json()["errors"][0] == {"row": 1, "field": "elemental_mg_per_unit",
                                                "message": "Must be a number above 0 and at most 2000 (mg)."}
    assert [item["sku"] for item in client.get("/v1/catalog", headers=secret(shop)).get_json()["products"]] == ["A"]


@pytest.mark.parametrize(("body", "content_type", "status", "text"), [
    ("sku,name\nA,B\n", "text/csv", 422, "missing columns"),
    (f"{HEADER},colour\n", "text/csv", 422, "unknown columns: colour"),
    ('[{"sku": "A"}]', "application/json", 422, '{"products"'),
    ("{", "application/json", 422, "Invalid JSON"),
    ("sku;name", "text/plain", 415, "text/csv"),
])
def test_an_unreadable_upload_is_a_problem(db_app, body, content_type, status, text):
    shop = make_shop(db_app)
    response = db_app.test_client().put("/v1/catalog", data=body,
                                        headers={**secret(shop), "Content-Type": content_type})
    assert response.status_code == status and response.mimetype == "application/problem+json"
    assert text in response.get_json()["detail"]


def test_the_catalog_needs_the_secret_key(db_app):
    shop = make_shop(db_app)
    client = db_app.test_client()
    assert client.put("/v1/catalog", json={"products": []}).status_code == 401
    refused = client.put("/v1/catalog", json={"products": []}, headers=publishable(shop))
    assert refused.status_code == 403 and "secret key" in refused.get_json()["detail"]
    assert client.get("/v1/catalog", headers=publishable(shop)).status_code == 403


def expected_offer(product: dict, dose: dict) -> dict | None:
    units = max(1, math.ceil(dose["min"] / product["elemental_mg_per_unit"]))
    if units * product["elemental_mg_per_unit"] > dose["max"]:
        return None
    cost = (Decimal(str(product["price"])) * units / product["units_per_pack"]).quantize(Decimal("0.01"),
                                                                                         ROUND_HALF_UP)
    return {"units_per_day": units, "cost_per_day": float(cost)}


def test_answers_list_the_shops_products_with_units_and_cost_per_day(db_app, stocked_shop):
    client = db_app.test_client()
    catalog = {item["sku"]: item for item in every_form_catalog()["products"]}
    answer = client.post("/v1/recommendations", json={"profile": {"age": 40, "goals": ["sleep"]}},
                         headers=publishable(stocked_shop)).get_json()
    assert answer["recommendations"]
    for recommendation in answer["recommendations"]:
        dose = recommendation["dose"]["elemental_mg_per_day"]
        listed = {item["sku"]: item for item in recommendation["products"]}
        expected = {sku: expected_offer(product, dose) for sku, product in catalog.items()
                    if product["form"] == recommendation["form"]}
        assert set(listed) == {sku for sku, offer in expected.items() if offer}
        for sku, item in listed.items():
            assert {"units_per_day": item["units_per_day"], "cost_per_day": item["cost_per_day"]} == expected[sku]
            assert dose["min"] <= item["elemental_mg_per_day"] <= dose["max"]
            assert item["url"] == catalog[sku]["url"] and item["currency"] == "EUR"
        costs = [item["cost_per_day"] for item in recommendation["products"]]
        assert costs == sorted(costs)


@pytest.mark.parametrize("max_units", [1, 2, 3])
def test_products_respect_the_units_a_day_the_person_accepts(db_app, stocked_shop, max_units):
    catalog = every_form_catalog()["products"]
    profile = {"age": 40, "goals": ["sleep"], "preferences": {"max_units_per_day": max_units}}
    answer = db_app.test_client().post("/v1/recommendations", json={"profile": profile},
                                       headers=publishable(stocked_shop)).get_json()
    assert answer["recommendations"]
    left_out = 0
    for recommendation in answer["recommendations"]:
        dose = recommendation["dose"]["elemental_mg_per_day"]
        fitting = {product["sku"]: expected_offer(product, dose) for product in catalog
                   if product["form"] == recommendation["form"]}
        fitting = {sku: offer for sku, offer in fitting.items() if offer}
        listed = {item["sku"]: item["units_per_day"] for item in recommendation["products"]}
        assert listed == {sku: offer["units_per_day"] for sku, offer in fitting.items()
                          if offer["units_per_day"] <= max_units}
        left_out += len(fitting) - len(listed)
    if max_units == 1:  # the 50 mg units need two a day to reach these doses' minimum of 100 mg
        assert left_out > 0


def test_products_respect_each_batch_items_own_units_limit(db_app, stocked_shop):
    items = [{"id": "one", "profile": {"age": 40, "preferences": {"max_units_per_day": 1}}},
             {"id": "any", "profile": {"age": 40}}]
    results = db_app.test_client().post("/v1/recommendations/batch", json={"items": items},
                                        headers=publishable(stocked_shop)).get_json()["results"]
    one, unlimited = (result["output"]["recommendations"] for result in results)
    assert all(item["units_per_day"] == 1 for recommendation in one for item in recommendation["products"])
    assert any(item["units_per_day"] > 1 for recommendation in unlimited for item in recommendation["products"])


def test_a_unit_above_the_childs_upper_limit_is_not_offered(db_app, stocked_shop):
    answer = db_app.test_client().post("/v1/recommendations", json={"profile": {"age": 6}},
                                       headers=publishable(stocked_shop)).get_json()
    assert answer["recommendations"]
    for recommendation in answer["recommendations"]:
        assert recommendation["dose"]["elemental_mg_per_day"]["max"] < 200
        assert all(item["elemental_mg_per_unit"] < 200 for item in recommendation["products"])


def test_severe_kidney_disease_gets_no_products(db_app, stocked_shop):
    answer = db_app.test_client().post("/v1/recommendations", json={"profile": {"age": 70, "egfr": 20}},
                                       headers=publishable(stocked_shop)).get_json()
    assert answer["max_severity"] == "critical" and answer["recommendations"] == []
    assert "\"products\"" not in json.dumps(answer)


def test_without_a_key_answers_carry_no_products(db_app, stocked_shop):
    answer = db_app.test_client().post("/v1/recommendations", json={"profile": {"age": 40}}).get_json()
    assert all("products" not in item for item in answer["recommendations"])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(profiles, min_size=20, max_size=40))
def test_a_product_of_an_excluded_form_never_appears(db_app, stocked_shop, batch):
    response = db_app.test_client().post(
        "/v1/recommendations/batch", json={"items": [{"id": str(n), "profile": p} for n, p in enumerate(batch)],
                                           "options": {"limit": 20}},
        headers=publishable(stocked_shop))
    assert response.status_code == 200
    for result in response.get_json()["results"]:
        answer = result["output"]
        excluded = {item["form"] for item in answer["excluded"]}
        for recommendation in answer["recommendations"]:
            assert recommendation["form"] not in excluded
            for product in recommendation["products"]:
                assert product["sku"].startswith(recommendation["form"] + "-")
                assert product["elemental_mg_per_day"] <= recommendation["dose"]["elemental_mg_per_day"]["max"]
        if answer["max_severity"] == "critical":
            assert answer["recommendations"] == []


def test_catalog_upload_command(db_app, database_url, runner, tmp_path):
    shop = make_shop(db_app)
    with db_app.app_context():
        name = next(row["name"] for row in shops.storage.list_shops() if row["shop_id"] == shop["shop_id"])
    good = tmp_path / "catalog.csv"
    good.write_text(f"{HEADER}\nM-1,Malate,malate,120,60,15.00,EUR,https://shop.example/m\n"
                    "M-2,Malate,malate,0,60,15.00,EUR,https://shop.example/m2\n")
    result = runner.invoke(main, ["catalog", "upload", name, str(good)], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "row 2, elemental_mg_per_unit" in result.output and "products_stored 1" in result.output
    stored = db_app.test_client().get("/v1/catalog", headers=secret(shop)).get_json()["products"]
    assert [item["sku"] for item in stored] == ["M-1"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"products": [{"sku": "X"}]}))
    result = runner.invoke(main, ["catalog", "upload", name, str(bad)], env={"DATABASE_URL": database_url})
    assert result.exit_code == 1 and "unchanged" in result.output
    result = runner.invoke(main, ["catalog", "upload", "no-such-shop", str(good)], env={"DATABASE_URL": database_url})
    assert result.exit_code == 1 and "No shop named" in result.output


def test_the_example_catalog_uploads_whole_with_its_images_and_cart_links(db_app):
    """examples/catalog.csv is what the README has a new shop upload: every row must be good."""
    shop = make_shop(db_app)
    text = (PROJECT_ROOT / "examples" / "catalog.csv").read_text(encoding="utf-8")
    response = db_app.test_client().put("/v1/catalog", data=text, content_type="text/csv",
                                        headers={"X-API-Key": shop["secret_key"]})
    body = response.get_json()
    assert response.status_code == 200 and body["rows_rejected"] == 0, body
    with db_app.app_context():
        products = storage.list_products(shop["shop_id"])
    assert len(products) == body["products_stored"] == text.count("\n") - 1
    assert any(product["image_url"] and product["cart_url"] for product in products)
    assert any(product["image_url"] is None for product in products)  # the columns are optional per row
    for product in products:
        if product["image_url"]:
            assert (PROJECT_ROOT / "examples" / product["image_url"].split(":8080/", 1)[1]).is_file()
