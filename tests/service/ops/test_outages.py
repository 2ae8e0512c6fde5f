"""Honest failure (issue 19, part 6): the rate-limit store (Redis) or the database out of
reach gives a 503 problem with Retry-After, never a 500, and /health/ready names the part
that failed. Real parts: a Redis URL on a port where nothing listens, an SQLite file that
is taken away under the running app."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from formwise.service.app import create_app
from formwise.service.shops import keys as shops

PROFILE = {"profile": {"age": 40}}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def app_with_shop(tmp_path: Path, **settings):
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'formwise.db'}", **settings})
    with app.app_context():
        created = shops.create_shop(f"shop-{uuid.uuid4().hex[:8]}", ["https://shop.example"])
    return app, {"X-API-Key": created["secret_key"]}


def assert_unavailable(response, what: str) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert what in response.get_json()["detail"]


def test_redis_out_of_reach_is_a_503_and_readiness_says_which(tmp_path):
    app, key = app_with_shop(tmp_path, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    client = app.test_client()
    assert_unavailable(client.post("/v1/recommendations", json=PROFILE, headers=key), "The rate-limit store")
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.get_json()["checks"]["rate_limits"].startswith("failed")
    assert client.post("/v1/recommendations", json=PROFILE).status_code == 200  # the suite lifts the open limit


def test_the_limiter_may_fall_back_to_each_workers_memory(tmp_path):
    app, key = app_with_shop(tmp_path, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
                             FORMWISE_RATE_LIMIT_WHEN_STORE_DOWN="memory")
    response = app.test_client().post("/v1/recommendations", json=PROFILE, headers=key)
    assert response.status_code == 200 and response.headers["X-RateLimit-Limit"] == "60000"  # a secret key


@pytest.mark.parametrize(("when_down", "status"), [("refuse", 503), ("memory", 200)])
def test_calls_without_a_key_follow_the_same_setting_when_redis_is_down(tmp_path, when_down, status):
    """Their per-address limit lives in the same store."""
    app, _ = app_with_shop(tmp_path, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
                           FORMWISE_OPEN_RATE_LIMIT="2/minute", FORMWISE_RATE_LIMIT_WHEN_STORE_DOWN=when_down)
    client = app.test_client()
    response = client.post("/v1/recommendations", json=PROFILE)
    assert response.status_code == status
    if when_down == "refuse":
        assert_unavailable(response, "The rate-limit store")
    else:  # counted in this worker's memory meanwhile: the limit still holds
        assert [client.post("/v1/recommendations", json=PROFILE).status_code for _ in range(2)] == [200, 429]


def test_a_bad_fallback_setting_stops_the_start(tmp_path):
    with pytest.raises(ValueError, match="FORMWISE_RATE_LIMIT_WHEN_STORE_DOWN"):
        create_app({"TESTING": True, "FORMWISE_RATE_LIMIT_WHEN_STORE_DOWN": "open"})


def test_a_database_taken_away_is_a_503_and_readiness_says_which(tmp_path):
    app, key = app_with_shop(tmp_path)
    client = app.test_client()
    assert client.post("/v1/recommendations", json=PROFILE, headers=key).status_code == 200
    app.extensions["formwise_db"].kw["bind"].dispose()
    for path in tmp_path.glob("formwise.db*"):
        path.unlink()
    assert_unavailable(client.post("/v1/recommendations", json=PROFILE, headers=key), "The database")
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.get_json()["checks"]["database"].startswith("failed")


def test_a_body_of_many_bad_rows_answers_a_short_problem(tmp_path):
    app, key = app_with_shop(tmp_path)
    response = app.test_client().put("/v1/catalog", json={"products": [{}] * 2000}, headers=key)
    body = response.get_json()
    assert response.status_code == 422 and len(body["errors"]) == 100
    assert "errors lists the first 100" in body["detail"] and len(response.get_data()) < 50_000


def test_redis_lost_after_a_call_was_counted_still_answers(tmp_path, monkeypatch):
    """Found by bench/bench_load.py --keyed with Redis stopped mid-run: the store went away
    between counting a call and reading its window for the headers, and 3 calls of 70,864
    answered 500. The answer now goes out without the X-RateLimit headers."""
    import redis.exceptions
    from limits.strategies import MovingWindowRateLimiter

    app, key = app_with_shop(tmp_path)

    def store_gone(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(MovingWindowRateLimiter, "get_window_stats", store_gone)
    response = app.test_client().post("/v1/recommendations", json=PROFILE, headers=key)
    assert response.status_code == 200 and "X-RateLimit-Remaining" not in response.headers


def test_an_outage_raised_after_the_view_is_a_503_not_a_500(tmp_path):
    import redis.exceptions

    app, _ = app_with_shop(tmp_path)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: the test client would re-raise

    @app.after_request
    def store_gone(response):
        raise redis.exceptions.ConnectionError("Connection closed by server.")

    assert_unavailable(app.test_client().post("/v1/recommendations", json=PROFILE), "The rate-limit store")
