"""The shop dashboard: ``GET /dashboard``, a page the service serves that draws the shop's
conversion figures (GET /v1/reports/conversions) over time and by form and product, with
Chart.js 2.9.3 vendored as a static file (``static/vendor``, MIT; taken from the
django-chartjs 2.3.0 wheel on PyPI, ``chartjs/static/js/Chart.min.js``, sha256 478a6a70...;
no CDN: it must work on a closed network).

Signing in: the page holds a short-lived dashboard token, never the secret key. The token
comes from ``formwise shops dashboard NAME`` (a link whose ``#token=`` part never reaches a
server log) or from the page's sign-in form, which posts the secret key once to
``POST /dashboard/session``. The token is an HMAC over the shop and the expiry with a secret
kept in the database, and it opens only the shop's reports (``X-Dashboard-Token``)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, render_template, request, send_from_directory

from formwise.service.api.errors import field_problem, problem
from formwise.service.api.responses import json_response
from formwise.service.shops.keys import hash_key
from formwise.service.store import queries as storage

blp = Blueprint("dashboard", __name__, template_folder="templates")
STATIC = Path(__file__).resolve().parent / "static"
DASHBOARD_FILES = frozenset({"dashboard.js", "dashboard.css", "vendor/chart-2.9.3.min.js"})
TOKEN_SECRET_NAME = "dashboard-token"
DEFAULT_TOKEN_HOURS = 8
MAX_TOKEN_HOURS = 24 * 7
ONE_DAY = 24 * 3600


@dataclass(frozen=True)
class DashboardGrant:
    shop_id: int
    expires_at: int  # unix seconds


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue_token(shop_id: int, hours: float = DEFAULT_TOKEN_HOURS, now: float | None = None) -> tuple[str, int]:
    """A token opening one shop's reports until ``now + hours``: (token, expiry in unix s)."""
    if not 0 < hours <= MAX_TOKEN_HOURS:
        raise ValueError(f"A dashboard link lasts more than 0 and at most {MAX_TOKEN_HOURS} hours.")
    expires = int((time.time() if now is None else now) + hours * 3600)
    payload = f"{shop_id}.{expires}"
    return f"{payload}.{_signature(storage.app_secret(TOKEN_SECRET_NAME), payload)}", expires


def read_token(token: str, now: float | None = None) -> DashboardGrant | None:
    """The grant a token carries, or None when it is malformed, forged or expired."""
    parts = token.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts[:2]):
        return None
    payload = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(parts[2], _signature(storage.app_secret(TOKEN_SECRET_NAME), payload)):
        return None
    grant = DashboardGrant(int(parts[0]), int(parts[1]))
    return grant if grant.expires_at > (time.time() if now is None else now) else None


@blp.get("/dashboard")
def dashboard():
    """The page; it signs in with a token from the link's fragment or the sign-in form."""
    return render_template("dashboard.html")


@blp.get("/dashboard/<path:name>")
def dashboard_file(name: str):
    if name not in DASHBOARD_FILES:
        return problem(404, "Not Found", "No such file.")
    return send_from_directory(STATIC, name, max_age=ONE_DAY)


@blp.post("/dashboard/session")
def sign_in():
    """The secret key, posted once from the sign-in form, for a dashboard token."""
    body = request.get_json(silent=True)
    key = body.get("secret_key") if isinstance(body, dict) else None
    if not isinstance(key, str) or not key.startswith("sk_"):
        return field_problem("secret_key", "Send the shop's secret key (it starts with sk_) as JSON.")
    record = storage.find_key(hash_key(key))
    if record is None or record.revoked or record.kind != "secret" or record.expired(dt.datetime.now(dt.UTC)):
        return problem(401, "Unauthorized", "This secret key is not known, or no longer valid.", slug="api-key")
    token, expires = issue_token(record.shop_id)
    return json_response({"token": token, "expires_at": expires, "shop": record.shop_name})
