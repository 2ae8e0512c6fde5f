"""Limits a stranger cannot spend (issue 19): batches cost their items, a publishable key is
also limited per client address (behind trusted proxies, the forwarded one), calls without
a key are limited per address, and events and feedback per answer id."""

from __future__ import annotations

import uuid

import pytest

from formwise.service.app import create_app
from formwise.service.shops import keys as shops
from formwise.service.store.database import engine_of

PROFILE = {"profile": {"age": 40}}
ORIGIN = "https://visitors.example"


@pytest.fixture()
def make_app(tmp_path):
    made = []

    def make(**settings):
        app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / f'{len(made)}.db'}",
                          "FORMWISE_OPEN_RATE_LIMIT": "off", **settings})
        made.append(app)
        return app

    yield make
    for app in made:
        engine_of(app).dispose()


def shop_keys(app) -> dict:
    with app.app_context():
        return shops.create_shop(f"callers-{uuid.uuid4().hex[:8]}", [ORIGIN])


def from_address(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def batch(count: int) -> dict:
    return {"items": [{"id": str(i), "profile": {"age": 30 + i % 50}} for i in range(count)]}


def test_a_batch_costs_one_unit_per_item(make_app):
    app = make_app(FORMWISE_SECRET_RATE_LIMIT="10/minute")
    client = app.test_client()
    key = {"X-API-Key": shop_keys(app)["secret_key"]}
    first = client.post("/v1/recommendations/batch", json=batch(4), headers=key)
    assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == "6"
    assert client.post("/v1/recommendations/batch", json=batch(6), headers=key).headers["X-RateLimit-Remaining"] == "0"
    refused = client.post("/v1/recommendations/batch", json=batch(2), headers=key)
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert "each batch item counts" in refused.get_json()["detail"]


def test_a_batch_larger_than_the_whole_limit_is_refused_naming_items(make_app):
    app = make_app(FORMWISE_RATE_LIMIT="5/minute", FORMWISE_CLIENT_RATE_LIMIT="100/minute")
    client = app.test_client()
    browser = {"X-API-Key": shop_keys(app)["publishable_key"], "Origin": ORIGIN}
    refused = client.post("/v1/recommendations/batch", json=batch(6), headers=browser)
    assert refused.status_code == 422 and refused.mimetype == "application/problem+json"
    (error,) = refused.get_json()["errors"]
    assert error["field"] == "items"
    assert error["message"].startswith("This batch holds 6 profiles; the limit for this publishable key is 5 per 1 "
                                       "minute, so send at most 5 items per call")
    assert client.post("/v1/recommendations/batch", json=batch(5), headers=browser).status_code == 200


def test_a_stranger_with_the_public_key_cannot_spend_the_shops_limit(make_app):
    """Issue 19's attack: 1,300 calls with the publishable key and a forged Origin from one
    address left the shop's real visitors with 429. Now the stranger's address runs out at
    its own limit and the visitors are still answered (the limits as shipped)."""
    app = make_app(FORMWISE_RATE_LIMIT="600/minute", FORMWISE_CLIENT_RATE_LIMIT="120/minute")
    client = app.test_client()
    browser = {"X-API-Key": shop_keys(app)["publishable_key"], "Origin": ORIGIN}
    statuses = [client.post("/v1/recommendations", json=PROFILE, headers=browser,
                            **from_address("198.51.100.7")).status_code for _ in range(1300)]
    assert statuses.count(200) == 120 and statuses.count(429) == 1180
    for visitor in ("203.0.113.10", "203.0.113.11", "203.0.113.12"):
        assert client.post("/v1/recommendations", json=PROFILE, headers=browser,
                           **from_address(visitor)).status_code == 200


def test_the_secret_key_is_not_limited_per_address(make_app):
    app = make_app(FORMWISE_CLIENT_RATE_LIMIT="2/minute")
    client = app.test_client()
    key = {"X-API-Key": shop_keys(app)["secret_key"]}
    assert all(client.post("/v1/recommendations", json=PROFILE, headers=key).status_code == 200 for _ in range(5))


def test_calls_without_a_key_are_limited_per_address(make_app):
    """Issue 19: in open mode nothing was limited (1,500 of 1,500 feedback posts accepted)."""
    app = make_app(FORMWISE_OPEN_RATE_LIMIT="600/minute")
    client = app.test_client()
    statuses = [client.post("/v1/feedback", json={"recommendation_id": str(uuid.uuid4()), "form": "citrate",
                                                   "helpful": 5}).status_code for _ in range(1500)]
    assert statuses.count(422) == 600 and statuses.count(429) == 900  # and none stored: the ids were never issued
    refused = client.post("/v1/recommendations", json=PROFILE)
    assert refused.status_code == 429 and "without an API key" in refused.get_json()["detail"]
    assert client.post("/v1/recommendations", json=PROFILE, **from_address("192.0.2.44")).status_code == 200
    assert client.get("/health/live").status_code == 200  # operations are never limited


def test_behind_trusted_proxies_the_forwarded_address_is_the_client(make_app):
    app = make_app(FORMWISE_OPEN_RATE_LIMIT="2/minute", FORMWISE_TRUSTED_PROXIES="1")
    client = app.test_client()
    proxy = from_address("10.0.0.5")  # every call arrives from the proxy

    def call(forwarded: str) -> int:
        return client.post("/v1/recommendations", json=PROFILE, headers={"X-Forwarded-For": forwarded},
                           **proxy).status_code

    assert [call("203.0.113.1") for _ in range(3)] == [200, 200, 429]
    assert call("203.0.113.2") == 200  # another client behind the same proxy
    # a client that writes its own X-Forwarded-For is still the address the proxy appended
    assert call("192.0.2.99, 203.0.113.1") == 429


def test_without_trusted_proxies_a_forwarded_address_is_ignored(make_app):
    app = make_app(FORMWISE_OPEN_RATE_LIMIT="2/minute")
    client = app.test_client()
    statuses = [client.post("/v1/recommendations", json=PROFILE, headers={"X-Forwarded-For": f"192.0.2.{i}"},
                            **from_address("10.0.0.5")).status_code for i in range(3)]
    assert statuses == [200, 200, 429]


def test_feedback_and_events_are_limited_per_answer(make_app):
    app = make_app(FORMWISE_ANSWER_RATE_LIMIT="3/hour")
    client = app.test_client()
    answer = client.post("/v1/recommendations", json={**PROFILE, "options": {"limit": 5}}).get_json()
    forms = [item["form"] for item in answer["recommendations"]]
    statuses = [client.post("/v1/feedback", json={"recommendation_id": answer["recommendation_id"], "form": form,
                                                   "tolerated": True}).status_code for form in forms]
    assert statuses == [201, 201, 201, 429, 429]
    assert "about this answer" in client.post("/v1/feedback", json={
        "recommendation_id": answer["recommendation_id"], "form": forms[0], "tolerated": True}).get_json()["detail"]
    other = client.post("/v1/recommendations", json=PROFILE).get_json()
    assert client.post("/v1/feedback", json={"recommendation_id": other["recommendation_id"],
                                             "form": other["recommendations"][0]["form"],
                                             "helpful": 4}).status_code == 201


@pytest.mark.parametrize(("setting", "value"), [
    ("FORMWISE_TRUSTED_PROXIES", "two"), ("FORMWISE_CLIENT_RATE_LIMIT", "lots"), ("FORMWISE_OPEN_RATE_LIMIT", "5"),
])
def test_a_bad_limit_setting_stops_start_up(make_app, setting, value):
    with pytest.raises(ValueError):
        make_app(**{setting: value})


def test_the_limit_without_a_key_is_shared_through_redis(make_app):
    from tests.service.shops.test_limits import REDIS_URL, redis_unreachable

    reason = redis_unreachable()
    if reason:
        pytest.skip(f"Redis at 127.0.0.1:6379 is unreachable: {reason}")
    first = make_app(REDIS_URL=REDIS_URL, FORMWISE_OPEN_RATE_LIMIT="3/minute")
    second = make_app(REDIS_URL=REDIS_URL, FORMWISE_OPEN_RATE_LIMIT="3/minute")  # another worker or host
    address = from_address(f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}")
    statuses = [app.test_client().post("/v1/recommendations", json=PROFILE, **address).status_code
                for app in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]
