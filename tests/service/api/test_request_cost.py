"""Cost-bounded work (issue 19, part 3): the products step does not grow with the catalog
(an index by form gives exactly the offers a full scan gives), a batch over the cost ceiling
is refused before any work, and a request past its deadline answers a 503 problem instead of
running until the worker is killed."""

from __future__ import annotations

import math
import random
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest

from formwise.models.knowledge.loading import default_knowledge_base
from formwise.service.api import deadline
from formwise.service.shops import keys as shops
from formwise.service.shops.catalog import MAX_PRODUCTS_PER_FORM, CatalogIndex, store_catalog
from formwise.service.store.database import engine_of

FORM_IDS = default_knowledge_base().form_ids
ORIGIN = "https://cost.example"


def random_catalog(rng: random.Random, count: int, forms=FORM_IDS) -> list[dict]:
    return [{"sku": f"S{i:05d}", "name": f"Product {i}", "form": rng.choice(forms),
             "elemental_mg_per_unit": rng.choice([25, 50, 65, 100, 120, 133.3, 200, 300]),
             "units_per_pack": rng.choice([1, 10, 30, 60, 90, 120, 240]),
             "price": round(rng.uniform(0.5, 80), 2), "currency": "EUR", "url": f"{ORIGIN}/p/{i}"}
            for i in range(count)]


def every_offer_cheapest_first(products: list[dict], form: str, dose: dict, max_units: int | None) -> list[tuple]:
    """The full scan, written from the catalog's rule: the fewest whole units that reach the
    minimum without passing the maximum (and within the person's units a day), the cost of a
    day rounded half up to cents, cheapest first, then by sku; the first five."""
    offers = []
    for product in products:
        if product["form"] != form:
            continue
        units = max(1, math.ceil(dose["min"] / product["elemental_mg_per_unit"] - 1e-9))
        if units * product["elemental_mg_per_unit"] > dose["max"] + 1e-9:
            continue
        if max_units is not None and units > max_units:
            continue
        cost = (Decimal(str(product["price"])) * units / product["units_per_pack"]).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)
        offers.append((float(cost), product["sku"], units))
    return sorted(offers)[:MAX_PRODUCTS_PER_FORM]


@pytest.mark.parametrize("seed", range(40))
def test_the_index_finds_exactly_the_cheapest_offers_a_full_scan_finds(seed):
    rng = random.Random(seed)
    products = random_catalog(rng, rng.choice([0, 1, 7, 60, 400]), forms=FORM_IDS[:3])
    index = CatalogIndex(products)
    for _ in range(25):
        low = rng.choice([0.5, 50, 100, 150, 200, 300])
        dose = {"min": low, "max": low + rng.choice([0, 50, 150, 250])}
        max_units = rng.choice([None, 1, 2, 4])
        form = rng.choice(FORM_IDS[:3])
        found = [(item["cost_per_day"], item["sku"], item["units_per_day"])
                 for item in index.offers(form, dose, max_units)]
        assert found == every_offer_cheapest_first(products, form, dose, max_units), (form, dose, max_units)


@pytest.fixture()
def cost_app(tmp_path):
    from formwise.service.app import create_app

    made = []

    def make(**settings):
        app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / f'{len(made)}.db'}", **settings})
        made.append(app)
        return app

    yield make
    for app in made:
        engine_of(app).dispose()


def stocked(app, products: list[dict]) -> dict:
    with app.app_context():
        keys = shops.create_shop(f"cost-{uuid.uuid4().hex[:8]}", [ORIGIN])
        summary = store_catalog(keys["shop_id"], products)
        assert summary["products_stored"] == len(products)
    return keys


def batch(count: int, limit: int) -> dict:
    goals = ["sleep", "constipation_relief", "cramps", "general", "migraine_prevention"]
    return {"items": [{"id": str(i), "profile": {"age": 18 + i % 70, "goals": [goals[i % len(goals)]]}}
                      for i in range(count)], "options": {"limit": limit}}


