"""Shops and their API keys, who may call /v1, and CORS per shop.

Each shop has a publishable key (``pk_...``, for its web pages, bound to the shop's
registered origins) and a secret key (``sk_...``, for server-to-server calls such as
catalog uploads and purchase events). A key is shown once, when it is made, and stored
only as its sha256.

With ``FORMWISE_REQUIRE_API_KEY=1`` (production) every /v1 call needs ``X-API-Key``;
without it (the embedded default) the API is open for local use, but a key that is sent
is always checked, and the shop-only endpoints (catalog, events) always need one. A
browser's CORS preflight carries no key, so it is answered for any origin some shop has
registered; the response to the real call then allows only the key's own origins."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, g, request

from formwise.service.api.errors import problem
from formwise.service.settings import settings_of
from formwise.service.store import queries as storage

KEY_HEADER = "X-API-Key"
DASHBOARD_TOKEN_HEADER = "X-Dashboard-Token"
DASHBOARD_KIND = "dashboard"  # ShopIdentity.key_kind of a request signed in with a dashboard token
REPORTS_PATH = "/v1/reports/"
REQUIRE_KEY_SETTING = "FORMWISE_REQUIRE_API_KEY"
KEY_PREFIXES = {"publishable": "pk_", "secret": "sk_"}
KEY_RANDOM_BYTES = 32
# How much of a key ``shops list`` shows and ``shops revoke-key`` accepts to name it.
DISPLAY_PREFIX_LENGTH = 11
PREFLIGHT_MAX_AGE_SECONDS = 600
# How fresh a key's last-used time is kept: a write per key an hour, not one per request.
LAST_USED_RESOLUTION = dt.timedelta(hours=1)
ALLOWED_METHODS = "GET, POST"
ALLOWED_HEADERS = f"Content-Type, {KEY_HEADER}, X-Formwise-Session"  # the widget's visit token (experiments)
EXPOSED_HEADERS = "Content-Language, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
_NO_KEY = object()


@dataclass(frozen=True)
class ShopIdentity:
    """The shop a request speaks for, as answer hooks and endpoints see it (``g.shop``)."""

    id: int
    name: str
    key_kind: str


# ---- keys -------------------------------------------------------------------------------


def generate_key(kind: str) -> str:
    return KEY_PREFIXES[kind] + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LENGTH]


def _key_row(kind: str) -> tuple[str, tuple[str, str, str]]:
    key = generate_key(kind)
    return key, (kind, display_prefix(key), hash_key(key))


def normalize_origin(value: str) -> str:
    """``https://Shop.example:443/`` -> ``https://shop.example``: the form a browser sends in
    its Origin header. Raises ValueError naming what is wrong."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not an origin: write it as https://shop.example (scheme and host).")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"'{value}' is not an origin: give only scheme, host and port, without a path.")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"'{value}' has an invalid port.") from None
    default_port = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def create_shop(name: str, origins: list[str], actor: str = "cli") -> dict:
    """A new shop with its origins and a fresh key pair; the keys are returned once here
    and never again. Raises ValueError for a bad name or origin, or a name in use."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise ValueError("The shop name must be 1 to 100 characters.")
    if not origins:
        raise ValueError("Give at least one origin (--origin https://shop.example).")
    normalized = [normalize_origin(origin) for origin in origins]
    publishable_key, publishable_row = _key_row("publishable")
    secret_key, secret_row = _key_row("secret")
    shop_id = storage.add_shop(name, normalized, [publishable_row, secret_row])
    storage.record_audit("shop.created", actor, name, {"shop_id": shop_id, "origins": normalized,
                                                       "keys": [publishable_row[1], secret_row[1]]})
    return {"shop_id": shop_id, "name": name, "origins": normalized,
            "publishable_key": publishable_key, "secret_key": secret_key}


def issue_key(shop_id: int, kind: str, name: str | None = None, expires_at: dt.datetime | None = None) -> str:
    """A new key of this kind for the shop, returned once."""
    key, (kind, prefix, key_hash) = _key_row(kind)
    storage.add_key(shop_id, kind, prefix, key_hash, name=name, expires_at=expires_at)
    return key


def create_key(shop_name: str, kind: str, name: str | None = None, expires_at: dt.datetime | None = None,
               actor: str = "cli") -> str:
    """One more active key of this kind (a shop may have several: one per server or site)."""
    _check_key_options(kind, name, expires_at)
    shop_id = storage.shop_id_by_name(shop_name)
    key = issue_key(shop_id, kind, name, expires_at)
    storage.record_audit("key.created", actor, shop_name, {
        "kind": kind, "prefix": display_prefix(key), "name": name,
        "expires_at": None if expires_at is None else expires_at.isoformat()})
    return key


def rotate_key(shop_name: str, kind: str, keep_old_until: dt.datetime, name: str | None = None,
               actor: str = "cli") -> tuple[str, list[str]]:
    """A new key of this kind; the shop's other keys of that kind keep working until
    ``keep_old_until`` (pages cached with them go on working) and not after. Returns the new
    key (shown once) and the prefixes of the keys that now expire."""
    _check_key_options(kind, name, None)
    now = dt.datetime.now(dt.UTC)
    if keep_old_until.tzinfo is None:
        raise ValueError("Give the moment the old keys stop with its time zone (UTC is assumed by the command).")
    if keep_old_until < now:
        raise ValueError(f"The old keys cannot stop in the past ({keep_old_until.isoformat()}); "
                         "to stop a key at once, use revoke-key.")
    shop_id = storage.shop_id_by_name(shop_name)
    key = issue_key(shop_id, kind, name)
    expiring = storage.expire_keys(shop_id, kind, keep_old_until, keep=hash_key(key))
    storage.record_audit("key.rotated", actor, shop_name, {
        "kind": kind, "new": display_prefix(key), "expiring": expiring, "until": keep_old_until.isoformat()})
    return key, expiring


def rename_shop(old_name: str, new_name: str, actor: str = "cli") -> None:
    new_name = new_name.strip()
    if not 1 <= len(new_name) <= 100:
        raise ValueError("The shop name must be 1 to 100 characters.")
    shop_id = storage.rename_shop(old_name, new_name)
    storage.record_audit("shop.renamed", actor, new_name, {"shop_id": shop_id, "from": old_name})


def delete_shop(name: str, actor: str = "cli") -> dict[str, int]:
    """Deletes the shop and everything it stored (keys, origins, catalog, answers, events);
    returns the rows deleted per table. The audit log keeps that it happened."""
    counted = storage.delete_shop(name)
    storage.record_audit("shop.deleted", actor, name, {"rows": counted})
    return counted


def _check_key_options(kind: str, name: str | None, expires_at: dt.datetime | None) -> None:
    if kind not in KEY_PREFIXES:
        raise ValueError(f"The kind must be one of: {', '.join(KEY_PREFIXES)}.")
    if name is not None and not 1 <= len(name.strip()) <= 100:
        raise ValueError("A key's name must be 1 to 100 characters.")
    if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
        raise ValueError(f"The expiry {expires_at.isoformat()} is not in the future.")


def revoke_key(key_or_prefix: str, replace: bool = False, actor: str = "cli") -> tuple[storage.KeyRecord, str | None]:
    """Revokes a key given whole or by the prefix ``shops list`` shows; with ``replace`` a
    new key of the same kind is issued to the same shop and returned."""
    record = storage.revoke_key(key_hash=hash_key(key_or_prefix), prefix=key_or_prefix)
    new_key = issue_key(record.shop_id, record.kind) if replace else None
    storage.record_audit("key.revoked", actor, record.shop_name, {
        "kind": record.kind, "prefix": record.prefix, "replaced_by": display_prefix(new_key) if new_key else None})
    return record, new_key


# ---- requests ---------------------------------------------------------------------------


def key_required(app: Flask) -> bool:
    """FORMWISE_REQUIRE_API_KEY, as read at start-up."""
    return settings_of(app)[REQUIRE_KEY_SETTING]


def request_key() -> storage.KeyRecord | None:
    """The stored key the request's X-API-Key names (revoked ones too), looked up once per
    request; None when the header is absent or the key unknown."""
    cached = g.get("_formwise_key", _NO_KEY)
    if cached is not _NO_KEY:
        return cached
    sent = request.headers.get(KEY_HEADER)
    record = None
    if sent:
        digest = hash_key(sent)
        record = storage.find_key(digest)
        if record is not None and not hmac.compare_digest(record.key_hash, digest):
            record = None
    g._formwise_key = record
    return record


def current_shop() -> ShopIdentity | None:
    """The shop whose valid key this request carries, or None (open use)."""
    return g.get("shop")


def _unauthorized(detail: str):
    return problem(401, "Unauthorized", detail, slug="api-key",
                   headers={"WWW-Authenticate": f'ApiKey header="{KEY_HEADER}"'})


def _forbidden(detail: str):
    return problem(403, "Forbidden", detail, slug="api-key-not-allowed")


def _is_preflight(current: Request) -> bool:
    return (current.method == "OPTIONS" and "Origin" in current.headers
            and "Access-Control-Request-Method" in current.headers)


def answer_preflight():
    """A browser asks whether a cross-origin call may be made; it sends no key, so any origin
    some shop has registered may proceed (the real call is checked against its key)."""
    current = request._get_current_object()  # one proxy lookup instead of one per attribute
    if not (current.path.startswith("/v1/") and _is_preflight(current)):
        return None
    origin = current.headers["Origin"]
    if not storage.origin_registered(origin):
        return _forbidden(f"The origin {origin} is not registered for any shop; "
                          "add it with `formwise shops add-origin SHOP ORIGIN`.")
    response = Response(status=204)
    response.headers.update({
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
        "Vary": "Origin",
    })
    return response


def authenticate():
    """Checks the key of every /v1 call and sets ``g.shop``; answers 401/403 problems."""
    current = request._get_current_object()  # one proxy lookup instead of one per attribute
    state = g._get_current_object()
    state.shop = None
    if not current.path.startswith("/v1/"):
        return None
    sent = current.headers.get(KEY_HEADER)
    if sent is None and DASHBOARD_TOKEN_HEADER in current.headers:
        return _dashboard_sign_in(current, state)
    if sent is None:
        if key_required(current_app):
            return _unauthorized(f"Send your shop's API key in the {KEY_HEADER} header.")
        return None
    record = request_key()
    if record is None:
        return _unauthorized(f"The {KEY_HEADER} key is not known.")
    if record.revoked:
        return _unauthorized(f"The {KEY_HEADER} key {record.prefix}... has been revoked.")
    now = dt.datetime.now(dt.UTC)
    if record.expired(now):
        return _unauthorized(f"The {KEY_HEADER} key {record.prefix}... expired at {record.expires_at.isoformat()}.")
    if record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION:
        storage.touch_key(record.key_id, now)  # at most one write a key an hour (each worker reads it back)
    origin = current.headers.get("Origin")
    if record.kind == "publishable":
        if origin is None:
            return _forbidden("A publishable key works only from the shop's own web pages (the browser sends "
                              "their Origin); from a server, use the secret key.")
        if origin not in record.origins:
            return _forbidden(f"The origin {origin} is not registered for this key's shop; "
                              "add it with `formwise shops add-origin SHOP ORIGIN`.")
    elif origin is not None:
        return _forbidden("A secret key is for server-to-server calls only and must never reach a browser; "
                          "use the publishable key in web pages.")
    state.shop = ShopIdentity(id=record.shop_id, name=record.shop_name, key_kind=record.kind)
    return None


def _dashboard_sign_in(current: Request, state):
    """A dashboard token (formwise.service.shops.dashboard) opens the shop's reports, and only them."""
    from formwise.service.shops.dashboard import read_token

    if current.method != "GET" or not current.path.startswith(REPORTS_PATH):
        return _forbidden(f"A dashboard token opens only GET {REPORTS_PATH}...; send an API key for the rest.")
    grant = read_token(current.headers[DASHBOARD_TOKEN_HEADER])
    name = None if grant is None else storage.shop_name(grant.shop_id)
    if name is None:
        return _unauthorized("The dashboard link has expired or is not valid: sign in again, or ask for a new "
                             "link with `formwise shops dashboard SHOP`.")
    state.shop = ShopIdentity(id=grant.shop_id, name=name, key_kind=DASHBOARD_KIND)
    return None


