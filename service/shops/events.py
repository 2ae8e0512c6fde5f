"""Attribution: which answers lead to views, clicks, carts and purchases.

Every answer made with a shop's key has its ``recommendation_id`` stored with the shop, the
channel (``widget`` for the publishable key, ``server`` for the secret key), the time and
the skus it showed, never the profile (that is health data). The shop then reports what
happened to the products shown with it (``POST /v1/events``). View, click and add-to-cart
events come from the shop's pages (publishable key), with the widget's random visit token
(``session_id``) so that a visit counts each product once; a purchase only from the shop's
server (secret key), with its ``order_id`` (the same order and product count once),
``quantity`` and ``revenue``. An event on a product the answer did not show is stored and
reported as unattributed. formwise.service.shops.reports turns the events into figures."""

from __future__ import annotations

from decimal import Decimal

import marshmallow as ma
from flask.views import MethodView
from marshmallow import fields, validate

from formwise.service.api.errors import field_problem
from formwise.service.api.parsing import Blueprint
from formwise.service.api.responses import json_response
from formwise.service.api.schemas import StrictInteger, StrictNumber, StrictSchema
from formwise.service.shops.keys import SHOP_KEY_SECURITY, current_shop, require_shop
from formwise.service.store import attribution
from formwise.service.store import queries as storage
from formwise.service.store.tables import EVENT_TYPES

blp = Blueprint("events", __name__, url_prefix="/v1", description="Shop events for attribution (needs a shop key).")
SERVER_ONLY_EVENTS = ("purchase",)
PURCHASE_FIELDS = ("order_id", "quantity", "revenue", "currency")
CENT = Decimal("0.01")


class EventSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(
        EVENT_TYPES, error="Must be one of: " + ", ".join(EVENT_TYPES) + "."))
    recommendation_id = fields.UUID(required=True, metadata={"description": "The answer's recommendation_id."})
    sku = fields.String(required=True, validate=validate.Length(1, 100, error="Must be 1 to 100 characters."),
                        metadata={"description": "A product of the shop's catalog."})
    session_id = fields.String(validate=validate.Regexp(
        r"^[A-Za-z0-9_-]{8,64}$", error="Must be 8 to 64 letters, digits, '-' or '_'."), metadata={
        "description": "A random token the page makes once per visit (the widget sends one): views, clicks and "
                       "add-to-carts count once per visit and product."})
    order_id = fields.String(validate=validate.Length(1, 100, error="Must be 1 to 100 characters."), metadata={
        "description": "Purchases (required): the shop's order id. The same order and sku count once."})
    quantity = StrictInteger(validate=validate.Range(1, 10_000, error="Must be a whole number from 1 to 10000."),
                             metadata={"description": "Purchases: packs bought (default 1)."})
    revenue = StrictNumber(validate=validate.Range(0, 10_000_000, error="Must be from 0 to 10000000."),
                           metadata={"description": "Purchases: what the order line brought in, at most 2 decimals."})
    currency = fields.String(validate=validate.Regexp(
        r"^[A-Z]{3}$", error="Must be a three-letter ISO 4217 code in capitals, such as EUR or USD."),
        metadata={"description": "Purchases: the revenue's currency (required with revenue)."})

    @ma.validates("revenue")
    def _cents(self, value, **kwargs):
        if Decimal(str(value)) != Decimal(str(value)).quantize(CENT):
            raise ma.ValidationError("Must have at most 2 decimal places.")

    @ma.validates_schema
    def _purchase_fields(self, data, **kwargs):
        if data.get("type") == "purchase":
            if "order_id" not in data:
                raise ma.ValidationError("A purchase needs the shop's order id.", "order_id")
            if ("revenue" in data) != ("currency" in data):
                name = "currency" if "revenue" in data else "revenue"
                raise ma.ValidationError("Send revenue and currency together.", name)
        else:
            for name in PURCHASE_FIELDS:
                if name in data:
                    raise ma.ValidationError("Only purchases carry this field.", name)


class EventResponseSchema(ma.Schema):
    event_id = fields.Integer(required=True)
    type = fields.String(required=True)
    recommendation_id = fields.UUID(required=True)
    sku = fields.String(required=True)
    form = fields.String(required=True)
    attributed = fields.Boolean(required=True, metadata={
        "description": "Whether the answer showed this product; an unattributed event is kept but not credited."})
    duplicate = fields.Boolean(required=True, metadata={
        "description": "A purchase of this order and sku was already recorded: nothing new was counted."})


@blp.route("/events")
class Events(MethodView):
    @blp.doc(security=SHOP_KEY_SECURITY)
    @blp.arguments(EventSchema())
    @blp.alt_response(201, schema=EventResponseSchema, success=True, description="The event was recorded.")
    @blp.alt_response(200, schema=EventResponseSchema, description="This order's purchase of this sku was already "
                                                                  "recorded (duplicate: true); nothing changed.")
    @blp.alt_response(401, description="No key, or an unknown or revoked key.")
    @blp.alt_response(403, description="A purchase sent without the secret key, or a key used from the wrong origin.")
    def post(self, event):
        """Record a view, click, add_to_cart or purchase of a product shown with an answer.

        Needs the shop's key: the publishable key from its pages, or the secret key from its
        server (purchases only with the secret key, each with its ``order_id``). The
        recommendation must be an answer made with this shop's key and the sku a product of
        its catalog; an event on a product the answer did not show is kept as unattributed.
        Sending the same order and sku again changes nothing (200, ``duplicate: true``)."""
        refused = require_shop("secret" if event["type"] in SERVER_ONLY_EVENTS else None)
        if refused is not None:
            return refused
        shop = current_shop()
        recommendation_id = str(event["recommendation_id"])
        answer = attribution.answer_record(recommendation_id)
        if answer is None or answer.shop_id != shop.id:
            return field_problem("recommendation_id", "Not an answer made with this shop's key.")
        product = storage.find_product(shop.id, event["sku"])
        if product is None:
            return field_problem("sku", "Not a product of this shop's catalog.")
        revenue = event.get("revenue")
        stored = attribution.record_event(
            shop.id, recommendation_id, event["type"], event["sku"], product["form"], channel=answer.channel,
            attributed=answer.shown_skus is not None and event["sku"] in answer.shown_skus,
            session_id=event.get("session_id"), order_id=event.get("order_id"),
            quantity=event.get("quantity", 1) if event["type"] == "purchase" else None,
            revenue=None if revenue is None else Decimal(str(revenue)).quantize(CENT), currency=event.get("currency"))
        body = {"event_id": stored.event_id, "type": event["type"], "recommendation_id": recommendation_id,
                "sku": event["sku"], "form": product["form"], "attributed": stored.attributed,
                "duplicate": stored.duplicate}
        return json_response(body, status=200 if stored.duplicate else 201)


def record_answer_ids(answers: list[dict], locale: str, preferences: list[dict]) -> None:
    """Answer hook: store the ids of answers made with a shop's key (ids, shop, channel, the
    skus shown, time). It runs after the catalog hook has added the shop's products."""
    shop = current_shop()
    if shop is not None:
        attribution.record_recommendations(
            [answer["recommendation_id"] for answer in answers], shop.id, attribution.CHANNEL_OF_KEY[shop.key_kind],
            [[product["sku"] for item in answer["recommendations"] for product in item.get("products", ())]
             for answer in answers], [answer.get("experiment") for answer in answers])


def init_app(app, api) -> None:
    app.extensions["formwise_answer_hooks"].append(record_answer_ids)
