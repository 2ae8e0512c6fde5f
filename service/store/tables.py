"""The service's tables (SQLAlchemy 2 declarative). They hold ids, keys, catalogs, counts and
outcomes, never a profile: no health field, condition or medicine is stored. Alembic's
migrations (migrations/) create and change them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

KEY_KINDS = ("publishable", "secret")
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
CDS_OUTCOMES = ("accepted", "overridden")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A stored moment as an aware UTC datetime: SQLite hands them back without their zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    pass


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)
    # raised by every catalog replacement and experiment change: workers rebuild their index of
    # the products (and the experiment it carries) when it moves
    catalog_version: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # migration 0008, A/B against a control: the share of widget visits shown the shop's own
    # default product for their goal instead of the ranking (0: no experiment running)
    control_share: Mapped[float] = mapped_column(sa.Float, default=0.0, server_default="0")
    experiment_id: Mapped[str | None] = mapped_column(sa.String(36))  # the current or last experiment
    experiment_started_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))

    origins: Mapped[list[ShopOrigin]] = relationship(cascade="all, delete-orphan", order_by="ShopOrigin.origin")
    keys: Mapped[list[ApiKey]] = relationship(cascade="all, delete-orphan", order_by="ApiKey.id")


class ShopOrigin(Base):
    """A web origin (scheme://host[:port]) whose pages may use the shop's publishable key."""

    __tablename__ = "shop_origins"
    __table_args__ = (sa.UniqueConstraint("shop_id", "origin"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    origin: Mapped[str] = mapped_column(sa.String(255), index=True)


class ApiKey(Base):
    """Only the key's sha256 is stored; ``prefix`` (its first characters) names it in lists."""

    __tablename__ = "api_keys"
    __table_args__ = (sa.CheckConstraint("kind IN ('publishable', 'secret')", name="api_key_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    prefix: Mapped[str] = mapped_column(sa.String(20), index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # migration 0007: keys like a payments API's
    name: Mapped[str | None] = mapped_column(sa.String(100))  # what the shop calls it ("checkout server")
    expires_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))  # refused from then on
    last_used_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))  # to the hour


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (sa.UniqueConstraint("shop_id", "sku"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(sa.String(100))
    name: Mapped[str] = mapped_column(sa.String(300))
    form: Mapped[str] = mapped_column(sa.String(50))
    elemental_mg_per_unit: Mapped[float] = mapped_column(sa.Float)
    units_per_pack: Mapped[int] = mapped_column(sa.Integer)
    price: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    currency: Mapped[str] = mapped_column(sa.String(3))
    url: Mapped[str] = mapped_column(sa.String(2000))
    image_url: Mapped[str | None] = mapped_column(sa.String(2000))  # optional (migration 0006)
    cart_url: Mapped[str | None] = mapped_column(sa.String(2000))  # optional: adds the product to the cart


class ControlProduct(Base):
    """The product a shop's control arm shows for a goal ("general" covers the goals without one)."""

    __tablename__ = "control_products"

    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True)
    goal: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    sku: Mapped[str] = mapped_column(sa.String(100))


class Recommendation(Base):
    """An answer's id, the shop whose key asked for it, and when: never the profile."""

    __tablename__ = "recommendations"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    shop_id: Mapped[int | None] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)
    # "widget" (the publishable key: a page of the shop) or "server" (the secret key); NULL for
    # answers stored before channels were kept (migration 0006)
    channel: Mapped[str | None] = mapped_column(sa.String(10))
    # the skus the answer showed, space-separated: an event on another sku is unattributed
    shown_skus: Mapped[str | None] = mapped_column(sa.Text)
    # migration 0008: the experiment the answer was part of, its arm ("ranking" or "control"),
    # and whether a control answer showed the ranking because the default product's form was
    # not one the engine recommends for this person (the safety rules come first)
    experiment_id: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    arm: Mapped[str | None] = mapped_column(sa.String(10))
    safety_override: Mapped[bool | None] = mapped_column(sa.Boolean)


class Event(Base):
    """A shop event about one product shown with one answer; ``form`` is the product's form
    when the event arrived, so a later catalog change does not rewrite history."""

    __tablename__ = "events"
    __table_args__ = (
        sa.CheckConstraint("type IN ('view', 'click', 'add_to_cart', 'purchase')", name="event_type"),
        # a purchase counts once per order and product, however often the shop sends it
        sa.Index("event_purchase_once", "shop_id", "order_id", "sku", unique=True,
                 sqlite_where=sa.text("type = 'purchase'"), postgresql_where=sa.text("type = 'purchase'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[str] = mapped_column(sa.ForeignKey("recommendations.id", ondelete="CASCADE"),
                                                   index=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(sa.String(20))
    sku: Mapped[str] = mapped_column(sa.String(100))
    form: Mapped[str] = mapped_column(sa.String(50))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)
    # migration 0006; NULL on older events
    channel: Mapped[str | None] = mapped_column(sa.String(10))  # "widget" or "server", as Recommendation
    attributed: Mapped[bool | None] = mapped_column(sa.Boolean)  # the sku was shown with the answer
    session_id: Mapped[str | None] = mapped_column(sa.String(64))  # the widget's random token per visit
    order_id: Mapped[str | None] = mapped_column(sa.String(100))  # purchases
    quantity: Mapped[int | None] = mapped_column(sa.Integer)
    revenue: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    currency: Mapped[str | None] = mapped_column(sa.String(3))


class Outcome(Base):
    """How a recommended form worked out for someone (issue 6): ids and ratings only."""

    __tablename__ = "outcomes"
    __table_args__ = (sa.CheckConstraint("helpful IS NULL OR (helpful BETWEEN 1 AND 5)", name="outcome_helpful"),
                      sa.UniqueConstraint("recommendation_id", "form", name="outcome_once_per_answer_form"))

    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[str] = mapped_column(sa.String(36), index=True)
    form: Mapped[str] = mapped_column(sa.String(50))
    tolerated: Mapped[bool | None] = mapped_column(sa.Boolean)
    helpful: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)
    shop_id: Mapped[int | None] = mapped_column(sa.ForeignKey("shops.id", ondelete="SET NULL"), index=True)


class CdsFeedback(Base):
    """CDS Hooks feedback on one card (issue 5): accepted, or overridden with a reason code."""

    __tablename__ = "cds_feedback"
    __table_args__ = (sa.CheckConstraint("outcome IN ('accepted', 'overridden')", name="cds_feedback_outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    card_uuid: Mapped[str] = mapped_column(sa.String(36), index=True)
    outcome: Mapped[str] = mapped_column(sa.String(20))
    override_reason_code: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now)


class CdsUsedToken(Base):
    """A CDS client's token already used (its issuer and jti, hashed), kept until the token
    could no longer pass the expiry check: the replay check every worker shares."""

    __tablename__ = "cds_used_tokens"

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    forget_after: Mapped[int] = mapped_column(sa.BigInteger, index=True)  # Unix seconds


class CdsCard(Base):
    """A CDS card this service issued: its uuid and its suggestions' uuids (no patient data),
    kept until ``forget_after`` so that feedback is taken only for cards it issued."""

    __tablename__ = "cds_cards"

    uuid: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    suggestions: Mapped[str] = mapped_column(sa.Text)  # the suggestions' uuids, space-separated
    forget_after: Mapped[int] = mapped_column(sa.BigInteger, index=True)  # Unix seconds


class AppSecret(Base):
    """A secret the service makes for itself once and every worker shares (the key of the
    handout links it puts on CDS cards)."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(200))


class AuditEntry(Base):
    """One change to a shop's keys, origins or catalog, or one CDS call: who (a key prefix,
    "cli", a CDS client's iss and sub), what, on what, and details without health data."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(sa.String(300))
    action: Mapped[str] = mapped_column(sa.String(50), index=True)
    subject: Mapped[str] = mapped_column(sa.String(200))
    details: Mapped[str] = mapped_column(sa.Text)
