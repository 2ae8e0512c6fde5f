"""The audit log: who changed a shop's keys, origins or catalog, and which CDS clients
called (client iss and sub, hook, patient id as a keyed hash). Never a profile.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("action", sa.String(50), nullable=False, index=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
