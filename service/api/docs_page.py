"""GET /docs: Swagger UI on the same OpenAPI document as /openapi.json, its files served
from the installed ``swagger-ui-bundle-v2`` package (no CDN: it must work on a closed
network). flask-smorest's own Swagger UI page is not used: it starts Swagger UI with an
inline script, which the pages' Content-Security-Policy (``script-src 'self'``) refuses,
so the page here loads a small script of its own instead."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

blp = Blueprint("docs", __name__, template_folder="templates")
STATIC = Path(__file__).resolve().parent / "static"
# The Swagger UI files the page uses, and only those (the package holds source maps and others).
SWAGGER_UI_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})
ONE_DAY = 24 * 3600


@blp.get("/docs")
def docs():
    """The browsable API reference."""
    info = current_app.extensions["formwise_api"].spec.to_dict().get("info", {})
    return render_template("docs.html", info=info)


@blp.get("/docs/swagger-ui/<string:name>")
def swagger_ui_file(name: str):
    if name not in SWAGGER_UI_FILES:
        abort(404)
    return send_from_directory(swagger_ui_path, name, max_age=ONE_DAY)


@blp.get("/docs/start.js")
def start_script():
    return send_from_directory(STATIC, "docs-start.js", max_age=ONE_DAY)
