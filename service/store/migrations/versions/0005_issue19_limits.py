"""One feedback report per answer and form: earlier duplicates are dropped (the latest of
each pair is kept, as training counted it), then a unique constraint holds it. And a
catalog version per shop, raised by every catalog replacement, so that each worker knows
when its index of a shop's products is stale.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM outcomes WHERE id NOT IN "
               "(SELECT MAX(id) FROM outcomes GROUP BY recommendation_id, form)")
    with op.batch_alter_table("outcomes") as table:  # SQLite rebuilds the table to add a constraint
        table.create_unique_constraint("outcome_once_per_answer_form", ["recommendation_id", "form"])
    op.add_column("shops", sa.Column("catalog_version", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("shops") as table:
        table.drop_column("catalog_version")
    with op.batch_alter_table("outcomes") as table:
        table.drop_constraint("outcome_once_per_answer_form", type_="unique")
