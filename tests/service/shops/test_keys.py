"""Shops and keys: the CLI, hashed storage, the key check with FORMWISE_REQUIRE_API_KEY, and
CORS per shop. Runs on SQLite and on PostgreSQL (see the database_url fixture)."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
import sqlalchemy as sa

from formwise.service.app import create_app
from formwise.service.cli.main import main
from formwise.service.shops.keys import normalize_origin
from formwise.service.store.database import engine_of

PROFILE = {"profile": {"age": 40, "goals": ["sleep"]}}


def run_cli(runner, database_url, *args):
    result = runner.invoke(main, list(args), env={"DATABASE_URL": database_url}, catch_exceptions=False)
    return result


def new_shop(runner, database_url, *origins):
    name = f"shop-{uuid.uuid4().hex[:8]}"
    origin_args = [item for origin in origins for item in ("--origin", origin)]
    result = run_cli(runner, database_url, "shops", "create", name, *origin_args, "--json")
    assert result.exit_code == 0, result.output
    return name, json.loads(result.output)


@pytest.fixture(scope="module")
def strict_app(database_url):
    """The production setting: every /v1 call needs a key."""
    application = create_app({"TESTING": True, "DATABASE_URL": database_url, "FORMWISE_REQUIRE_API_KEY": "1"})
    yield application
    engine_of(application).dispose()


@pytest.fixture()
def strict_client(strict_app):
    return strict_app.test_client()


def assert_problem(response, status, text=None):
    assert response.status_code == status, response.data
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["detail"]
    if text:
        assert text in body["detail"], body
    return body


def test_migrations_create_exactly_the_models_tables(db_app):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from formwise.service.store.tables import Base

    with engine_of(db_app).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    tables = set(sa.inspect(engine_of(db_app)).get_table_names())
    assert {"shops", "api_keys", "shop_origins", "products", "recommendations", "events", "outcomes",
            "cds_feedback", "cds_used_tokens"} <= tables


def test_db_upgrade_command_migrates_an_empty_database_once(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    first = run_cli(runner, url, "db", "upgrade")
    assert first.exit_code == 0 and "from an empty database to revision" in first.output
    second = run_cli(runner, url, "db", "upgrade")
    assert second.exit_code == 0 and "already at revision" in second.output


def test_create_prints_keys_once_and_stores_only_their_hashes(runner, database_url, db_app):
    name, created = new_shop(runner, database_url, "https://Shop.Example:443/")
    assert set(created) == {"shop_id", "publishable_key", "secret_key"}
    assert created["publishable_key"].startswith("pk_") and created["secret_key"].startswith("sk_")
    with engine_of(db_app).connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM api_keys WHERE shop_id = :id"),
                                  {"id": created["shop_id"]}).mappings().all()
        origins = connection.execute(sa.text("SELECT origin FROM shop_origins WHERE shop_id = :id"),
                                     {"id": created["shop_id"]}).scalars().all()
    stored = json.dumps([dict(row) for row in rows], default=str)
    for key in (created["publishable_key"], created["secret_key"]):
        assert key not in stored
        assert hashlib.sha256(key.encode()).hexdigest() in stored
    assert origins == ["https://shop.example"]
    listing = run_cli(runner, database_url, "shops", "list")
    assert name in listing.output and created["publishable_key"][:11] in listing.output
    assert created["publishable_key"] not in listing.output and created["secret_key"] not in listing.output


def test_create_refuses_a_taken_name_and_a_bad_origin(runner, database_url, db_app):
    name, _ = new_shop(runner, database_url, "https://a.example")
    again = run_cli(runner, database_url, "shops", "create", name, "--origin", "https://b.example")
    assert again.exit_code == 1 and "already exists" in again.output
    bad = run_cli(runner, database_url, "shops", "create", "other-" + name, "--origin", "https://a.example/shop")
    assert bad.exit_code == 1 and "without a path" in bad.output


@pytest.mark.parametrize(("given", "expected"), [
    ("https://Shop.Example", "https://shop.example"),
    ("https://shop.example:443/", "https://shop.example"),
    ("http://localhost:8080", "http://localhost:8080"),
    ("http://127.0.0.1:80", "http://127.0.0.1"),
])
def test_origins_are_written_as_browsers_send_them(given, expected):
    assert normalize_origin(given) == expected


@pytest.mark.parametrize("given", ["shop.example", "ftp://shop.example", "https://shop.example/path",
                                   "https://user:pw@shop.example", "https://"])
def test_a_malformed_origin_is_refused(given):
    with pytest.raises(ValueError):
        normalize_origin(given)


def test_without_the_setting_the_api_is_open_but_a_sent_key_is_checked(db_app):
    client = db_app.test_client()
    assert client.post("/v1/recommendations", json=PROFILE).status_code == 200
    assert client.get("/v1/forms").status_code == 200
    assert_problem(client.post("/v1/recommendations", json=PROFILE, headers={"X-API-Key": "sk_unknown"}), 401)


def test_every_v1_call_needs_a_key_when_required(strict_client, runner, database_url):
    body = assert_problem(strict_client.post("/v1/recommendations", json=PROFILE), 401, "X-API-Key")
    assert body["type"].endswith("/api-key")
    assert strict_client.post("/v1/recommendations", json=PROFILE).headers["WWW-Authenticate"]
    assert_problem(strict_client.get("/v1/forms"), 401)
    assert_problem(strict_client.post("/v1/recommendations", json=PROFILE, headers={"X-API-Key": "pk_made_up"}),
                   401, "not known")
    # Operations and the widget itself stay reachable.
    assert strict_client.get("/health/live").status_code == 200
    assert strict_client.get("/widget.js").status_code == 200


def test_keys_work_only_where_they_belong(strict_client, runner, database_url):
    _, keys = new_shop(runner, database_url, "https://shop.example")
    publishable, secret = keys["publishable_key"], keys["secret_key"]
    ok = strict_client.post("/v1/recommendations", json=PROFILE,
                            headers={"X-API-Key": publishable, "Origin": "https://shop.example"})
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Origin" in ok.headers["Vary"]
    elsewhere = strict_client.post("/v1/recommendations", json=PROFILE,
                                   headers={"X-API-Key": publishable, "Origin": "https://evil.example"})
    assert_problem(elsewhere, 403, "https://evil.example")
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    assert_problem(strict_client.post("/v1/recommendations", json=PROFILE, headers={"X-API-Key": publishable}),
                   403, "secret key")
    server = strict_client.post("/v1/recommendations", json=PROFILE, headers={"X-API-Key": secret})
    assert server.status_code == 200 and "Access-Control-Allow-Origin" not in server.headers
    assert_problem(strict_client.post("/v1/recommendations", json=PROFILE,
                                      headers={"X-API-Key": secret, "Origin": "https://shop.example"}),
                   403, "never reach a browser")


def test_a_publishable_key_is_not_valid_for_another_shops_origin(strict_client, runner, database_url):
    _, first = new_shop(runner, database_url, "https://first.example")
    new_shop(runner, database_url, "https://second.example")
    response = strict_client.post("/v1/recommendations", json=PROFILE,
                                  headers={"X-API-Key": first["publishable_key"], "Origin": "https://second.example"})
    assert_problem(response, 403, "not registered for this key's shop")


def test_revoked_keys_stop_at_once_and_replace_issues_a_working_one(strict_client, runner, database_url):
    _, keys = new_shop(runner, database_url, "https://shop.example")
    secret = keys["secret_key"]
    assert strict_client.get("/v1/forms", headers={"X-API-Key": secret}).status_code == 200
    revoked = run_cli(runner, database_url, "shops", "revoke-key", secret[:11], "--replace", "--json")
    assert revoked.exit_code == 0, revoked.output
    new_key = json.loads(revoked.output)["new_key"]
    assert new_key.startswith("sk_") and new_key != secret
    assert_problem(strict_client.get("/v1/forms", headers={"X-API-Key": secret}), 401, "revoked")
    assert strict_client.get("/v1/forms", headers={"X-API-Key": new_key}).status_code == 200
    again = run_cli(runner, database_url, "shops", "revoke-key", secret)
    assert again.exit_code == 1 and "No active key" in again.output


def test_preflight_is_answered_for_registered_origins_only(strict_client, runner, database_url):
    new_shop(runner, database_url, "https://preflight.example")
    preflight = {"Origin": "https://preflight.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, x-api-key"}
    response = strict_client.options("/v1/recommendations", headers=preflight)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://preflight.example"
    assert "X-API-Key" in response.headers["Access-Control-Allow-Headers"]
    assert "X-Formwise-Session" in response.headers["Access-Control-Allow-Headers"]  # the visit token (experiments)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    stranger = strict_client.options("/v1/recommendations",
                                     headers={**preflight, "Origin": "https://stranger.example"})
    assert_problem(stranger, 403, "not registered")
    assert "Access-Control-Allow-Origin" not in stranger.headers


def test_added_and_removed_origins_take_effect(strict_client, runner, database_url):
    name, keys = new_shop(runner, database_url, "https://one.example")
    headers = {"X-API-Key": keys["publishable_key"], "Origin": "https://two.example"}
    assert strict_client.post("/v1/recommendations", json=PROFILE, headers=headers).status_code == 403
    added = run_cli(runner, database_url, "shops", "add-origin", name, "HTTPS://Two.Example/")
    assert added.exit_code == 0 and "https://two.example" in added.output
    assert strict_client.post("/v1/recommendations", json=PROFILE, headers=headers).status_code == 200
    removed = run_cli(runner, database_url, "shops", "remove-origin", name, "https://two.example")
    assert removed.exit_code == 0
    assert strict_client.post("/v1/recommendations", json=PROFILE, headers=headers).status_code == 403
    missing = run_cli(runner, database_url, "shops", "add-origin", "no-such-shop", "https://x.example")
    assert missing.exit_code == 1 and "No shop named" in missing.output


def test_readiness_checks_the_database(db_app):
    body = db_app.test_client().get("/health/ready").get_json()
    assert body["checks"]["database"] == "ok"


def test_readiness_fails_when_the_schema_is_behind(tmp_path):
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    application = create_app({"TESTING": True, "DATABASE_URL": url})
    with engine_of(application).begin() as connection:
        connection.execute(sa.text("DELETE FROM alembic_version"))
    response = application.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"].startswith("failed")
    engine_of(application).dispose()
