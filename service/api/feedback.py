"""POST /v1/feedback: how a recommended form worked out (tolerated, and how much it helped).

The record holds the answer's ``recommendation_id``, the form, the two ratings and the
reporting shop when a shop key was used: never a profile, so it cannot say who the person
was. ``formwise train --with-feedback`` learns population-level preferences from it (see
formwise.models.learning.training).

Only answers this service issued count, and only on a form that answer recommended, once:
the answer id is signed and names its forms (formwise.service.api.ids.AnswerIds), so a forged or
guessed id, a form the answer did not recommend, an answer older than the retention period
and a second report on the same answer and form are refused before anything is stored."""

from __future__ import annotations

import time

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from marshmallow import fields, validate

from formwise.service.api.errors import field_problem, problem
from formwise.service.api.ids import AnswerIds, answer_id_secret
from formwise.service.api.parsing import Blueprint
from formwise.service.api.responses import json_response
from formwise.service.api.schemas import RunningFormId, StrictBoolean, StrictInteger, StrictSchema
from formwise.service.shops.keys import current_shop
from formwise.service.store import queries as storage
from formwise.service.store.database import engine_of

blp = Blueprint("feedback", __name__, url_prefix="/v1", description="Outcomes of recommended forms (no profile data).")


class FeedbackSchema(StrictSchema):
    recommendation_id = fields.UUID(required=True, metadata={"description": "The answer's recommendation_id."})
    form = fields.String(
        required=True,
        validate=RunningFormId(),
        metadata={"description": "The form the person took."},
    )
    tolerated = StrictBoolean(allow_none=True, load_default=None,
                              metadata={"description": "Whether the person tolerated it; null when unknown."})
    helpful = StrictInteger(
        allow_none=True,
        load_default=None,
        validate=validate.Range(1, 5, error="Must be a whole number from 1 (not at all) to 5 (very), or null."),
        metadata={"description": "How much it helped, 1 (not at all) to 5 (very); null when unknown."},
    )

    @ma.validates_schema
    def _some_outcome(self, data, **kwargs):
        if data.get("tolerated") is None and data.get("helpful") is None:
            message = "Give tolerated (true or false), helpful (1 to 5), or both."
            raise ma.ValidationError({"tolerated": [message], "helpful": [message]})


class FeedbackResponseSchema(ma.Schema):
    recommendation_id = fields.UUID(required=True)
    form = fields.String(required=True)
    tolerated = fields.Boolean(allow_none=True, required=True)
    helpful = fields.Integer(allow_none=True, required=True)


@blp.route("/feedback")
class Feedback(MethodView):
    @blp.arguments(FeedbackSchema())
    @blp.alt_response(201, schema=FeedbackResponseSchema, success=True, description="The outcome was recorded.")
    @blp.alt_response(409, description="Feedback on this form of this answer was already recorded.")
    def post(self, feedback):
        """Report how a recommended form worked out: tolerated, and helpful from 1 to 5.

        Taken once per answer and form, for a form the answer recommended, within the
        retention period (90 days unless configured). Only the answer's id, the form and
        the two ratings are stored (with the shop, when a shop key is used); send nothing
        about the person."""
        refused = _refusal(feedback)
        if refused is not None:
            return refused
        shop = current_shop()
        recorded = {"recommendation_id": str(feedback["recommendation_id"]), "form": feedback["form"],
                    "tolerated": feedback["tolerated"], "helpful": feedback["helpful"]}
        try:
            storage.record_outcome(**recorded, shop_id=shop.id if shop is not None else None)
        except storage.AlreadyRecorded:
            return problem(409, "Conflict", f"Feedback on {feedback['form']} for this answer was already recorded: "
                           "each recommended form of an answer takes one report.")
        return json_response(recorded, status=201)


def _refusal(feedback: dict):
    """A 422 problem when the answer was not issued here, is too old, or did not recommend
    the form; else None."""
    issued = current_app.extensions["formwise_answer_ids"].read(feedback["recommendation_id"])
    if issued is None:
        return field_problem("recommendation_id", "Not an answer this service issued: send the recommendation_id "
                                                   "exactly as the answer gave it.")
    days = storage.retention_days()
    if issued.day < time.time() // 86400 - days:
        return field_problem("recommendation_id", f"The answer is more than {days} days old; feedback is taken "
                                                   f"for {days} days.")
    if feedback["form"] not in issued.forms:
        allowed = ", ".join(issued.forms) or "none"
        return field_problem("form", f"Not one of this answer's recommended forms (allowed: {allowed}).")
    return None


def answer_ids_for(app) -> AnswerIds:
    """The signer of this app's answer ids: its secret and its knowledge base's forms."""
    with app.app_context():
        secret = answer_id_secret()
    engine_of(app).dispose()  # gunicorn forks after this: no pooled connection may be inherited
    return AnswerIds(secret, app.extensions["formwise"].knowledge_base.form_ids)


def init_app(app, api) -> None:
    """Call after formwise.service.store.database.init_app: the answer-id secret may live in the database."""
    app.extensions["formwise_answer_ids"] = answer_ids_for(app)
