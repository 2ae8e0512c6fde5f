"""JSON responses serialised with orjson: answers are plain dicts built by the engine."""

from __future__ import annotations

import orjson
from flask import Response


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
