"""Picked up by gunicorn when started from the project folder; the settings live in the
package so that an installed ``formwise serve`` uses the same ones."""

import os

if os.environ.get("FORMWISE_WORKER_CLASS", "gevent").strip().lower() == "gevent":
    from gevent import monkey  # before anything the app imports: see service/ops/gunicorn_config.py

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()

from formwise.service.ops.gunicorn_config import *  # noqa: F403
