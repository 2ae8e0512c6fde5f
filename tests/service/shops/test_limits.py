"""Rate limits per API key: in memory inside one process, and in Redis across the two
workers of a real gunicorn (skipped only when no Redis answers at 127.0.0.1:6379)."""

from __future__ import annotations

import json
import socket
import uuid

import pytest
import requests

from formwise.service.app import create_app
from formwise.service.shops import keys as shops
from formwise.service.shops import limits
from formwise.service.store.database import engine_of
from tests.e2e.server import formwise_cli, running_service

PROFILE = {"profile": {"age": 40}}
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def limited_app(database_url):
    application = create_app({"TESTING": True, "DATABASE_URL": database_url, "FORMWISE_RATE_LIMIT": "3/minute",
                              "FORMWISE_SECRET_RATE_LIMIT": "3/minute"})
    yield application
    engine_of(application).dispose()


def new_shop(app, origin="https://limits.example") -> dict:
    with app.app_context():
        return shops.create_shop(f"limits-{uuid.uuid4().hex[:8]}", [origin])


def test_a_key_over_its_limit_gets_a_429_problem_with_retry_after(limited_app):
    client = limited_app.test_client()
    keys = new_shop(limited_app)
    headers = {"X-API-Key": keys["secret_key"]}
    remaining = []
    for _ in range(3):
        response = client.post("/v1/recommendations", json=PROFILE, headers=headers)
        assert response.status_code == 200
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert "Retry-After" not in response.headers
    assert remaining == [2, 1, 0]
    refused = client.post("/v1/recommendations", json=PROFILE, headers=headers)
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert "Retry-After" in refused.get_json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Every /v1 endpoint draws on the same allowance.
    assert client.get("/v1/forms", headers=headers).status_code == 429


def test_limits_are_per_key_and_spare_open_calls_and_operations(limited_app):
    client = limited_app.test_client()
    first, second = new_shop(limited_app), new_shop(limited_app)
    for _ in range(4):
        client.post("/v1/recommendations", json=PROFILE, headers={"X-API-Key": first["secret_key"]})
    assert client.post("/v1/recommendations", json=PROFILE,
                       headers={"X-API-Key": first["secret_key"]}).status_code == 429
    assert client.post("/v1/recommendations", json=PROFILE,
                       headers={"X-API-Key": second["secret_key"]}).status_code == 200
    # The same shop's publishable key is a key of its own.
    browser = {"X-API-Key": first["publishable_key"], "Origin": "https://limits.example"}
    assert client.post("/v1/recommendations", json=PROFILE, headers=browser).status_code == 200
    for _ in range(5):
        assert client.post("/v1/recommendations", json=PROFILE).status_code == 200
        assert client.get("/health/live").status_code == 200


def test_preflights_are_not_counted(limited_app):
    client = limited_app.test_client()
    keys = new_shop(limited_app, "https://preflight-limits.example")
    preflight = {"Origin": "https://preflight-limits.example", "Access-Control-Request-Method": "POST"}
    for _ in range(5):
        assert client.options("/v1/recommendations", headers=preflight).status_code == 204
    browser = {"X-API-Key": keys["publishable_key"], "Origin": "https://preflight-limits.example"}
    assert client.post("/v1/recommendations", json=PROFILE, headers=browser).headers["X-RateLimit-Remaining"] == "2"


def redis_unreachable() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            return None if sock.recv(64).startswith(b"+PONG") else "no PONG"
    except OSError as error:
        return str(error)


def raw_request_parts(base_url: str, key: str) -> tuple[bytes, bytes]:
    """An HTTP request split in two: the head without its final blank line, and the rest."""
    host = base_url.removeprefix("http://")
    body = json.dumps(PROFILE).encode()
    head = (f"POST /v1/recommendations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n").encode()
    return head, b"\r\n" + body


