"""A SIGHUP reload (service/gunicorn_config.py, on_reload) must let the old app go: wsgi.py
freezes what start-up made, and a frozen app's reference cycles are never collected."""

from __future__ import annotations

import gc
import logging
import weakref
from types import SimpleNamespace

from service import create_app, gunicorn_config


def test_a_reload_frees_the_app_that_start_up_froze():
    old = create_app({"TESTING": True})
    server = SimpleNamespace(cfg=SimpleNamespace(preload_app=True), app=SimpleNamespace(callable=old),
                             log=logging.getLogger("formwise.tests.reload"))
    old_app = weakref.ref(old)
    del old
    gc.freeze()  # as wsgi.py does after the first start
    try:
        gunicorn_config.on_reload(server)
        gc.collect()
        assert server.app.callable is not None and old_app() is None
        assert gc.get_freeze_count() > 0  # the fresh app is frozen in turn
    finally:
        gc.unfreeze()
