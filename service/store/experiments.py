"""A shop's A/B experiment against a control: its settings (the control's share of widget
visits and the shop's default product per goal) and the counts per arm that the report
compares. Stored rows hold ids, arms and skus, never a profile."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa

from formwise.service.store.database import session_scope
from formwise.service.store.queries import NotFoundError, shop_by_name
from formwise.service.store.tables import ControlProduct, Event, Product, Recommendation, Shop, as_utc, utc_now

ARMS = ("ranking", "control")
FALLBACK_GOAL = "general"  # the control product for a goal the shop named none for
MAX_CONTROL_SHARE = 0.9


@dataclass(frozen=True)
class ExperimentSettings:
    experiment_id: str
    control_share: float
    controls: dict[str, str] = field(default_factory=dict)  # goal -> sku

    def control_sku(self, goals) -> str | None:
        """The shop's default product for the person's first goal, else for ``general``."""
        for goal in goals or ():
            if goal in self.controls:
                return self.controls[goal]
        return self.controls.get(FALLBACK_GOAL)


def start_experiment(shop_name: str, control_share: float, controls: dict[str, str]) -> str:
    """Starts a new experiment (a new id: the report compares the arms of the current one);
    every default product must be in the shop's catalog. Returns the experiment's id."""
    if not 0 < control_share <= MAX_CONTROL_SHARE:
        raise ValueError(f"The control's share must be above 0 and at most {MAX_CONTROL_SHARE}.")
    if FALLBACK_GOAL not in controls:
        raise ValueError(f"Name the default product for '{FALLBACK_GOAL}' (it covers every goal without one).")
    with session_scope() as session:
        shop = shop_by_name(session, shop_name)
        stocked = set(session.scalars(sa.select(Product.sku).where(Product.shop_id == shop.id)))
        missing = sorted(sku for sku in controls.values() if sku not in stocked)
        if missing:
            raise ValueError(f"Not in the shop's catalog: {', '.join(missing)}.")
        session.execute(sa.delete(ControlProduct).where(ControlProduct.shop_id == shop.id))
        session.add_all(ControlProduct(shop_id=shop.id, goal=goal, sku=sku) for goal, sku in controls.items())
        shop.control_share = control_share
        shop.experiment_id = str(uuid.uuid4())
        shop.experiment_started_at = utc_now()
        shop.catalog_version = Shop.catalog_version + 1  # workers reload the experiment with the catalog
        return shop.experiment_id


def stop_experiment(shop_name: str) -> str | None:
    """Every visit sees the ranking again; the experiment's figures stay. Returns its id."""
    with session_scope() as session:
        shop = shop_by_name(session, shop_name)
        shop.control_share = 0.0
        shop.catalog_version = Shop.catalog_version + 1
        return shop.experiment_id


def experiment_settings(shop_id: int) -> ExperimentSettings | None:
    """The running experiment, or None (read when a worker rebuilds the shop's catalog index)."""
    with session_scope() as session:
        row = session.execute(sa.select(Shop.experiment_id, Shop.control_share).where(Shop.id == shop_id)).first()
        if row is None or not row[1] or row[0] is None:
            return None
        controls = dict(session.execute(sa.select(ControlProduct.goal, ControlProduct.sku)
                                        .where(ControlProduct.shop_id == shop_id)).all())
    return ExperimentSettings(row[0], float(row[1]), controls)


def current_experiment(shop_id: int) -> dict | None:
    """The shop's current or last experiment: id, share (0 once stopped), start, products."""
    with session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise NotFoundError(f"No shop with id {shop_id}.")
        if shop.experiment_id is None:
            return None
        controls = dict(session.execute(sa.select(ControlProduct.goal, ControlProduct.sku)
                                        .where(ControlProduct.shop_id == shop_id)).all())
        started = shop.experiment_started_at
        return {"experiment_id": shop.experiment_id, "control_share": shop.control_share,
                "running": shop.control_share > 0, "controls": controls,
                "started_at": None if started is None else as_utc(started).isoformat()}


def arm_counts(shop_id: int, experiment_id: str, start: dt.datetime | None = None,
               end: dt.datetime | None = None) -> dict[str, dict]:
    """Per arm: the widget answers in the experiment, those a safety rule kept on the
    ranking, and the answers followed by at least one attributed purchase (a proportion)."""
    answers = (sa.select(Recommendation.arm, sa.func.count(), sa.func.count().filter(Recommendation.safety_override))
               .where(Recommendation.shop_id == shop_id, Recommendation.experiment_id == experiment_id)
               .group_by(Recommendation.arm))
    converted = (sa.select(Recommendation.arm, sa.func.count(sa.distinct(Recommendation.id)))
                 .join(Event, Event.recommendation_id == Recommendation.id)
                 .where(Recommendation.shop_id == shop_id, Recommendation.experiment_id == experiment_id,
                        Event.type == "purchase", Event.attributed.is_not(False))
                 .group_by(Recommendation.arm))
    for column in (Recommendation.created_at,):
        if start is not None:
            answers, converted = answers.where(column >= start), converted.where(column >= start)
        if end is not None:
            answers, converted = answers.where(column < end), converted.where(column < end)
    counts = {arm: {"answers": 0, "safety_overrides": 0, "converted": 0} for arm in ARMS}
    with session_scope() as session:
        for arm, total, overridden in session.execute(answers).all():
            if arm in counts:
                counts[arm].update(answers=total, safety_overrides=overridden)
        for arm, total in session.execute(converted).all():
            if arm in counts:
                counts[arm]["converted"] = total
    return counts

