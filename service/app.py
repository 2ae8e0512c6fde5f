"""The app factory: the one place that builds the Flask app and registers every part of the
service, for ``formwise serve`` (through gunicorn), the tests and the ``formwise`` commands.

It translates HTTP to and from the engine in ``formwise.models`` and owns nothing clinical."""

from __future__ import annotations

import importlib
import sys
from inspect import iscoroutinefunction
from pathlib import Path

from flask import Flask, request
from flask_smorest import Blueprint as SmorestBlueprint

from formwise.service import settings as formwise_settings
from formwise.service.api.errors import ProblemApi, problem, register_fallback_handler
from formwise.service.config import Config

JSON_METHODS = ("POST", "PUT", "PATCH")
# Every part of the service, in start-up order. A part is a module with a blueprint ``blp``
# (a flask-smorest one is documented in /openapi.json), an ``init_app(app, api)`` for what it
# needs at start-up, or both. A part may also name ``LARGE_BODY_ENDPOINTS`` (endpoints whose
# bodies may exceed the single-answer limit) and ``NON_JSON_BODY_PATHS`` (bodies it checks
# itself). Blueprints are registered first, in this order, then each ``init_app`` runs.
PARTS = (
    "formwise.service.store.database",  # first: the parts below read and write it
    "formwise.service.api.deadline",
    "formwise.service.shops.keys",  # the key check before the per-key rate limit
    "formwise.service.shops.limits",
    "formwise.service.api.recommendations",
    "formwise.service.api.forms",
    "formwise.service.api.health",
    "formwise.service.api.handout",
    "formwise.service.api.docs_page",
    "formwise.service.shops.experiments",  # before the catalog: a control answer lists its default product
    "formwise.service.shops.catalog",
    "formwise.service.shops.events",
    "formwise.service.shops.reports",
    "formwise.service.shops.dashboard",
    "formwise.service.api.feedback",  # after the database: the answer-id secret may live there
    "formwise.service.shops.widget",
    "formwise.service.ops.observability",  # after the parts that hook into requests: its WSGI layer wraps the app
    "formwise.service.clinical.auth",  # after observability has set up the log its start-up warning goes to
    "formwise.service.clinical.hooks",
)
# What the ``formwise`` commands that manage shops and the database need: no engine, no API.
DATABASE_PARTS = ("formwise.service.store.database",)


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


def instance_folder() -> Path:
    """Where the embedded SQLite database lives when FORMWISE_DATA_DIR is not set, the same for
    the server and every command: ``instance/`` in a checkout (beside pyproject.toml), else
    ``<prefix>/var/formwise-instance`` (Flask's rule for an installed package)."""
    project = Path(__file__).resolve().parents[1]
    if (project / "pyproject.toml").is_file():
        return project / "instance"
    return Path(sys.prefix) / "var" / "formwise-instance"


def create_app(test_config: dict | None = None, *, parts: tuple[str, ...] = PARTS) -> Flask:
    """Build the app. ``test_config`` overrides settings (tests pass a dict); ``parts`` is
    every part, or DATABASE_PARTS (or none) for the commands that only need the database:
    they skip loading the knowledge base and the model."""
    app = FormwiseFlask(__name__, static_folder=None, instance_path=str(instance_folder()))
    app.config.from_object(Config)
    if test_config:
        app.config.update(test_config)
    settings = formwise_settings.install(app)  # every setting, read once; a bad one stops here
    app.extensions["formwise_readiness_checks"] = {}  # name -> callable that raises when not ready
    app.extensions["formwise_answer_hooks"] = []  # hook(answers, locale, preferences), see recommendations.recommend
    app.extensions["formwise_cost_hooks"] = []  # hook() -> products per recommendation, see cost_over_ceiling
    modules = [importlib.import_module(name) for name in parts]
    if not set(parts) - set(DATABASE_PARTS):  # no part that answers: no engine to load
        for module in modules:
            module.init_app(app, None)
        return app

    from formwise.models.knowledge.loading import load_knowledge_base
    from formwise.models.recommender import Recommender
    from formwise.service.ops.observability import configure_logging

    # the log first: loading the engine may compile its scoring loop, and says so there
    configure_logging(settings["FORMWISE_LOG_LEVEL"], settings["FORMWISE_LOG_FLUSH_SECONDS"])
    folder = settings["FORMWISE_KNOWLEDGE_BASE_DIR"]
    knowledge_base = load_knowledge_base(folder=folder) if folder else load_knowledge_base()
    app.extensions["formwise"] = app.config.get("RECOMMENDER") or Recommender(knowledge_base)
    api = ProblemApi(app)
    app.extensions["formwise_api"] = api
    register_fallback_handler(app)

    large_body_endpoints = frozenset(name for module in modules for name in getattr(module, "LARGE_BODY_ENDPOINTS", ()))
    non_json_paths = frozenset(path for module in modules for path in getattr(module, "NON_JSON_BODY_PATHS", ()))

    @app.before_request
    def _limit_and_check_body():
        current = request._get_current_object()  # one proxy lookup instead of one per attribute
        if current.endpoint not in large_body_endpoints:
            current.max_content_length = app.config["SINGLE_MAX_CONTENT_LENGTH"]
        if (
            current.method in JSON_METHODS
            and current.url_rule is not None  # unknown paths and methods answer 404 and 405 first
            and current.path.startswith("/v1/")
            and current.path not in non_json_paths
            and not current.is_json
        ):
            return problem(
                415,
                "Unsupported Media Type",
                f"Send the body as application/json (got '{current.mimetype or 'no Content-Type'}').",
            )
        return None

    with app.app_context():  # schemas that follow the app's knowledge base document its forms
        for module in modules:
            blueprint = getattr(module, "blp", None)
            if isinstance(blueprint, SmorestBlueprint):
                api.register_blueprint(blueprint)
            elif blueprint is not None:
                app.register_blueprint(blueprint)
        for module in modules:
            if hasattr(module, "init_app"):
                module.init_app(app, api)
    return app
