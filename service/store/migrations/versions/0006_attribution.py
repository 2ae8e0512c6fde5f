"""Attribution a shop can trust (issue 21): answers and events keep their channel (the
widget's publishable key or the shop's server), answers the skus they showed (an event on
another product is unattributed), events the widget's visit token and, for purchases, the
order with its quantity and revenue, counted once per order and product. Catalog products
may have an image and an add-to-cart link.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PURCHASE = sa.text("type = 'purchase'")


def upgrade() -> None:
    op.add_column("recommendations", sa.Column("channel", sa.String(10)))
    op.add_column("recommendations", sa.Column("shown_skus", sa.Text))
    for column in (sa.Column("channel", sa.String(10)), sa.Column("attributed", sa.Boolean),
                   sa.Column("session_id", sa.String(64)), sa.Column("order_id", sa.String(100)),
                   sa.Column("quantity", sa.Integer), sa.Column("revenue", sa.Numeric(12, 2)),
                   sa.Column("currency", sa.String(3))):
        op.add_column("events", column)
    op.create_index("event_purchase_once", "events", ["shop_id", "order_id", "sku"], unique=True,
                    sqlite_where=PURCHASE, postgresql_where=PURCHASE)
    op.add_column("products", sa.Column("image_url", sa.String(2000)))
    op.add_column("products", sa.Column("cart_url", sa.String(2000)))


def downgrade() -> None:
    with op.batch_alter_table("products") as table:
        table.drop_column("cart_url")
        table.drop_column("image_url")
    op.drop_index("event_purchase_once", table_name="events")
    with op.batch_alter_table("events") as table:
        for name in ("currency", "revenue", "quantity", "order_id", "session_id", "attributed", "channel"):
            table.drop_column(name)
    with op.batch_alter_table("recommendations") as table:
        table.drop_column("shown_skus")
        table.drop_column("channel")
