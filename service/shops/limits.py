"""Rate limits (flask-limiter), so that no caller, and no stranger holding a shop's public
key, can crowd out the others. Limits count profiles, not calls: a batch of 1,000 items costs
1,000, a single answer or any other /v1 call costs 1.

- Each key has its limit: ``FORMWISE_RATE_LIMIT`` for publishable keys (default 600 per
  minute) and ``FORMWISE_SECRET_RATE_LIMIT`` for secret keys (default 60,000 per minute: a
  shop's server scores its customers in batches).
- Calls from a browser with a publishable key are also limited per client address
  (``FORMWISE_CLIENT_RATE_LIMIT``, default 120 per minute), so one visitor, or a script
  that copied the key from the page, spends at most that much of the shop's limit.
- Calls without a key (open mode) are limited per client address
  (``FORMWISE_OPEN_RATE_LIMIT``, default 600 per minute; ``off`` behind a gateway that
  limits them itself).
- Events and feedback are limited per answer id (``FORMWISE_ANSWER_RATE_LIMIT``, default 30
  per hour): one answer cannot be the subject of a flood of reports.

The client address is the connecting peer's, or, behind ``FORMWISE_TRUSTED_PROXIES``
proxies, the one they forwarded (Werkzeug's ProxyFix, set up here).
Counts live in memory by default, which is per gunicorn worker; with ``REDIS_URL`` they live
in Redis, so each limit holds across all workers and hosts. A call over a limit gets a 429
problem with ``Retry-After``; a batch larger than a whole limit gets a 422 naming ``items``
(it could never pass)."""

from __future__ import annotations

import functools
import math
import time

import orjson
from flask import Flask, after_this_request, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter
from limits import parse_many
from werkzeug.middleware.proxy_fix import ProxyFix

from formwise.service.api.errors import field_problem, problem, unavailable_dependency
from formwise.service.settings import settings_of
from formwise.service.shops import keys as shops

OFF = "off"
BATCH_PATH = "/v1/recommendations/batch"
PER_ANSWER_PATHS = ("/v1/events", "/v1/feedback")


def storage_uri(app: Flask) -> str:
    return settings_of(app)["REDIS_URL"] or "memory://"


def _readable(limit: str) -> str:
    """'600/minute' as '600 per 1 minute'; a bad setting raises (and stops start-up)."""
    return " and ".join(str(item) for item in parse_many(limit))


# ---- who is counted, and how much a call costs ---------------------------------------------


def _key_kind() -> str | None:
    shop = shops.current_shop()
    if shop is None:
        return None
    record = shops.request_key()
    return record.kind if record is not None else None


def _key_bucket() -> str:
    """A key's bucket: its hash (not its row id, which repeats across databases that share
    one Redis)."""
    record = shops.request_key()
    return f"key:{record.key_hash[:32]}" if record is not None else "key:none"


def _client_bucket() -> str:
    return f"client:{request.remote_addr or 'unknown'}"


def _answer_bucket() -> str:
    return f"answer:{_body_answer_id() or 'none'}"


def _body() -> object:
    """The request's JSON document, read once and kept for the view's parser; None when the
    body is not JSON (the view reports it)."""
    if "formwise_json" not in g:
        try:
            g.formwise_json = orjson.loads(request.get_data(cache=True)) if request.is_json else None
        except orjson.JSONDecodeError:
            g.formwise_json = None
    return g.formwise_json


def _body_answer_id() -> str | None:
    document = _body()
    value = document.get("recommendation_id") if isinstance(document, dict) else None
    return value.lower() if isinstance(value, str) and len(value) <= 64 else None


def profiles_in_request() -> int:
    """What a call costs: the items of a batch (at least 1), else 1."""
    if request.path != BATCH_PATH:
        return 1
    document = _body()
    items = document.get("items") if isinstance(document, dict) else None
    return max(1, len(items)) if isinstance(items, list) else 1


def _not_keyed() -> bool:
    return shops.current_shop() is None


