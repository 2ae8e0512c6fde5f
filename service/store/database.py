"""The service's own database: shops, keys, catalogs, attribution ids, outcomes, feedback.

Embedded by default (a SQLite file in ``FORMWISE_DATA_DIR`` or the Flask instance folder,
nothing to set up); ``DATABASE_URL`` selects PostgreSQL for several hosts. The schema is
owned by the Alembic migrations in ``service/store/migrations``: they run on first start and with
``formwise db upgrade``. It never holds a profile: only ids, shops, products and events."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from formwise.service.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_FILE_NAME = "formwise.db"
# A lock id for PostgreSQL so that two hosts starting at once do not migrate twice.
MIGRATION_LOCK_ID = 740_312_555
# Beside an SQLite file: the lock that two processes starting at once take in turn.
SQLITE_MIGRATION_LOCK_SUFFIX = ".migrate.lock"


def normalize_database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` (what hosting platforms hand out) use psycopg 3,
    the driver this project installs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def database_url_for(app: Flask) -> str:
    """DATABASE_URL from the app config or the environment, else the embedded SQLite file."""
    settings = app.extensions.get("formwise_settings") or Settings(app.config)
    url = settings["DATABASE_URL"]
    if url:
        return normalize_database_url(url)
    folder = Path(settings["FORMWISE_DATA_DIR"] or app.instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / SQLITE_FILE_NAME}"


def _tune_sqlite(dbapi_connection, _record) -> None:
    """WAL lets gunicorn workers read while one writes; the busy timeout makes a writer
    wait for another's lock instead of failing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _tune_sqlite)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def alembic_config(engine: Engine):
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[sa.Connection]:
    """A connection to migrate with, held under a lock so that processes starting at once
    (gunicorn workers without preload, several hosts) migrate one after the other: the
    second waits, then finds nothing left to do. Without it, both created the first tables
    and one failed to start ("table alembic_version already exists").

    PostgreSQL: a session advisory lock on the connection. An SQLite file: an exclusive lock
    on a file beside it, taken before the connection opens (opening one sets WAL mode, which
    itself needs the database for a moment; SQLite's own locks last one transaction, and
    Alembic's DDL on SQLite spans several). In-memory SQLite is one process's own."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        import fcntl  # POSIX, as gunicorn is

        with open(database + SQLITE_MIGRATION_LOCK_SUFFIX, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
            try:
                with engine.connect() as connection:
                    yield connection
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return
    with engine.connect() as connection:
        if engine.dialect.name != "postgresql":
            yield connection
            return
        connection.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
        try:
            yield connection
        finally:
            connection.rollback()  # a failed migration's transaction would refuse the unlock
            connection.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()


def upgrade(engine: Engine) -> str:
    """Bring the schema to the newest migration; returns the revision it is at."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    command.upgrade(alembic_config(engine), "head")
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() or ""


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@functools.cache
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()


def init_app(app: Flask, api=None) -> None:
    """Open the database, migrate it on first start, and tell /health/ready about it."""
    engine = make_engine(database_url_for(app))
    if current_revision(engine) != head_revision():
        upgrade(engine)
    # gunicorn preloads the app and then forks: a child must not reuse the parent's
    # pooled connections, so the parent leaves the pool empty.
    engine.dispose()
    app.extensions["formwise_db"] = sessionmaker(engine, expire_on_commit=False)
    app.extensions["formwise_readiness_checks"]["database"] = lambda: check_ready(engine)


def check_ready(engine: Engine) -> None:
    """Raises when the database cannot answer or is behind the code's migrations."""
    revision = current_revision(engine)
    if revision != head_revision():
        raise RuntimeError(f"database schema is at {revision}, the code needs {head_revision()}")


def engine_of(app: Flask | None = None) -> Engine:
    return (app or current_app).extensions["formwise_db"].kw["bind"]


@contextlib.contextmanager
def connection_scope() -> Iterator[sa.Connection]:
    """One short Core transaction, for the statements every keyed request runs (a key
    lookup, the shop's products, the answer ids): no ORM session to set up and tear down."""
    with engine_of().begin() as connection:
        yield connection


@contextlib.contextmanager
def session_scope() -> Iterator[Session]:
    """One short transaction: committed when the block ends, rolled back when it raises."""
    session = current_app.extensions["formwise_db"]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
