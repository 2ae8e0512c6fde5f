"""Shops, keys, origins, catalogs, attribution, outcomes and CDS feedback.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str = "created_at", nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "shops",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        _timestamp(),
    )
    op.create_table(
        "shop_origins",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("shop_id", sa.Integer, sa.ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("origin", sa.String(255), nullable=False, index=True),
        sa.UniqueConstraint("shop_id", "origin"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("shop_id", sa.Integer, sa.ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False, index=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        _timestamp(),
        _timestamp("revoked_at", nullable=True),
        sa.CheckConstraint("kind IN ('publishable', 'secret')", name="api_key_kind"),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("shop_id", sa.Integer, sa.ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("sku", sa.String(100), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("form", sa.String(50), nullable=False),
        sa.Column("elemental_mg_per_unit", sa.Float, nullable=False),
        sa.Column("units_per_pack", sa.Integer, nullable=False),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.UniqueConstraint("shop_id", "sku"),
    )
    op.create_table(
        "recommendations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("shop_id", sa.Integer, sa.ForeignKey("shops.id", ondelete="CASCADE"), nullable=True, index=True),
        _timestamp(),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("recommendation_id", sa.String(36), sa.ForeignKey("recommendations.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("shop_id", sa.Integer, sa.ForeignKey("shops.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("sku", sa.String(100), nullable=False),
        sa.Column("form", sa.String(50), nullable=False),
        _timestamp(),
        sa.CheckConstraint("type IN ('view', 'click', 'add_to_cart', 'purchase')", name="event_type"),
    )
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("recommendation_id", sa.String(36), nullable=False, index=True),
        sa.Column("form", sa.String(50), nullable=False),
        sa.Column("tolerated", sa.Boolean, nullable=True),
        sa.Column("helpful", sa.Integer, nullable=True),
        _timestamp(),
        sa.Column("shop_id", sa.Integer, sa.ForeignKey("shops.id", ondelete="SET NULL"), nullable=True, index=True),
        sa.CheckConstraint("helpful IS NULL OR (helpful BETWEEN 1 AND 5)", name="outcome_helpful"),
    )
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("card_uuid", sa.String(36), nullable=False, index=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("override_reason_code", sa.String(100), nullable=True),
        _timestamp(),
        sa.CheckConstraint("outcome IN ('accepted', 'overridden')", name="cds_feedback_outcome"),
    )


def downgrade() -> None:
    for table in ("cds_feedback", "outcomes", "events", "recommendations", "products", "api_keys", "shop_origins",
                  "shops"):
        op.drop_table(table)