def _not_publishable() -> bool:
    return _key_kind() != "publishable"


def _not_about_one_answer() -> bool:
    return request.path not in PER_ANSWER_PATHS or _body_answer_id() is None


def _key_limit() -> str:
    config = current_app.extensions["formwise_limits"]
    return config["secret"] if _key_kind() == "secret" else config["publishable"]


def _applicable_limits() -> list[tuple[str, str]]:
    """(what, limit) of the profile-counting limits this request meets."""
    config = current_app.extensions["formwise_limits"]
    kind = _key_kind()
    if kind is None:
        return [] if config["open"] == OFF else [("calls without a key from one address", config["open"])]
    found = [(f"this {kind} key", config[kind])]
    if kind == "publishable":
        found.append(("calls with a publishable key from one address", config["client"]))
    return found


def batch_larger_than_a_limit():
    """A 422 problem naming ``items`` when the batch holds more profiles than a limit it meets
    allows in its whole window (it could never pass), else None."""
    cost = profiles_in_request()
    if cost == 1:
        return None
    for what, limit in _applicable_limits():
        smallest = min(item.amount for item in parse_many(limit))
        if cost > smallest:
            message = (f"This batch holds {cost} profiles; the limit for {what} is {_readable(limit)}, so send at "
                       f"most {smallest} items per call" + (" or use the secret key from a server."
                                                           if "secret" not in what else "."))
            return field_problem("items", message)
    return None


def _flask_limiter_skips() -> bool:
    """Calls flask-limiter does not see: outside /v1, preflights, and calls without a key
    other than events and feedback (their one limit, per address, is AddressLimit's)."""
    current = request._get_current_object()  # one proxy lookup instead of one per attribute
    if not current.path.startswith("/v1/") or current.method == "OPTIONS":
        return True
    return shops.current_shop() is None and current.path not in PER_ANSWER_PATHS


class LocalWindows:
    """Fixed-window counts in this worker's memory, with no background thread: the
    ``limits`` library's memory storage restarts an expiry thread every 10 ms while it is
    used, which slowed every request of the worker (measured: the scoring kernel ran at a
    third of its speed)."""

    MAX_KEYS = 100_000

    def __init__(self):
        self.counts: dict[tuple, tuple[float, int]] = {}

    def hit(self, item, key: str, cost: int) -> tuple[bool, float]:
        """(allowed, when the window ends); a refused call is not counted."""
        seconds = item.get_expiry()
        now = time.time()
        start = now - now % seconds
        window, used = self.counts.get((item.key_for(), key), (start, 0))
        if window != start:
            used = 0
        if used + cost > item.amount:
            return False, start + seconds
        if len(self.counts) >= self.MAX_KEYS:  # forget addresses whose window has passed
            self.counts = {name: value for name, value in self.counts.items() if value[0] + seconds > now}
        self.counts[(item.key_for(), key)] = (start, used + cost)
        return True, start + seconds


class SharedWindows:
    """Fixed-window counts in the shared store (Redis), through the ``limits`` library."""

    def __init__(self, storage):
        from limits.strategies import FixedWindowRateLimiter

        self.storage = storage
        self.strategy = FixedWindowRateLimiter(storage)

    def hit(self, item, key: str, cost: int) -> tuple[bool, float]:
        allowed = self.strategy.hit(item, "formwise", "open", key, cost=cost)
        return allowed, (time.time() if allowed else self.strategy.get_window_stats(item, "formwise", "open", key)[0])


