"""The app class: FormwiseFlask remembers which functions are coroutines, and still treats
an ``async def`` as Flask does."""

from __future__ import annotations

import pytest

from formwise.service.app import FormwiseFlask


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
