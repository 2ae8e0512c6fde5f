"""The HTTP face of formwise: a Flask app factory, blueprints, schemas and errors.

It translates HTTP to and from the engine in ``models/`` and owns nothing clinical."""

from __future__ import annotations

from inspect import iscoroutinefunction

from flask import Flask, request

from models.knowledge import load_knowledge_base
from models.recommender import Recommender
from service import settings as formwise_settings
from service.config import Config
from service.errors import ProblemApi, problem, register_fallback_handler

JSON_METHODS = ("POST", "PUT", "PATCH")
# Endpoints whose bodies may be larger than the single-answer limit (1 MiB).
LARGE_BODY_ENDPOINTS = {"recommendations.BatchRecommendations"}
# Paths whose POST/PUT bodies are not JSON (each module documents its own media types).
NON_JSON_BODY_PATHS: set[str] = set()


class FormwiseFlask(Flask):
    """Flask, less one per-request cost: whether a view or hook is an ``async def`` is
    asked once per function instead of on every call (fifteen times a request)."""

    MAX_REMEMBERED = 4096  # views and hooks are a fixed set; this only bounds odd callers

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._is_coroutine: dict = {}

    def ensure_sync(self, func):
        key = getattr(func, "__func__", func)  # a bound method: the function behind it
        try:
            is_coroutine = self._is_coroutine[key]
        except KeyError:
            is_coroutine = iscoroutinefunction(func)
            if len(self._is_coroutine) < self.MAX_REMEMBERED:
                self._is_coroutine[key] = is_coroutine
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)
        return self.async_to_sync(func) if is_coroutine else func


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app. ``test_config`` overrides settings (tests pass a dict)."""
    app = FormwiseFlask(__name__, static_folder=None)  # the widget serves its own script, filled in
    app.config.from_object(Config)
    if test_config:
        app.config.update(test_config)
    settings = formwise_settings.install(app)  # every setting, read once; a bad one stops here

    folder = settings["FORMWISE_KNOWLEDGE_BASE_DIR"]
    knowledge_base = load_knowledge_base(folder=folder) if folder else load_knowledge_base()
    app.extensions["formwise"] = app.config.get("RECOMMENDER") or Recommender(knowledge_base)
    app.extensions["formwise_readiness_checks"] = {}  # name -> callable that raises when not ready
    app.extensions["formwise_answer_hooks"] = []  # hook(answers, locale, preferences), see recommendations.recommend
    app.extensions["formwise_cost_hooks"] = []  # hook() -> products per recommendation, see cost_over_ceiling

    api = ProblemApi(app)
    app.extensions["formwise_api"] = api
    register_fallback_handler(app)

    @app.before_request
    def _limit_and_check_body():
        current = request._get_current_object()  # one proxy lookup instead of one per attribute
        if current.endpoint not in LARGE_BODY_ENDPOINTS:
            current.max_content_length = app.config["SINGLE_MAX_CONTENT_LENGTH"]
        if (
            current.method in JSON_METHODS
            and current.url_rule is not None  # unknown paths and methods answer 404 and 405 first
            and current.path.startswith("/v1/")
            and current.path not in NON_JSON_BODY_PATHS
            and not current.is_json
        ):
            return problem(
                415,
                "Unsupported Media Type",
                f"Send the body as application/json (got '{current.mimetype or 'no Content-Type'}').",
            )
        return None

    with app.app_context():  # schemas that follow the app's knowledge base document its forms
        _register_parts(app, api)
    return app


def _register_parts(app: Flask, api: ProblemApi) -> None:
    """Every part of the service, in one place. A part is a module with a smorest or Flask
    blueprint ``blp`` and/or an ``init_app(app, api)`` hook for what it needs at start-up
    (database, limits, metrics, logging)."""
    from service import (
        catalog,
        cds_auth,
        cds_hooks,
        db,
        deadline,
        docs,
        events,
        feedback,
        forms,
        handout,
        health,
        limits,
        observability,
        recommendations,
        shops,
        widget,
    )

    # Documented in /openapi.json (smorest blueprints).
    for part in (recommendations, forms, health, handout):
        api.register_blueprint(part.blp)
    # Plain Flask blueprints: the docs page and CDS Hooks (its own specification).
    for part in (docs, cds_hooks):
        app.register_blueprint(part.blp)
    # Parts with start-up needs, in order: the database first; the key check (shops) before
    # the per-key rate limit; observability after the parts that hook into requests, since its
    # WSGI layer wraps the app; the CDS client trust after observability has set up the JSON
    # log its start-up warning goes to (it adds no hook of its own).
    for part in (db, deadline, shops, limits, catalog, events, feedback, widget, observability, cds_auth, cds_hooks):
        part.init_app(app, api)