class AddressLimit:
    """The limit for calls without a key, per client address, checked here rather than by
    flask-limiter: its per-request work (finding the view's limits, filtering, evaluating
    four of them) cost more than the rest of an unkeyed call, and an unkeyed call meets only
    this one limit. A fixed window: one counter per address and window, so a check costs the
    same whatever the limit (a moving window keeps one entry per call). In the shared store
    when there is one; while it is down this refuses (503) or counts in this worker's
    memory, as the other limits do."""

    def __init__(self, limit: str, limiter: Limiter, shared: bool, in_memory_fallback: bool):
        self.items = parse_many(limit)
        self.text = _readable(limit)
        self.counts = SharedWindows(limiter.storage) if shared else LocalWindows()
        self.fallback = LocalWindows() if shared and in_memory_fallback else None

    def refusal(self, address: str, cost: int):
        """None when the call may go on, else the 429 problem (with Retry-After)."""
        try:
            return self._hit(self.counts, address, cost)
        except Exception as error:
            if self.fallback is None or not isinstance(self.counts, SharedWindows) \
                    or not isinstance(error, self.counts.storage.base_exceptions):
                raise  # the store being down is answered 503 with Retry-After (formwise.service.api.errors)
            return self._hit(self.fallback, address, cost)

    def _hit(self, counts, address: str, cost: int):
        for item in self.items:
            allowed, reset_at = counts.hit(item, address, cost)
            if not allowed:
                wait = max(1, math.ceil(reset_at - time.time()))
                return problem(429, "Too Many Requests", f"Too many profiles from this address without an API key "
                               f"(the limit is {self.text}); wait for the number of seconds in Retry-After, then "
                               "try again.", headers={"Retry-After": str(wait), "X-RateLimit-Limit": str(item.amount),
                                                      "X-RateLimit-Remaining": "0",
                                                      "X-RateLimit-Reset": str(math.ceil(reset_at))})
        return None


def _before_counted_request(address_limit: AddressLimit | None):
    """What every /v1 call meets before flask-limiter's check: a batch larger than a whole
    limit (422), and for calls without a key the per-address limit. Returns a response to
    send instead of the call's, or None."""
    current = request._get_current_object()
    if not current.path.startswith("/v1/") or current.method == "OPTIONS":
        return None
    too_large = batch_larger_than_a_limit()
    if too_large is not None:
        return too_large
    if address_limit is not None and shops.current_shop() is None:
        return address_limit.refusal(current.remote_addr or "unknown", profiles_in_request())
    return None


def _limiter_only_for_counted_requests(app: Flask, limiter: Limiter, address_limit: AddressLimit | None) -> None:
    """Requests flask-limiter does not count skip it altogether: its check (which asks the
    request filter only after looking up the view and its limits), its response hook and
    its teardown. A counted request runs the check and, through ``after_this_request``
    (registered first, so that a 429 gets them too), the limit headers, the limiter's
    response hook and its context reset: per request, so that the others pay for no hook at
    all. With another flask-limiter whose hooks are not found, its hooks stay, and the
    headers follow every counted request."""
    before = app.before_request_funcs.setdefault(None, [])
    after = app.after_request_funcs.setdefault(None, [])
    teardown = app.teardown_request_funcs.setdefault(None, [])
    check = limiter._check_request_limit
    inject = next((hook for hook in after if isinstance(hook, functools.partial) and hook.args == (limiter,)), None)
    release = next((hook for hook in teardown if getattr(hook, "__self__", None) is limiter), None)
    add_headers = _limit_headers(limiter)
    if check not in before or inject is None or release is None:
        before.insert(before.index(check) if check in before else len(before),
                      lambda: _before_counted_request(address_limit))
        app.after_request(lambda response: response if _flask_limiter_skips() else add_headers(response))
        return

    def after_counted_request(response):
        response = inject(add_headers(response))
        release()  # the limiter's per-request state, reset as its teardown would
        return response

    def check_counted_request():
        refused = _before_counted_request(address_limit)
        if refused is not None or _flask_limiter_skips():
            return refused
        after_this_request(after_counted_request)
        check()
        return None

    before[before.index(check)] = check_counted_request
    after.remove(inject)
    teardown.remove(release)


