"""Attribution: the answers a shop's keys asked for and the events on the products shown with
them, and the conversion figures made from both.

What a figure may count is decided here, once: widget traffic (answers asked for with the
publishable key, from the shop's pages) apart from the shop's server calls (the secret key),
an event taking the channel of the answer it follows; a view, click or add-to-cart once per
visit and product, a visit being the widget's ``session_id`` (an answer keeps the first one
sent with it, so a script cannot split one answer into many visits) or else the answer; a
click or add-to-cart only after a view of that product in that visit; a purchase once per
order and product; an event on a product the answer did not show as unattributed. Stored
rows hold ids, skus, forms and amounts, never a profile."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from formwise.service.store.database import connection_scope, session_scope
from formwise.service.store.tables import EVENT_TYPES, Event, Product, Recommendation, utc_now

CHANNELS = ("widget", "server")
CHANNEL_OF_KEY = {"publishable": "widget", "secret": "server"}
GROUPS = ("form", "product", "day")
_INSERT_RECOMMENDATION = sa.insert(Recommendation)


class utc_day(FunctionElement):
    """The UTC calendar day of a stored moment, as YYYY-MM-DD (reports group by it)."""

    type = sa.String()
    inherit_cache = True


@compiles(utc_day)
def _utc_day_sqlite(element, compiler, **kw):  # SQLite keeps the UTC moment as text
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element, compiler, **kw):  # a timestamptz, shown in the session's zone unless asked
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@dataclass(frozen=True)
class AnswerRecord:
    """What is stored of one answer made with a shop's key."""

    shop_id: int | None
    channel: str | None
    shown_skus: frozenset[str] | None  # None: stored before the skus were kept


@dataclass(frozen=True)
class StoredEvent:
    event_id: int
    attributed: bool
    duplicate: bool  # a purchase of this order and product was already stored


def record_recommendations(recommendation_ids: list[str], shop_id: int | None, channel: str | None = None,
                           shown_skus: list[list[str]] | None = None, experiments: list[dict | None] | None = None,
                           ) -> None:
    """Stores each answer's id with the shop, the channel, the time, the skus it showed and
    its experiment arm: ids only, never a profile. ``shown_skus`` and ``experiments`` (the
    answers' ``experiment`` objects, or None) run parallel to the ids."""
    if not recommendation_ids:
        return
    now = utc_now()
    shown = shown_skus or [[] for _ in recommendation_ids]
    arms = experiments or [None] * len(recommendation_ids)
    with connection_scope() as connection:
        connection.execute(_INSERT_RECOMMENDATION, [
            {"id": rid, "shop_id": shop_id, "created_at": now, "channel": channel, "shown_skus": " ".join(skus),
             "experiment_id": arm and arm["id"], "arm": arm and arm["arm"],
             "safety_override": arm and arm.get("safety_override")}
            for rid, skus, arm in zip(recommendation_ids, shown, arms, strict=True)])


def recommendation_shop(recommendation_id: str) -> tuple[bool, int | None]:
    """(whether the id was stored, the shop it was answered for)."""
    record = answer_record(recommendation_id)
    return (record is not None, record.shop_id if record is not None else None)


def answer_record(recommendation_id: str) -> AnswerRecord | None:
    with session_scope() as session:
        row = session.execute(sa.select(Recommendation.shop_id, Recommendation.channel, Recommendation.shown_skus)
                              .where(Recommendation.id == recommendation_id)).first()
    if row is None:
        return None
    return AnswerRecord(row[0], row[1], None if row[2] is None else frozenset(row[2].split()))


