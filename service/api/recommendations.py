"""POST /v1/recommendations and its batch twin: validate, call the one engine, answer."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask.views import MethodView

from formwise.models.knowledge import vocabulary as vocab
from formwise.service.api import deadline
from formwise.service.api.answer_schemas import BatchResponseSchema, RecommendationResponseSchema
from formwise.service.api.errors import problem_body, problem_from_body, validation_problem_body
from formwise.service.api.parsing import Blueprint
from formwise.service.api.responses import json_response
from formwise.service.api.schemas import BatchRequestSchema, RecommendationRequestSchema, item_id_of, load_batch_item
from formwise.service.ops.observability import record_batch_rows
from formwise.service.settings import setting

blp = Blueprint("recommendations", __name__, url_prefix="/v1", description="Ranked magnesium forms for a profile.")
# The batch endpoint may take bodies up to MAX_CONTENT_LENGTH (8 MiB); the others 1 MiB.
LARGE_BODY_ENDPOINTS = ("recommendations.BatchRecommendations",)
NO_PREFERENCES: dict = {}  # shared by the profiles that set none; hooks only read it


def recommend(profiles: list[dict], options: dict) -> tuple[list[dict], str]:
    """Answers with fresh recommendation ids, and the locale they are written in.

    Then every registered answer hook sees the answers and each profile's ``preferences``
    (forms to avoid, units a day) with its ``goals`` (what the person wants, for a shop's
    experiment), never its health fields (conditions, medicines, kidney function, age): parts such as attribution, shop
    catalogs and metrics add to or record them without touching this module. A hook is
    ``hook(answers, locale, preferences)`` in ``app.extensions["formwise_answer_hooks"]``."""
    locale = vocab.resolve_locale(options["locale"])
    extensions = current_app.extensions  # one proxy lookup for both
    recommender = extensions["formwise"]
    answers = recommender.recommend(profiles, limit=options["limit"], locale=locale, explain=options["explain"],
                                    schedule=options.get("schedule"), waking_hours=options.get("waking_hours"))
    mint = extensions["formwise_answer_ids"].mint  # signed: the id names the forms it recommended
    answers = [{"recommendation_id": mint([item["form"] for item in answer["recommendations"]]), **answer}
               for answer in answers]
    hooks = extensions.get("formwise_answer_hooks", ())
    if hooks:
        preferences = [{**(profile.get("preferences") or NO_PREFERENCES), "goals": profile.get("goals", ())}
                       for profile in profiles]
        for hook in hooks:
            hook(answers, locale, preferences)
    return answers, locale


@blp.route("/recommendations")
class Recommendations(MethodView):
    @blp.arguments(RecommendationRequestSchema())
    @blp.alt_response(200, schema=RecommendationResponseSchema, success=True,
                      description="Ranked forms, exclusions, caveats and interactions.")
    def post(self, body):
        """Rank the forms for one profile.

        Hard safety rules (kidney function, age, gut conditions, avoided forms, upper
        limits) are applied after scoring; every answer carries consult_clinician."""
        (answer,), locale = recommend([body["profile"]], body["options"])
        return json_response(answer, headers={"Content-Language": locale})


def cost_over_ceiling(items: int, limit: int):
    """A 413 problem when a batch would cost more than FORMWISE_MAX_REQUEST_COST work units,
    checked before any work: items x limit x (1 + the products each recommendation can list,
    from the answer-cost hooks, e.g. a shop's catalog). None when it is within the ceiling."""
    ceiling = setting("FORMWISE_MAX_REQUEST_COST")
    listed = max((hook() for hook in current_app.extensions["formwise_cost_hooks"]), default=0)
    units = items * limit * (1 + listed)
    if units <= ceiling:
        return None
    detail = (f"This batch would cost {units:,} work units ({items} items x limit {limit} x {1 + listed} for each "
              f"recommendation and its products); the ceiling is {ceiling:,}. Send fewer items or a smaller limit.")
    return problem_from_body(problem_body(413, "Content Too Large", detail, [
        {"field": "items", "message": f"At most {max(1, ceiling // (limit * (1 + listed)))} items with this limit."},
        {"field": "options.limit", "message": f"At most {max(1, ceiling // (items * (1 + listed)))} with this "
                                              "many items."}], slug="request-cost"))


@blp.route("/recommendations/batch")
class BatchRecommendations(MethodView):
    @blp.arguments(BatchRequestSchema())
    @blp.alt_response(200, schema=BatchResponseSchema, success=True,
                      description="One result per item, in input order: output or error.")
    def post(self, body):
        """Rank the forms for up to 1,000 profiles in one call.

        Each item is validated on its own: a bad item gets an ``error`` (a problem
        object) and the others are still answered, in the same order. All valid
        profiles are scored together by the same engine as the single endpoint."""
        too_costly = cost_over_ceiling(len(body["items"]), body["options"]["limit"])
        if too_costly is not None:
            return too_costly
        deadline.start(setting("FORMWISE_REQUEST_DEADLINE_SECONDS"))
        results: list[dict] = []
        valid_profiles, valid_positions = [], []
        for position, item in enumerate(body["items"]):
            if position % 64 == 63:
                deadline.check()
            item_id = item_id_of(item)
            try:
                profile = load_batch_item(item)
            except ma.ValidationError as error:
                results.append({"id": item_id, "output": None, "error": validation_problem_body(error.messages)})
                continue
            results.append({"id": item_id, "output": None, "error": None})
            valid_profiles.append(profile)
            valid_positions.append(position)
        answers, locale = recommend(valid_profiles, body["options"])
        deadline.check()
        record_batch_rows(scored=len(valid_profiles), rejected=len(results) - len(valid_profiles))
        for position, answer in zip(valid_positions, answers, strict=True):
            results[position]["output"] = answer
        return json_response({"results": results}, headers={"Content-Language": locale})