def _limit_headers(limiter: Limiter):
    """The X-RateLimit-* headers of a counted request (the limit it met with the fewest calls
    left), and Retry-After on its 429."""
    def add(response):
        met = limiter.current_limits or ([limiter.current_limit] if limiter.current_limit else [])
        if not met:
            return response
        try:
            current = limiter.current_limit if response.status_code == 429 and limiter.current_limit else min(
                met, key=lambda item: item.remaining)
            reset_at, remaining = current.window  # when the oldest counted call leaves the window
        except Exception as error:  # the store went away after the call was counted: no headers
            if unavailable_dependency(error) is None:
                raise
            return response
        response.headers["X-RateLimit-Limit"] = str(current.limit.amount)
        response.headers["X-RateLimit-Remaining"] = str(max(remaining, 0))
        response.headers["X-RateLimit-Reset"] = str(math.ceil(reset_at))
        if response.status_code == 429:
            response.headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
        return response

    return add


def configured_limits(app: Flask) -> dict[str, str]:
    """Every limit, by who it counts (read and checked by formwise.service.settings)."""
    settings = settings_of(app)
    return {"publishable": settings["FORMWISE_RATE_LIMIT"], "secret": settings["FORMWISE_SECRET_RATE_LIMIT"],
            "client": settings["FORMWISE_CLIENT_RATE_LIMIT"], "open": settings["FORMWISE_OPEN_RATE_LIMIT"],
            "answer": settings["FORMWISE_ANSWER_RATE_LIMIT"]}


def init_app(app: Flask, api=None) -> None:
    """Call after formwise.service.shops.keys.init_app: the limits depend on the key, so it is checked first."""
    when_down = settings_of(app)["FORMWISE_RATE_LIMIT_WHEN_STORE_DOWN"]
    config = app.extensions["formwise_limits"] = configured_limits(app)
    proxies = settings_of(app)["FORMWISE_TRUSTED_PROXIES"]  # proxies that append to X-Forwarded-For
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    wait = "wait for the number of seconds in Retry-After, then try again."
    # Per address first: with the same window they are tried in this order, and the first
    # refusal stops the rest, so a stranger over their own limit spends none of the key's.
    # (Calls without a key meet AddressLimit before these.)
    application_limits = [
        ApplicationLimit(config["client"], key_function=_client_bucket, cost=profiles_in_request,
                         exempt_when=_not_publishable,
                         error_message=f"Too many profiles from this address with a publishable key (the limit is "
                                       f"{_readable(config['client'])}); " + wait),
    ]
    application_limits += [
        ApplicationLimit(_key_limit, key_function=_key_bucket, cost=profiles_in_request, exempt_when=_not_keyed,
                         error_message="Too many profiles with this API key (each batch item counts); " + wait),
        ApplicationLimit(config["answer"], key_function=_answer_bucket, exempt_when=_not_about_one_answer,
                         error_message=f"Too many events or reports about this answer (the limit is "
                                       f"{_readable(config['answer'])} per answer); " + wait),
    ]
    limiter = Limiter(
        key_func=_client_bucket,
        application_limits=application_limits,
        storage_uri=storage_uri(app),
        strategy="moving-window",
        headers_enabled=False,  # set by _limit_headers: Retry-After only on a 429
        key_prefix="formwise",
        in_memory_fallback_enabled=when_down == "memory",
        fail_on_first_breach=True,
    )
    limiter.init_app(app)
    limiter.request_filter(_flask_limiter_skips)
    address_limit = (None if config["open"] == OFF
                     else AddressLimit(config["open"], limiter, shared=storage_uri(app) != "memory://",
                                       in_memory_fallback=when_down == "memory"))
    _limiter_only_for_counted_requests(app, limiter, address_limit)
    app.extensions["formwise_limiter"] = limiter
    if storage_uri(app) != "memory://":
        app.extensions["formwise_readiness_checks"]["rate_limits"] = lambda: _check_store(limiter)


def _check_store(limiter: Limiter) -> None:
    """Readiness: the shared rate-limit store answers."""
    if not limiter.storage.check():
        raise ConnectionError("the rate-limit store (REDIS_URL) does not answer")
