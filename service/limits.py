"""Rate limits per API key (flask-limiter), so one shop cannot crowd out the others.

Every /v1 call made with a valid key counts against that key's limit
(``FORMWISE_RATE_LIMIT``, default 600 per minute, over a moving window). Calls without a
key (open local use) are not limited here. The counts live in memory by default, which is
per gunicorn worker; with ``REDIS_URL`` they live in Redis, so one limit holds across all
workers and hosts. A call over the limit gets a 429 problem with ``Retry-After``."""

from __future__ import annotations

import functools
import math
import os
import time

from flask import Flask, after_this_request, request
from flask_limiter import ApplicationLimit, Limiter
from limits import parse_many

from service import shops

DEFAULT_RATE_LIMIT = "600/minute"
# What counted calls meet while the shared store (Redis) cannot be reached: "refuse" (a 503
# problem with Retry-After: no call goes unlimited) or "memory" (each worker counts on its
# own until the store is back).
WHEN_STORE_DOWN = ("refuse", "memory")


def _setting(app: Flask, name: str, default: str | None = None) -> str | None:
    return app.config.get(name) or os.environ.get(name) or default


def storage_uri(app: Flask) -> str:
    return _setting(app, "REDIS_URL") or "memory://"


def _limited_key() -> str:
    """The limiter's bucket: the key's hash (not its row id, which repeats across databases
    that share one Redis)."""
    record = shops.request_key()
    return f"key:{record.key_hash[:32]}" if record is not None else "anonymous"


def _exempt() -> bool:
    """Only /v1 calls that carry a valid key are counted; preflights never are."""
    current = request._get_current_object()  # one proxy lookup instead of one per attribute
    return not current.path.startswith("/v1/") or current.method == "OPTIONS" or shops.current_shop() is None


def _limiter_only_for_counted_requests(app: Flask, limiter: Limiter) -> None:
    """Requests the limit exempts skip the limiter altogether: its check (which asks the
    request filter only after looking up the view and its limits), its response hook and
    its teardown were a tenth of an unkeyed request's cost. A counted request runs the check
    and, through ``after_this_request`` (registered first, so that a 429 gets them too), the
    limit headers, the limiter's response hook and its context reset: per request, so that
    the others pay for no hook at all. With another flask-limiter whose hooks are not
    found, its hooks stay, and the headers follow every counted request."""
    before = app.before_request_funcs.setdefault(None, [])
    after = app.after_request_funcs.setdefault(None, [])
    teardown = app.teardown_request_funcs.setdefault(None, [])
    check = limiter._check_request_limit
    inject = next((hook for hook in after if isinstance(hook, functools.partial) and hook.args == (limiter,)), None)
    release = next((hook for hook in teardown if getattr(hook, "__self__", None) is limiter), None)
    add_headers = _limit_headers(limiter)
    if check not in before or inject is None or release is None:
        app.after_request(lambda response: response if _exempt() else add_headers(response))
        return

    def after_counted_request(response):
        response = inject(add_headers(response))
        release()  # the limiter's per-request state, reset as its teardown would
        return response

    def check_counted_request():
        if not _exempt():
            after_this_request(after_counted_request)
            check()

    before[before.index(check)] = check_counted_request
    after.remove(inject)
    teardown.remove(release)


def _limit_headers(limiter: Limiter):
    """The X-RateLimit-* headers of a counted request, and Retry-After on its 429."""
    def add(response):
        current = limiter.current_limit
        if current is None:
            return response
        reset_at, remaining = current.window  # when the oldest counted call leaves the window
        response.headers["X-RateLimit-Limit"] = str(current.limit.amount)
        response.headers["X-RateLimit-Remaining"] = str(max(remaining, 0))
        response.headers["X-RateLimit-Reset"] = str(math.ceil(reset_at))
        if response.status_code == 429:
            response.headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
        return response

    return add


def init_app(app: Flask, api=None) -> None:
    """Call after service.shops.init_app: the limit is per key, so the key is checked first."""
    rate_limit = _setting(app, "FORMWISE_RATE_LIMIT", DEFAULT_RATE_LIMIT)
    when_down = _setting(app, "FORMWISE_RATE_LIMIT_WHEN_STORE_DOWN", "refuse")
    if when_down not in WHEN_STORE_DOWN:
        raise ValueError(f"FORMWISE_RATE_LIMIT_WHEN_STORE_DOWN must be one of {', '.join(WHEN_STORE_DOWN)}, "
                         f"not {when_down!r}")
    limit_text = " and ".join(str(item) for item in parse_many(rate_limit))  # a bad setting stops start-up
    limiter = Limiter(
        key_func=_limited_key,
        application_limits=[ApplicationLimit(
            rate_limit,
            exempt_when=_exempt,
            error_message=f"Too many calls with this API key (the limit is {limit_text}, over a moving window); "
            "wait for the number of seconds in Retry-After, then try again.",
        )],
        storage_uri=storage_uri(app),
        strategy="moving-window",
        headers_enabled=False,  # set by _limit_headers: Retry-After only on a 429
        key_prefix="formwise",
        in_memory_fallback_enabled=when_down == "memory",
    )
    limiter.init_app(app)
    limiter.request_filter(_exempt)
    _limiter_only_for_counted_requests(app, limiter)
    app.extensions["formwise_limiter"] = limiter
    if storage_uri(app) != "memory://":
        app.extensions["formwise_readiness_checks"]["rate_limits"] = lambda: _check_store(limiter)


def _check_store(limiter: Limiter) -> None:
    """Readiness: the shared rate-limit store answers."""
    if not limiter.storage.check():
        raise ConnectionError("the rate-limit store (REDIS_URL) does not answer")
