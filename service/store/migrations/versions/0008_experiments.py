"""A/B against a control (issue 21): a shop's share of widget visits shown its own default
product for the goal, the product per goal, and on each answer the experiment and arm it
was part of (and whether the safety rules overrode the control for that person).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("shops", sa.Column("control_share", sa.Float, nullable=False, server_default="0"))
    op.add_column("shops", sa.Column("experiment_id", sa.String(36)))
    op.add_column("shops", sa.Column("experiment_started_at", sa.DateTime(timezone=True)))
    op.create_table(
        "control_products",
        sa.Column("shop_id", sa.Integer, sa.ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("goal", sa.String(40), primary_key=True),
        sa.Column("sku", sa.String(100), nullable=False),
    )
    op.add_column("recommendations", sa.Column("experiment_id", sa.String(36)))
    op.add_column("recommendations", sa.Column("arm", sa.String(10)))
    op.add_column("recommendations", sa.Column("safety_override", sa.Boolean))
    op.create_index("ix_recommendations_experiment_id", "recommendations", ["experiment_id"])


def downgrade() -> None:
    op.drop_index("ix_recommendations_experiment_id", table_name="recommendations")
    with op.batch_alter_table("recommendations") as table:
        for name in ("safety_override", "arm", "experiment_id"):
            table.drop_column(name)
    op.drop_table("control_products")
    with op.batch_alter_table("shops") as table:
        for name in ("experiment_started_at", "experiment_id", "control_share"):
            table.drop_column(name)
