"""Shared fixtures, in the flaskr tutorial's shape: app, client, runner; plus the
recommender and the shared vignettes."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from formwise.models.recommender import Recommender
from formwise.service.app import create_app

# Tests never use a developer's database, Redis or key setting, and never write the service's
# SQLite file into the source tree: a throwaway data folder, inherited by test servers.
for _setting in ("DATABASE_URL", "REDIS_URL", "FORMWISE_REQUIRE_API_KEY", "FORMWISE_RATE_LIMIT",
                 "FORMWISE_SECRET_RATE_LIMIT", "FORMWISE_TRUSTED_PROXIES", "FORMWISE_RETENTION_DAYS",
                 "FORMWISE_REQUEST_DEADLINE_SECONDS", "FORMWISE_SECRET_KEY"):
    os.environ.pop(_setting, None)
# The suite calls from one address thousands of times a minute (fuzzing, 10,000 profiles over
# gunicorn, 2,000 forged posts): the per-address and per-answer limits are lifted for it, and
# the tests of those limits (tests/service/shops/test_limits.py) set them in the app's config.
os.environ.update({"FORMWISE_OPEN_RATE_LIMIT": "off", "FORMWISE_CLIENT_RATE_LIMIT": "1000000/minute",
                   "FORMWISE_ANSWER_RATE_LIMIT": "1000000/hour"})
os.environ["FORMWISE_DATA_DIR"] = tempfile.mkdtemp(prefix="formwise-tests-")
atexit.register(shutil.rmtree, os.environ["FORMWISE_DATA_DIR"], True)
POSTGRES_URL = os.environ.get("FORMWISE_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
VIGNETTES = SHARED_DIR / "vignettes" / "public.jsonl"


@pytest.fixture(scope="session")
def recommender() -> Recommender:
    return Recommender()


@pytest.fixture()
def app():
    """A fresh app for each test (flaskr's pattern): one test's limits, hooks and settings
    never reach the next. Building one takes about 25 ms once the engine is compiled."""
    return create_app({"TESTING": True})


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def runner():
    from click.testing import CliRunner

    return CliRunner()


def load_vignettes() -> list[dict]:
    if not VIGNETTES.is_file():
        return []
    return [json.loads(line) for line in VIGNETTES.read_text().splitlines() if line.strip()]


def postgres_unreachable() -> str | None:
    """Why the test PostgreSQL cannot be used, or None when it can."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except sa.exc.OperationalError as error:
        return str(error.orig).strip().splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    """The service database, once embedded (SQLite) and once on PostgreSQL (a fresh schema,
    dropped afterwards); the PostgreSQL case is skipped only when the server is unreachable."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'formwise.db'}"
        return
    reason = postgres_unreachable()
    if reason:
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {reason}")
    import sqlalchemy as sa

    schema = f"formwise_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def db_app(database_url):
    """An app on ``database_url`` (migrated on creation), shared by one test module: its tests
    use shops and catalogs made once per module, each with its own name, on a database that
    costs a migration to make (and a schema on PostgreSQL)."""
    from formwise.service.store.database import engine_of

    application = create_app({"TESTING": True, "DATABASE_URL": database_url})
    yield application
    engine_of(application).dispose()
