"""Attribution: which recommendations lead to views, clicks, carts and purchases.

Every answer made with a shop's key has its ``recommendation_id`` stored with the shop and
the time, never the profile (that is health data). The shop then reports what happened to
the products shown with it (``POST /v1/events``), and ``formwise shops report`` turns the
events into conversion by form and by product. View, click and add-to-cart events come from
the shop's pages (publishable key); a purchase counts only from the shop's server (secret
key), so a visitor cannot inflate the figures."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from marshmallow import fields, validate

from formwise.service.api.errors import field_problem
from formwise.service.api.parsing import Blueprint
from formwise.service.api.responses import json_response
from formwise.service.api.schemas import StrictSchema
from formwise.service.shops.keys import SHOP_KEY_SECURITY, current_shop, require_shop
from formwise.service.store import queries as storage
from formwise.service.store.tables import EVENT_TYPES

blp = Blueprint("events", __name__, url_prefix="/v1", description="Shop events for attribution (needs a shop key).")
SERVER_ONLY_EVENTS = ("purchase",)


class EventSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(
        EVENT_TYPES, error="Must be one of: " + ", ".join(EVENT_TYPES) + "."))
    recommendation_id = fields.UUID(required=True, metadata={"description": "The answer's recommendation_id."})
    sku = fields.String(required=True, validate=validate.Length(1, 100, error="Must be 1 to 100 characters."),
                        metadata={"description": "A product of the shop's catalog."})


class EventResponseSchema(ma.Schema):
    event_id = fields.Integer(required=True)
    type = fields.String(required=True)
    recommendation_id = fields.UUID(required=True)
    sku = fields.String(required=True)
    form = fields.String(required=True)


@blp.route("/events")
class Events(MethodView):
    @blp.doc(security=SHOP_KEY_SECURITY)
    @blp.arguments(EventSchema())
    @blp.alt_response(201, schema=EventResponseSchema, success=True, description="The event was recorded.")
    @blp.alt_response(401, description="No key, or an unknown or revoked key.")
    @blp.alt_response(403, description="A purchase sent without the secret key, or a key used from the wrong origin.")
    def post(self, event):
        """Record a view, click, add_to_cart or purchase of a product shown with an answer.

        Needs the shop's key: the publishable key from its pages, or the secret key from its
        server (purchases only with the secret key). The recommendation must be an answer
        made with this shop's key and the sku a product of its catalog."""
        refused = require_shop("secret" if event["type"] in SERVER_ONLY_EVENTS else None)
        if refused is not None:
            return refused
        shop = current_shop()
        recommendation_id = str(event["recommendation_id"])
        stored, shop_id = storage.recommendation_shop(recommendation_id)
        if not stored or shop_id != shop.id:
            return field_problem("recommendation_id", "Not an answer made with this shop's key.")
        product = storage.find_product(shop.id, event["sku"])
        if product is None:
            return field_problem("sku", "Not a product of this shop's catalog.")
        event_id = storage.record_event(shop.id, recommendation_id, event["type"], event["sku"], product["form"])
        return json_response({"event_id": event_id, "type": event["type"], "recommendation_id": recommendation_id,
                              "sku": event["sku"], "form": product["form"]}, status=201)


def record_answer_ids(answers: list[dict], locale: str, preferences: list[dict]) -> None:
    """Answer hook: store the ids of answers made with a shop's key (ids, shop, time)."""
    shop = current_shop()
    if shop is not None:
        storage.record_recommendations([answer["recommendation_id"] for answer in answers], shop.id)


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _with_rates(row: dict) -> dict:
    return {**row, "click_rate": _rate(row["click"], row["view"]), "conversion": _rate(row["purchase"], row["view"])}


def conversion_report(shop_id: int) -> dict:
    """Counts per event type by form and by product, with click rate (clicks per view) and
    conversion (purchases per view); a rate is None when nothing was viewed."""
    counts = storage.conversion_counts(shop_id)
    by_form: dict[str, dict] = {}
    for product in counts["products"]:
        entry = by_form.setdefault(product["form"], {"form": product["form"], **dict.fromkeys(EVENT_TYPES, 0)})
        for event_type in EVENT_TYPES:
            entry[event_type] += product[event_type]
    return {
        "recommendations": counts["recommendations"],
        "by_form": [_with_rates(by_form[form]) for form in sorted(by_form)],
        "by_product": [_with_rates(product) for product in counts["products"]],
    }


def init_app(app, api) -> None:
    app.extensions["formwise_answer_hooks"].append(record_answer_ids)