def test_the_attack_of_issue_19_is_answered_with_the_same_offers_a_full_scan_gives(cost_app):
    """10,000 products and a 1,000-item batch with limit 20 (the call that took 30.5 s and
    was killed): answered, and every listed product is what the full scan would list."""
    products = random_catalog(random.Random(19), 10_000)
    app = cost_app()
    keys = stocked(app, products)
    response = app.test_client().post("/v1/recommendations/batch", json=batch(1000, 20),
                                      headers={"X-API-Key": keys["secret_key"]})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == 1000 and all(result["error"] is None for result in results)
    checked = 0
    for result in results[::97]:
        for item in result["output"]["recommendations"]:
            dose = item["dose"]["elemental_mg_per_day"]
            listed = [(offer["cost_per_day"], offer["sku"], offer["units_per_day"]) for offer in item["products"]]
            assert listed == every_offer_cheapest_first(products, item["form"], dose, None)
            checked += 1
    assert checked > 50


def test_a_new_catalog_replaces_the_indexed_one(cost_app):
    app = cost_app()
    cheap = random_catalog(random.Random(1), 30, forms=FORM_IDS)
    keys = stocked(app, cheap)
    client = app.test_client()
    key = {"X-API-Key": keys["secret_key"]}
    before = client.post("/v1/recommendations", json={"profile": {"age": 40}}, headers=key).get_json()
    assert any(item["products"] for item in before["recommendations"])
    replacement = [{**product, "sku": "NEW-" + product["sku"]} for product in cheap]
    with app.app_context():
        store_catalog(keys["shop_id"], replacement)
    after = client.post("/v1/recommendations", json={"profile": {"age": 40}}, headers=key).get_json()
    skus = [offer["sku"] for item in after["recommendations"] for offer in item["products"]]
    assert skus and all(sku.startswith("NEW-") for sku in skus)


def test_a_batch_over_the_cost_ceiling_is_refused_before_any_work(cost_app):
    app = cost_app(FORMWISE_MAX_REQUEST_COST=6_000)
    keys = stocked(app, random_catalog(random.Random(2), 40))
    client = app.test_client()
    key = {"X-API-Key": keys["secret_key"]}
    from formwise.service.store import attribution

    refused = client.post("/v1/recommendations/batch", json=batch(100, 20), headers=key)  # 100 x 20 x 6
    with app.app_context():
        assert attribution.conversion_rows(keys["shop_id"])["answers"] == []  # nothing was answered
    assert refused.status_code == 413 and refused.mimetype == "application/problem+json"
    body = refused.get_json()
    assert "12,000 work units" in body["detail"] and "the ceiling is 6,000" in body["detail"]
    assert {error["field"] for error in body["errors"]} == {"items", "options.limit"}
    assert {"field": "items", "message": "At most 50 items with this limit."} in body["errors"]
    # The same batch without the shop's products costs 100 x 20 x 1 and is answered.
    assert client.post("/v1/recommendations/batch", json=batch(100, 20)).status_code == 200
    assert client.post("/v1/recommendations/batch", json=batch(50, 20), headers=key).status_code == 200


def test_a_request_past_its_deadline_is_a_503_problem(cost_app, monkeypatch):
    app = cost_app(FORMWISE_REQUEST_DEADLINE_SECONDS="2")
    keys = stocked(app, random_catalog(random.Random(3), 200))
    ticks = iter(range(0, 10_000, 1))  # each look at the clock is one second later

    monkeypatch.setattr(deadline, "clock", lambda: float(next(ticks)))
    response = app.test_client().post("/v1/recommendations/batch", json=batch(300, 5),
                                      headers={"X-API-Key": keys["secret_key"]})
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert "2 s deadline" in response.get_json()["detail"]


def test_a_request_within_its_deadline_is_answered(cost_app, monkeypatch):
    app = cost_app(FORMWISE_REQUEST_DEADLINE_SECONDS="2")
    monkeypatch.setattr(deadline, "clock", lambda: 100.0)  # time stands still
    assert app.test_client().post("/v1/recommendations/batch", json=batch(300, 5)).status_code == 200


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_deadline_setting_stops_start_up(cost_app, value):
    with pytest.raises(ValueError, match="FORMWISE_REQUEST_DEADLINE_SECONDS"):
        cost_app(FORMWISE_REQUEST_DEADLINE_SECONDS=value)