def require_shop(kind: str | None = None):
    """For endpoints that belong to a shop: a problem unless the request carries a valid key
    (of ``kind`` when given), else None."""
    shop = current_shop()
    if shop is None:
        return _unauthorized(f"This endpoint belongs to a shop: send its API key in the {KEY_HEADER} header.")
    if kind is not None and shop.key_kind != kind and not (kind == "secret" and shop.key_kind == DASHBOARD_KIND):
        return _forbidden(f"This endpoint needs the shop's {kind} key (it starts with {KEY_PREFIXES[kind]}).")
    return None


def add_cors_headers(response):
    """Allow a browser to read the answer only from the key's registered origins; error
    answers are readable from any registered origin, so a shop can see what went wrong."""
    current = request._get_current_object()  # one proxy lookup instead of one per attribute
    if not current.path.startswith("/v1/") or _is_preflight(current):
        return response
    if any(name.lower() == "vary" for name, _ in response.headers):  # `in` raises and catches a KeyError
        response.vary.add("Origin")
    else:
        response.headers.add("Vary", "Origin")  # the common case, without parsing a header set
    origin = current.headers.get("Origin")
    if origin is None:
        return response
    record = g.get("_formwise_key")
    allowed = (
        record is not None and not record.revoked and not record.expired(dt.datetime.now(dt.UTC))
        and record.kind == "publishable" and origin in record.origins
    ) or (response.status_code >= 400 and storage.origin_registered(origin))
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


SECURITY_SCHEME = "ApiKey"
# For the endpoints that always belong to a shop: @blp.doc(security=SHOP_KEY_SECURITY).
SHOP_KEY_SECURITY = [{SECURITY_SCHEME: []}]


def init_app(app: Flask, api=None) -> None:
    """Preflight first, then the key check; runs before the rate limiter (formwise.service.shops.limits),
    which counts per key."""
    if api is not None:
        api.spec.components.security_scheme(SECURITY_SCHEME, {
            "type": "apiKey", "in": "header", "name": KEY_HEADER,
            "description": "A shop's key: publishable (pk_...) from its web pages, secret (sk_...) from its server. "
            "Needed by every /v1 call when the server sets FORMWISE_REQUIRE_API_KEY=1.",
        })
    app.before_request(answer_preflight)
    app.before_request(authenticate)
    app.after_request(add_cors_headers)
