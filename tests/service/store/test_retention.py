"""Retention (issue 19, part 8): `formwise db prune` deletes stored answer ids, events,
outcomes and CDS feedback older than the retention period and expired CDS cards, on SQLite
and PostgreSQL; shops, keys and products stay."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import sqlalchemy as sa

from formwise.service.cli.main import main
from formwise.service.shops import keys as shops
from formwise.service.store import attribution
from formwise.service.store import queries as storage
from formwise.service.store.database import engine_of

ORIGIN = "https://retention.example"


def test_prune_deletes_what_is_older_than_the_period_and_keeps_the_rest(db_app, database_url, runner):
    with db_app.app_context():
        shop = shops.create_shop(f"retention-{uuid.uuid4().hex[:8]}", [ORIGIN])
        storage.remember_card(str(uuid.uuid4()), [], forget_after=0)  # long expired
        storage.remember_card(kept_card := str(uuid.uuid4()), [], forget_after=2**40)
    client = db_app.test_client()
    product = {"sku": "GLY", "name": "Glycinate", "form": "glycinate", "elemental_mg_per_unit": 100,
               "units_per_pack": 60, "price": 10, "currency": "EUR", "url": f"{ORIGIN}/gly"}
    assert client.put("/v1/catalog", json={"products": [product]},
                      headers={"X-API-Key": shop["secret_key"]}).status_code == 200
    ids = []
    for _ in range(3):
        answer = client.post("/v1/recommendations", json={"profile": {"age": 40}},
                             headers={"X-API-Key": shop["publishable_key"], "Origin": ORIGIN}).get_json()
        ids.append(answer["recommendation_id"])
        assert client.post("/v1/events", json={"type": "view", "recommendation_id": ids[-1], "sku": "GLY"},
                           headers={"X-API-Key": shop["publishable_key"], "Origin": ORIGIN}).status_code == 201
        assert client.post("/v1/feedback", json={"recommendation_id": ids[-1], "form": "glycinate",
                                                 "tolerated": True}).status_code == 201
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    with engine_of(db_app).begin() as connection:  # the first two answers are 100 days old
        for table, column in (("recommendations", "id"), ("events", "recommendation_id"),
                              ("outcomes", "recommendation_id")):
            connection.execute(sa.text(f"UPDATE {table} SET created_at = :old WHERE {column} IN (:a, :b)"),
                               {"old": old, "a": ids[0], "b": ids[1]})
    result = runner.invoke(main, ["db", "prune", "--json"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kept_days"] == 90
    deleted = report["deleted"]
    assert (deleted["recommendations"], deleted["events"], deleted["outcomes"]) == (2, 2, 2)
    assert deleted["cds_cards"] >= 1
    with db_app.app_context():
        assert attribution.recommendation_shop(ids[2]) == (True, shop["shop_id"])
        assert attribution.recommendation_shop(ids[0])[0] is False
        assert {item["recommendation_id"] for item in storage.list_outcomes()} >= {ids[2]}
        assert ids[0] not in {item["recommendation_id"] for item in storage.list_outcomes()}
        assert storage.card_suggestions(kept_card, 0) == []
        assert storage.list_products(shop["shop_id"])  # the catalog stays
    again = runner.invoke(main, ["db", "prune", "--days", "1", "--json"], env={"DATABASE_URL": database_url})
    assert json.loads(again.output)["kept_days"] == 1


def test_a_bad_retention_setting_is_an_error(database_url, runner):
    result = runner.invoke(main, ["db", "prune"], env={"DATABASE_URL": database_url,
                                                       "FORMWISE_RETENTION_DAYS": "a quarter"})
    assert result.exit_code == 1 and "FORMWISE_RETENTION_DAYS" in result.output
