"""gunicorn settings for formwise (``formwise serve`` and ``gunicorn -c gunicorn.conf.py``).

Production defaults: the app is loaded once before forking (preload), one worker per CPU
unless FORMWISE_WORKERS says otherwise, and bounded timeouts with a graceful shutdown."""

import multiprocessing
import os

bind = os.environ.get("FORMWISE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("FORMWISE_WORKERS") or multiprocessing.cpu_count())
worker_class = "sync"
preload_app = True
timeout = 30
graceful_timeout = 30
keepalive = 5
max_requests = 0
# Request lines and headers are capped; bodies are capped by the app (1 MiB, 8 MiB batch).
limit_request_line = 8190
limit_request_fields = 100
# No access log here: the app writes its own lines, with no health data in them.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("FORMWISE_LOG_LEVEL", "info")
