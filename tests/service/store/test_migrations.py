"""Processes that start at once on a fresh database (gunicorn workers without preload,
several hosts) migrate it one after the other, and all of them start."""

from __future__ import annotations

import multiprocessing

import pytest

from formwise.service.store import database as db

PROCESSES = 4


def _upgrade_when_all_are_ready(url: str, barrier, results) -> None:
    engine = db.make_engine(url)
    try:
        barrier.wait(timeout=60)
        results.put(("ok", db.upgrade(engine)))
    except Exception as error:  # reported to the test, which names it
        results.put(("failed", f"{type(error).__name__}: {error}"))
    finally:
        engine.dispose()


def test_processes_starting_at_once_migrate_in_turn(database_url):
    context = multiprocessing.get_context("fork")  # the parent's imports, as gunicorn's workers have them
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(target=_upgrade_when_all_are_ready, args=(database_url, barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == [("ok", db.head_revision())] * PROCESSES
    assert db.current_revision(db.make_engine(database_url)) == db.head_revision()


def test_the_sqlite_lock_lies_beside_the_database_file(tmp_path):
    database = tmp_path / "formwise.db"
    engine = db.make_engine(f"sqlite:///{database}")
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
    assert (tmp_path / ("formwise.db" + db.SQLITE_MIGRATION_LOCK_SUFFIX)).is_file()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_needs_no_lock_file(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = db.make_engine(url)
    try:
        with db.migration_lock(engine):
            pass
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []
