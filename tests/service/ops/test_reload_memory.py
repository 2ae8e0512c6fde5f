"""A SIGHUP reload (service/ops/gunicorn_config.py, on_reload) must let the old app go: wsgi.py
freezes what start-up made, and a frozen app's reference cycles are never collected.

Run in a child process, as tests/e2e/test_reload.py reads the settings: the settings file
sets PROMETHEUS_MULTIPROC_DIR as it loads, which would change this process's /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

SCRIPT = """
import gc, json, logging, weakref
from types import SimpleNamespace
import formwise.service.ops.gunicorn_config as settings
from formwise.service.app import create_app

old = create_app({"TESTING": True})
server = SimpleNamespace(cfg=SimpleNamespace(preload_app=True), app=SimpleNamespace(callable=old),
                         log=logging.getLogger("formwise.tests.reload"))
old_app = weakref.ref(old)
del old
gc.freeze()  # as wsgi.py does after the first start
settings.on_reload(server)
gc.collect()
print(json.dumps({"old_app_freed": old_app() is None, "swapped": server.app.callable is not None,
                  "fresh_app_frozen": gc.get_freeze_count() > 0}))
settings.on_exit(None)
"""


def test_a_reload_frees_the_app_that_start_up_froze():
    env = {key: value for key, value in os.environ.items()
           if key not in ("PROMETHEUS_MULTIPROC_DIR", "FORMWISE_METRICS_DIR_MADE_HERE")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"old_app_freed": True, "swapped": True, "fresh_app_frozen": True}
