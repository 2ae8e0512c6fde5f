"""The CDS cards this service issued (uuid, their suggestions' uuids), remembered for a
bounded time so that feedback is taken only for them; and the secrets the service makes for
itself once (the key of the handout links on its cards).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_cards",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("suggestions", sa.Text, nullable=False),
        sa.Column("forget_after", sa.BigInteger, nullable=False, index=True),
    )
    op.create_table(
        "app_secrets",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("app_secrets")
    op.drop_table("cds_cards")
