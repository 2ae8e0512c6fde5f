"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from formwise.service.api.answer_schemas import HealthSchema
from formwise.service.api.parsing import Blueprint
from formwise.service.api.responses import json_response

blp = Blueprint("health", __name__, url_prefix="/health", description="Liveness and readiness.")


@blp.route("/live")
class Live(MethodView):
    @blp.alt_response(200, schema=HealthSchema, success=True)
    def get(self):
        """The process is up."""
        return json_response({"status": "ok"})


@blp.route("/ready")
class Ready(MethodView):
    @blp.alt_response(200, schema=HealthSchema, success=True)
    @blp.alt_response(503, schema=HealthSchema, description="Not ready; checks say which part failed.")
    def get(self):
        """The engine can answer: the knowledge base and the model are loaded and score a probe."""
        checks = {}
        recommender = current_app.extensions.get("formwise")
        try:
            answer = recommender.recommend([{"age": 40}], limit=1)[0]
            checks["engine"] = "ok" if answer["caveats"] else "no caveats on a probe answer"
        except Exception as error:
            checks["engine"] = f"failed: {type(error).__name__}"
        for name, check in current_app.extensions.get("formwise_readiness_checks", {}).items():
            try:
                check()
                checks[name] = "ok"
            except Exception as error:
                checks[name] = f"failed: {type(error).__name__}"
        ready = all(value == "ok" for value in checks.values())
        body = {"status": "ok" if ready else "unavailable", "checks": checks}
        if recommender is not None:
            body["knowledge_base_version"] = recommender.version
            body["model_version"] = recommender.model_version
        return json_response(body, status=200 if ready else 503)