@pytest.mark.slow
def test_one_limit_holds_across_gunicorn_workers_with_redis(tmp_path):
    reason = redis_unreachable()
    if reason:
        pytest.skip(f"Redis at 127.0.0.1:6379 is unreachable: {reason}")
    env = {"FORMWISE_DATA_DIR": str(tmp_path), "REDIS_URL": REDIS_URL, "FORMWISE_RATE_LIMIT": "4/minute",
           "FORMWISE_SECRET_RATE_LIMIT": "4/minute",
           "FORMWISE_REQUIRE_API_KEY": "1"}
    keys = json.loads(formwise_cli("shops", "create", f"redis-{uuid.uuid4().hex[:8]}",
                                   "--origin", "https://redis.example", "--json", env=env))
    other = json.loads(formwise_cli("shops", "create", f"redis-{uuid.uuid4().hex[:8]}",
                                    "--origin", "https://redis.example", "--json", env=env))
    with running_service(tmp_path, workers=2, env=env) as base:
        host, port = base.removeprefix("http://").split(":")
        head, rest = raw_request_parts(base, keys["secret_key"])
        # A sync worker serves one connection at a time: this half-sent request holds one of
        # the two workers, so the next four calls are all served by the other one.
        with socket.create_connection((host, int(port)), timeout=30) as held:
            held.sendall(head)
            for _ in range(4):
                response = requests.post(base + "/v1/recommendations", json=PROFILE,
                                         headers={"X-API-Key": keys["secret_key"]}, timeout=30)
                assert response.status_code == 200
            held.sendall(rest)
            reply = b""
            while chunk := held.recv(65536):
                reply += chunk
        # The held worker has served nothing for this key; only a shared count refuses it.
        status_line, _, _ = reply.partition(b"\r\n")
        assert status_line.split()[1] == b"429", reply[:500]
        assert b"\r\nretry-after: " in reply.lower()
        assert b"application/problem+json" in reply
        assert requests.post(base + "/v1/recommendations", json=PROFILE, headers={"X-API-Key": other["secret_key"]},
                             timeout=30).status_code == 200


def test_the_limiter_hooks_are_wrapped_so_unkeyed_requests_skip_them(app):
    """If a flask-limiter upgrade renames its hooks the wrapping is skipped (and limits still
    hold, through the request filter); this test says so, so the cost does not come back unseen."""
    limiter = app.extensions["formwise_limiter"]
    assert limiter._check_request_limit not in app.before_request_funcs[None]
    assert not any(getattr(hook, "__self__", None) is limiter for hook in app.teardown_request_funcs[None])
    assert not any(getattr(hook, "args", None) == (limiter,) for hook in app.after_request_funcs[None])


def test_with_limiter_hooks_it_does_not_recognise_counted_calls_still_get_their_headers(monkeypatch, tmp_path):
    """The fallback for a flask-limiter whose hooks are not found: its own hooks stay."""
    original_init = limits.Limiter.init_app

    def init_without_a_findable_teardown(self, app, *args, **kwargs):
        original_init(self, app, *args, **kwargs)
        app.teardown_request_funcs[None] = [hook for hook in app.teardown_request_funcs[None]
                                            if getattr(hook, "__self__", None) is not self]
        app.teardown_request(lambda error=None: self.context.reset())

    monkeypatch.setattr(limits.Limiter, "init_app", init_without_a_findable_teardown)
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'limits.db'}",
                      "FORMWISE_RATE_LIMIT": "2/minute", "FORMWISE_SECRET_RATE_LIMIT": "2/minute"})
    try:
        limiter = app.extensions["formwise_limiter"]
        assert limiter._check_request_limit in app.before_request_funcs[None]  # not replaced
        client = app.test_client()
        headers = {"X-API-Key": new_shop(app)["secret_key"]}
        remaining = [client.post("/v1/recommendations", json=PROFILE, headers=headers).headers.get(
            "X-RateLimit-Remaining") for _ in range(2)]
        assert remaining == ["1", "0"]
        assert client.post("/v1/recommendations", json=PROFILE, headers=headers).status_code == 429
        open_call = client.post("/v1/recommendations", json=PROFILE)
        assert open_call.status_code == 200 and "X-RateLimit-Remaining" not in open_call.headers
    finally:
        engine_of(app).dispose()
