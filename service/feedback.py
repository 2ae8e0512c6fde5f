"""POST /v1/feedback: how a recommended form worked out (tolerated, and how much it helped).

The record holds the answer's ``recommendation_id``, the form, the two ratings and the
reporting shop when a shop key was used: never a profile, so it cannot say who the person
was. ``formwise train --with-feedback`` learns population-level preferences from it (see
models.training)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from marshmallow import fields, validate

from service import storage
from service.parser import Blueprint
from service.responses import json_response
from service.schemas import RunningFormId, StrictBoolean, StrictInteger, StrictSchema
from service.shops import current_shop

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
    def post(self, feedback):
        """Report how a recommended form worked out: tolerated, and helpful from 1 to 5.

        Only the answer's id, the form and the two ratings are stored (with the shop, when a
        shop key is used); send nothing about the person."""
        shop = current_shop()
        recorded = {"recommendation_id": str(feedback["recommendation_id"]), "form": feedback["form"],
                    "tolerated": feedback["tolerated"], "helpful": feedback["helpful"]}
        storage.record_outcome(**recorded, shop_id=shop.id if shop is not None else None)
        return json_response(recorded, status=201)


def init_app(app, api) -> None:
    api.register_blueprint(blp)
