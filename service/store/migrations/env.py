"""Alembic environment for formwise: the engine comes from formwise.service.store.database (never from an ini
file), so ``formwise db upgrade``, the first start and the tests all migrate the same way.

To add a migration, copy the newest file in versions/, give it a new ``revision`` with the
previous one as ``down_revision``, and keep its operations portable between SQLite and
PostgreSQL (``op.batch_alter_table`` for changes to existing tables)."""

from __future__ import annotations

from alembic import context

from formwise.service.store.database import migration_lock
from formwise.service.store.tables import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = context.config.attributes["engine"]  # set by formwise.service.store.database.alembic_config
    with migration_lock(engine) as connection:
        # Processes starting at once take the lock in turn; the later ones find nothing to do.
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("formwise migrations run online only: use `formwise db upgrade`.")
run_migrations_online()
