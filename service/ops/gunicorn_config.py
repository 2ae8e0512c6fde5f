"""gunicorn settings for formwise (``formwise serve`` and ``gunicorn -c gunicorn.conf.py``).

Production defaults: the app is loaded once before forking (preload), one worker per CPU
this process may use unless FORMWISE_WORKERS says otherwise, bounded timeouts and a
graceful shutdown that lets a worker finish its request.

SIGHUP reloads the knowledge base and the model without dropping a request. With preload,
gunicorn re-forks its new workers from the app the master already holds, so re-reading
files in a worker would be too late and re-reading them in every worker wasteful: the
master builds a fresh app in ``on_reload`` (before the new workers fork), and keeps the
old one when the new files do not load. The listening socket stays open throughout, the
new workers start accepting, and the old ones finish their requests and exit.

Metrics: prometheus-client's multiprocess mode needs PROMETHEUS_MULTIPROC_DIR before the
app imports it, so it is set here, when gunicorn reads this file (a fresh folder, unless
the operator names one); stale files are wiped once at start, a dead worker's live gauges
are dropped when it exits, and a folder made here is removed when the master exits."""

import os

# gevent's monkey-patching, in the master before anything the app imports (it is preloaded),
# so every module sees cooperative sockets, ssl and locks from the start. Only when gunicorn
# reads this file ("__config__"), never when a test or the CLI imports it; gunicorn.conf.py
# does the same before it imports this module.
if __name__ == "__config__" and os.environ.get("FORMWISE_WORKER_CLASS", "gevent").strip().lower() == "gevent":
    from gevent import monkey

    if not monkey.is_module_patched("socket"):  # gunicorn re-reads this file on SIGHUP
        monkey.patch_all()

import gc
import shutil
import tempfile

from gunicorn.glogging import Logger

from formwise.service.settings import Settings

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROC_DIR_MADE_HERE_ENV = "FORMWISE_METRICS_DIR_MADE_HERE"

# gunicorn re-reads this file on SIGHUP: the folder set the first time is kept.
if not os.environ.get(MULTIPROC_DIR_ENV):
    os.environ[MULTIPROC_DIR_ENV] = tempfile.mkdtemp(prefix="formwise-metrics-")
    os.environ[MULTIPROC_DIR_MADE_HERE_ENV] = os.environ[MULTIPROC_DIR_ENV]


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's or taskset's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_settings = Settings()  # the environment gunicorn was started with; a bad value stops it here
bind = _settings["FORMWISE_BIND"]
workers = _settings["FORMWISE_WORKERS"] or _usable_cpus()
# Scoring is CPU-bound numpy: one worker process per CPU. Each is a gevent worker: a client
# that sends its request slowly holds a greenlet, not the worker (slowloris), and headers
# and bodies have deadlines; FORMWISE_WORKER_CLASS=sync gives one request per worker at a
# time. gunicorn's own errors (431, 400, 500) answer problem+json (service/ops/gunicorn_workers.py).
WORKER_CLASSES = {"gevent": "formwise.service.ops.gunicorn_workers.ProblemGeventWorker",
                  "sync": "formwise.service.ops.gunicorn_workers.ProblemSyncWorker"}
worker_class = WORKER_CLASSES[_settings["FORMWISE_WORKER_CLASS"]]
worker_connections = 1000  # open connections a gevent worker holds at most
preload_app = True
timeout = _settings["FORMWISE_TIMEOUT"]  # a stuck worker is killed and replaced
graceful_timeout = 30  # on SIGTERM or SIGHUP, time for a worker to finish its request
keepalive = 5
max_requests = 0
# Heartbeat files in memory, so a slow disk never gets a healthy worker killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Request lines and headers are capped; bodies are capped by the app (1 MiB, 8 MiB batch).
limit_request_line = 8190
limit_request_fields = 100
# No access log: its request line carries the query string. The app writes one JSON line
# per request instead (service/ops/observability.py), with no health data in it.
accesslog = None
errorlog = "-"
loglevel = _settings["FORMWISE_LOG_LEVEL"]
# Where the master writes its pid, for ``kill -HUP "$(cat $FORMWISE_PIDFILE)"`` (unset: none).
pidfile = _settings["FORMWISE_PIDFILE"]
# gunicorn 24+'s control socket is an admin interface formwise does not use, and its
# default path is shared by every gunicorn of the user.
control_socket_disable = True


class JsonLogger(Logger):
    """gunicorn's own log lines (boot, signals, worker deaths) as JSON, like the app's."""

    def setup(self, cfg):
        super().setup(cfg)
        from formwise.service.ops.gunicorn_workers import redact_query_strings
        from formwise.service.ops.observability import JsonFormatter

        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
            handler.addFilter(redact_query_strings)

    def access(self, resp, req, environ, request_time):
        """Never: see accesslog above."""


logger_class = JsonLogger



def on_starting(server):
    """Wipe metric files a previous run left, once (not on SIGHUP: live workers own them)."""
    folder = os.environ[MULTIPROC_DIR_ENV]
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))


def on_reload(server):
    """SIGHUP: build a fresh app (knowledge base, model, every part) in the master, so the
    workers about to fork serve it. A knowledge base that fails to load keeps the old app."""
    if not server.cfg.preload_app:
        return  # each new worker imports the app, and so reads the files, itself
    try:
        from formwise.models.knowledge.loading import default_knowledge_base
        from formwise.service.app import create_app

        default_knowledge_base.cache_clear()
        fresh_app = create_app()
    except Exception as error:
        # Data and model files hold no health data: the message names the file, row and field.
        server.log.error("reload failed, still serving the previous knowledge base and model: %s: %s",
                         type(error).__name__, error)
        return
    server.app.callable = fresh_app
    recommender = fresh_app.extensions["formwise"]
    server.log.info("reloaded knowledge base %s, model %s", recommender.version, recommender.model_version)
    # wsgi.py froze what the first start made, the old app included: frozen, its reference
    # cycles would never be collected. Thaw, collect it, and freeze the fresh app in turn.
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    """A worker ended (exit, crash or SIGKILL): drop its live gauges; its counts stay summed."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics folder if this file made it."""
    made_here = os.environ.get(MULTIPROC_DIR_MADE_HERE_ENV)
    if made_here and made_here == os.environ.get(MULTIPROC_DIR_ENV):
        shutil.rmtree(made_here, ignore_errors=True)


def pre_fork(server, worker):
    """With gevent, let the greenlets the app started in the master (the rate limiter's
    in-memory expiry timer) run to their end before forking: a child that inherits one
    half-run dies with a KeyError traceback in its log."""
    if worker_class == WORKER_CLASSES["gevent"]:
        import gevent

        gevent.sleep(0.05)
