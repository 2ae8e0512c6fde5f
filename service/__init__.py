"""The HTTP face of formwise: a Flask app factory, blueprints, schemas and errors.

It translates HTTP to and from the engine in ``models/`` and owns nothing clinical."""

from __future__ import annotations

from flask import Flask, request

from models.knowledge import load_knowledge_base
from models.recommender import Recommender
from service.config import Config, from_environment
from service.errors import ProblemApi, problem, register_fallback_handler

JSON_METHODS = ("POST", "PUT", "PATCH")


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app. ``test_config`` overrides settings (tests pass a dict)."""
    app = Flask(__name__)
    app.config.from_object(Config)
    app.config.update(from_environment())
    if test_config:
        app.config.update(test_config)

    knowledge_base = load_knowledge_base(folder=app.config["KNOWLEDGE_BASE_DIR"]) if app.config[
        "KNOWLEDGE_BASE_DIR"] else load_knowledge_base()
    app.extensions["formwise"] = app.config.get("RECOMMENDER") or Recommender(knowledge_base)

    api = ProblemApi(app)
    app.extensions["formwise_api"] = api
    register_fallback_handler(app)

    from service import docs, forms, health, recommendations

    api.register_blueprint(recommendations.blp)
    api.register_blueprint(forms.blp)
    api.register_blueprint(health.blp)
    app.register_blueprint(docs.blp)

    @app.before_request
    def _limit_and_check_body():
        if request.endpoint != "recommendations.BatchRecommendations":
            request.max_content_length = app.config["SINGLE_MAX_CONTENT_LENGTH"]
        if request.method in JSON_METHODS and request.path.startswith("/v1/") and not request.is_json:
            return problem(
                415,
                "Unsupported Media Type",
                f"Send the body as application/json (got '{request.mimetype or 'no Content-Type'}').",
            )
        return None

    return app
