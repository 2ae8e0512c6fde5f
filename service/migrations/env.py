"""Alembic environment for formwise: the engine comes from service.db (never from an ini
file), so ``formwise db upgrade``, the first start and the tests all migrate the same way.

To add a migration, copy the newest file in versions/, give it a new ``revision`` with the
previous one as ``down_revision``, and keep its operations portable between SQLite and
PostgreSQL (``op.batch_alter_table`` for changes to existing tables)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from service.db import MIGRATION_LOCK_ID
from service.storage import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = context.config.attributes["engine"]  # set by service.db.alembic_config
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Two hosts starting at once: the second waits, then finds nothing left to do.
            connection.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=target_metadata,
                              render_as_batch=connection.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                connection.commit()


if context.is_offline_mode():
    raise SystemExit("formwise migrations run online only: use `formwise db upgrade`.")
run_migrations_online()
