"""CDS client token ids already used, so that every worker refuses a replayed token.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_used_tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("forget_after", sa.BigInteger, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("cds_used_tokens")