def record_event(shop_id: int, recommendation_id: str, event_type: str, sku: str, form: str, *,
                 channel: str | None = None, attributed: bool = True, session_id: str | None = None,
                 order_id: str | None = None, quantity: int | None = None, revenue: Decimal | None = None,
                 currency: str | None = None) -> StoredEvent:
    """Stores one event. A purchase whose order and sku are already stored is not stored
    again: the first one is returned, marked ``duplicate``."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"event type must be one of {', '.join(EVENT_TYPES)}")
    if event_type == "purchase":
        earlier = _stored_purchase(shop_id, order_id, sku)
        if earlier is not None:
            return earlier
    elif session_id is not None:
        session_id = _visit_of(recommendation_id) or session_id
    try:
        with session_scope() as session:
            event = Event(shop_id=shop_id, recommendation_id=recommendation_id, type=event_type, sku=sku, form=form,
                          channel=channel, attributed=attributed, session_id=session_id, order_id=order_id,
                          quantity=quantity, revenue=revenue, currency=currency)
            session.add(event)
            session.flush()
            return StoredEvent(event.id, attributed, False)
    except sa.exc.IntegrityError:
        earlier = _stored_purchase(shop_id, order_id, sku) if event_type == "purchase" else None
        if earlier is None:
            raise
        return earlier  # the same order sent twice at the same moment: the other one won


def _visit_of(recommendation_id: str) -> str | None:
    """The first visit token stored with this answer's events, if any."""
    with session_scope() as session:
        return session.scalar(sa.select(Event.session_id).where(
            Event.recommendation_id == recommendation_id, Event.session_id.is_not(None)).order_by(Event.id).limit(1))


def _stored_purchase(shop_id: int, order_id: str | None, sku: str) -> StoredEvent | None:
    with session_scope() as session:
        row = session.execute(sa.select(Event.id, Event.attributed).where(
            Event.shop_id == shop_id, Event.type == "purchase", Event.order_id == order_id, Event.sku == sku)).first()
    return None if row is None else StoredEvent(row[0], bool(row[1]), True)


def conversion_rows(shop_id: int, start: dt.datetime | None = None, end: dt.datetime | None = None) -> dict:
    """The raw material of every conversion figure, in [start, end): the answers per channel
    and day, and one row per counted event (duplicates of a visit or order already folded,
    clicks and carts without a view in their visit left out): channel, attributed, type,
    form, sku, day, quantity, revenue, currency."""
    day = utc_day(Recommendation.created_at)
    answers_query = (sa.select(Recommendation.channel, day, sa.func.count())
                     .where(Recommendation.shop_id == shop_id)
                     .group_by(Recommendation.channel, day))
    if start is not None:
        answers_query = answers_query.where(Recommendation.created_at >= start)
    if end is not None:
        answers_query = answers_query.where(Recommendation.created_at < end)
    # a visit (the widget's token, else the answer) counts each product once per event type
    visit = sa.func.coalesce(Event.session_id, Event.recommendation_id)
    once = sa.case((Event.type == "purchase", Event.order_id), else_=visit)
    event_day = sa.func.min(utc_day(Event.created_at))
    events_query = (sa.select(Event.channel, Event.attributed, Event.type, Event.form, Event.sku, event_day,
                              sa.func.sum(sa.func.coalesce(Event.quantity, 1)), sa.func.sum(Event.revenue),
                              sa.func.min(Event.currency), once)
                    .where(Event.shop_id == shop_id)
                    .group_by(Event.channel, Event.attributed, Event.type, Event.form, Event.sku, once))
    if start is not None:
        events_query = events_query.where(Event.created_at >= start)
    if end is not None:
        events_query = events_query.where(Event.created_at < end)
    with session_scope() as session:
        answers = [{"channel": channel, "day": str(when), "answers": count}
                   for channel, when, count in session.execute(answers_query).all()]
        rows = session.execute(events_query).all()
        names = dict(session.execute(sa.select(Product.sku, Product.name).where(Product.shop_id == shop_id)).all())
    viewed = {(visit_key, sku) for _, _, kind, _, sku, _, _, _, _, visit_key in rows if kind == "view"}
    events = [{"channel": channel, "attributed": attributed is not False, "type": kind, "form": form,
               "sku": sku, "day": str(when), "quantity": int(quantity or 0),
               "revenue": Decimal(revenue) if revenue is not None else None, "currency": currency}
              for channel, attributed, kind, form, sku, when, quantity, revenue, currency, visit_key in rows
              if kind in ("view", "purchase") or (visit_key, sku) in viewed]  # no click without a view
    return {"answers": answers, "events": events, "names": names}
