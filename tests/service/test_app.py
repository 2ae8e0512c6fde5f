"""The app class: FormwiseFlask remembers which functions are coroutines, and still treats
an ``async def`` as Flask does."""

from __future__ import annotations

import pytest

from formwise.service.app import FormwiseFlask
from tests.conftest import PROJECT_ROOT


def test_sync_functions_and_methods_come_back_as_they_are():
    app = FormwiseFlask(__name__)

    def view():
        return "ok"

    class Handler:
        def get(self):
            return "ok"

    handler = Handler()
    for _ in range(2):  # the second time from memory
        assert app.ensure_sync(view) is view
        assert app.ensure_sync(handler.get) == handler.get


def test_coroutine_functions_still_go_through_async_to_sync(monkeypatch):
    app = FormwiseFlask(__name__)
    wrapped = []
    monkeypatch.setattr(app, "async_to_sync", lambda func: wrapped.append(func) or "wrapped")

    async def view():
        return "ok"

    assert app.ensure_sync(view) == "wrapped"
    assert app.ensure_sync(view) == "wrapped"
    assert wrapped == [view, view]


@pytest.mark.parametrize("func", [print, len])
def test_builtins_are_not_coroutines(func):
    assert FormwiseFlask(__name__).ensure_sync(func) is func


def test_the_server_and_the_commands_use_one_instance_folder(app):
    """With no FORMWISE_DATA_DIR, the embedded database is in the instance folder: the server's
    app and the commands' app must agree on it (issue 21: `shops create` once wrote to
    .venv/var while `serve` read ./instance, and the new key got 401)."""
    from formwise.service.app import DATABASE_PARTS, create_app, instance_folder

    assert instance_folder() == PROJECT_ROOT / "instance"  # a checkout (the wheel: tests/test_packaging.py)
    assert app.instance_path == str(instance_folder())
    assert create_app(parts=()).instance_path == str(instance_folder())
    assert create_app(parts=DATABASE_PARTS).instance_path == str(instance_folder())
