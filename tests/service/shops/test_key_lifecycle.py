"""Keys like a payments API's (issue 21, part 4), on SQLite and PostgreSQL: several active
keys per kind with names, a rotation that keeps the old key valid until the moment given
and not after, expiry, the last-used time, and renaming and deleting a shop."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
import sqlalchemy as sa

from formwise.service.cli.main import main
from formwise.service.shops import keys as shops
from formwise.service.store import queries as storage
from formwise.service.store.database import engine_of

ORIGIN = "https://keys.example"
BODY = {"profile": {"age": 40}}


@pytest.fixture()
def shop(db_app):
    with db_app.app_context():
        return shops.create_shop(f"keys-{uuid.uuid4().hex[:8]}", [ORIGIN])


def from_page(client, key):
    return client.post("/v1/recommendations", json=BODY, headers={"X-API-Key": key, "Origin": ORIGIN})


def from_server(client, key):
    return client.post("/v1/recommendations", json=BODY, headers={"X-API-Key": key})


def cli(runner, database_url, *args):
    result = runner.invoke(main, list(args), env={"DATABASE_URL": database_url})
    return result


def test_a_rotation_keeps_the_old_key_until_its_moment_and_not_after(db_app, shop):
    client = db_app.test_client()
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    with db_app.app_context():
        new_key, expiring = shops.rotate_key(shop["name"], "publishable", until, name="site 2027")
    assert expiring == [shops.display_prefix(shop["publishable_key"])]
    assert from_page(client, shop["publishable_key"]).status_code == 200  # pages cached with it still work
    assert from_page(client, new_key).status_code == 200
    assert from_server(client, shop["secret_key"]).status_code == 200  # the other kind is untouched
    while dt.datetime.now(dt.UTC) < until + dt.timedelta(milliseconds=200):
        time.sleep(0.1)
    refused = from_page(client, shop["publishable_key"])
    assert refused.status_code == 401 and refused.mimetype == "application/problem+json"
    assert "expired" in refused.get_json()["detail"]
    assert from_page(client, new_key).status_code == 200
    assert from_server(client, shop["secret_key"]).status_code == 200


def test_the_rotate_command_prints_the_new_key_and_the_old_keys_date(db_app, shop, runner, database_url):
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    result = cli(runner, database_url, "shops", "rotate-key", shop["name"], "--kind", "secret",
                 "--keep-old-until", tomorrow, "--json")
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.output)
    assert rotated["key"].startswith("sk_") and rotated["until"].startswith(tomorrow)
    client = db_app.test_client()
    assert from_server(client, shop["secret_key"]).status_code == 200
    assert from_server(client, rotated["key"]).status_code == 200
    listed = json.loads(cli(runner, database_url, "shops", "keys", shop["name"], "--json").output)
    old = next(key for key in listed if key["prefix"] == shops.display_prefix(shop["secret_key"]))
    assert old["state"] == "active" and old["expires_at"].startswith(tomorrow)
    past = cli(runner, database_url, "shops", "rotate-key", shop["name"], "--kind", "secret",
               "--keep-old-until", "2020-01-01")
    assert past.exit_code == 1 and "past" in past.output


def test_a_shop_may_have_several_named_keys_of_a_kind_each_with_its_expiry(db_app, shop, runner, database_url):
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    made = cli(runner, database_url, "shops", "create-key", shop["name"], "--kind", "secret", "--name",
               "warehouse", "--expires", soon, "--json")
    assert made.exit_code == 0, made.output
    second = json.loads(made.output)["key"]
    client = db_app.test_client()
    assert from_server(client, shop["secret_key"]).status_code == 200
    assert from_server(client, second).status_code == 200
    listed = json.loads(cli(runner, database_url, "shops", "keys", shop["name"], "--json").output)
    secrets = [key for key in listed if key["kind"] == "secret"]
    assert [(key["name"], key["state"]) for key in secrets] == [(None, "active"), ("warehouse", "active")]
    assert secrets[1]["expires_at"].startswith(soon)
    text = cli(runner, database_url, "shops", "keys", shop["name"]).output
    assert "warehouse" in text and "last used" in text
    expired = cli(runner, database_url, "shops", "create-key", shop["name"], "--kind", "secret", "--expires",
                  "2020-01-01")
    assert expired.exit_code == 1 and "not in the future" in expired.output


def test_the_last_use_is_kept_to_the_hour_with_one_write(db_app, shop):
    client = db_app.test_client()
    with db_app.app_context():
        before = {key["prefix"]: key["last_used_at"] for key in storage.shop_keys(shop["name"])}
    assert set(before.values()) == {None}
    assert from_server(client, shop["secret_key"]).status_code == 200
    with db_app.app_context():
        first = {key["prefix"]: key["last_used_at"] for key in storage.shop_keys(shop["name"])}
    secret_prefix = shops.display_prefix(shop["secret_key"])
    assert first[secret_prefix] is not None
    assert first[shops.display_prefix(shop["publishable_key"])] is None  # not used yet
    for _ in range(3):
        assert from_server(client, shop["secret_key"]).status_code == 200
    with db_app.app_context():
        assert storage.shop_keys(shop["name"])[1]["last_used_at"] == first[secret_prefix]  # no write per call


def test_rename_keeps_the_keys_and_delete_removes_everything_the_shop_stored(db_app, shop, runner, database_url):
    client = db_app.test_client()
    catalog = {"products": [{"sku": "GLY", "name": "Glycinate", "form": "glycinate", "elemental_mg_per_unit": 100,
                             "units_per_pack": 60, "price": 10, "currency": "EUR", "url": f"{ORIGIN}/gly"}]}
    assert client.put("/v1/catalog", json=catalog, headers={"X-API-Key": shop["secret_key"]}).status_code == 200
    answers = [from_page(client, shop["publishable_key"]).get_json() for _ in range(3)]
    shown = [(answer["recommendation_id"], p["sku"]) for answer in answers for item in answer["recommendations"]
             for p in item["products"]]
    assert shown
    for rid, sku in shown[:2]:
        assert client.post("/v1/events", json={"type": "view", "recommendation_id": rid, "sku": sku},
                           headers={"X-API-Key": shop["publishable_key"], "Origin": ORIGIN}).status_code == 201

    new_name = f"renamed-{uuid.uuid4().hex[:8]}"
    renamed = cli(runner, database_url, "shops", "rename", shop["name"], new_name)
    assert renamed.exit_code == 0, renamed.output
    assert from_page(client, shop["publishable_key"]).status_code == 200  # a fourth answer
    assert cli(runner, database_url, "shops", "keys", shop["name"]).exit_code == 1  # the old name is gone

    refused = cli(runner, database_url, "shops", "delete", new_name)
    assert refused.exit_code == 1 and "--yes" in refused.output
    deleted = cli(runner, database_url, "shops", "delete", new_name, "--yes", "--json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.output)["deleted"] == {"events": 2, "recommendations": 4, "products": 1,
                                                     "control_products": 0, "api_keys": 2, "shop_origins": 1,
                                                     "shops": 1}
    assert from_server(client, shop["secret_key"]).status_code == 401
    with engine_of(db_app).connect() as connection:
        left = connection.execute(sa.text("SELECT count(*) FROM recommendations WHERE shop_id = :id"),
                                  {"id": shop["shop_id"]}).scalar_one()
    assert left == 0
    audit = json.loads(cli(runner, database_url, "audit", "--action", "shop.deleted", "--json").output)
    assert any(entry["subject"] == new_name for entry in audit)
