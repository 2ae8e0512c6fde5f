"""Operations: Prometheus metrics at ``GET /metrics``, one JSON log line per request with a
request id, and security headers on every response.

Private by construction: a log line or a metric label is built only from the route
template (never the raw path or query string), the method, the status, timings, sizes and
ids, so no profile field, condition or medicine can reach it. Exceptions are logged as
their type and where they were raised, never their message.

Under gunicorn, prometheus-client runs in multiprocess mode: service/ops/gunicorn_config.py
sets ``PROMETHEUS_MULTIPROC_DIR`` before this module is imported, every worker writes its
own files there, and a scrape of any worker sums them all."""

from __future__ import annotations

import datetime
import functools
import logging
import math
import os
import re
import sys
import threading
import time

import orjson
from flask import Blueprint, Flask, Response, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from formwise.service.api import ids
from formwise.service.settings import settings_of

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON_HEADER = "HTTP_X_REQUEST_ID"
REQUEST_ID_ENVIRON = "formwise.request_id"  # where the id waits in the WSGI environ
# A caller's request id is kept when it is a plain token; anything else (spaces, quotes,
# control characters, over 128 characters) is replaced by a fresh one, so it cannot forge
# or break a log line.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:/+=~-]{1,128}")
UNMATCHED_ENDPOINT = "unmatched"
# Request log lines wait at most this long before they are written (FORMWISE_LOG_FLUSH_SECONDS).
DEFAULT_LOG_FLUSH_SECONDS = 1.0
# Pages another site may show in a frame (the widget's demo page); everything else refuses.
FRAMEABLE_PATHS = frozenset({"/demo"})
# Scripts other sites load with <script src>: they must stay loadable cross-origin.
CROSS_ORIGIN_SCRIPT_PATHS = frozenset({"/widget.js"})
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PAGE_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
)

log = logging.getLogger("formwise.requests")
blp = Blueprint("observability", __name__)

REQUESTS = Counter(
    "formwise_http_requests_total", "HTTP requests answered, by route template, method and status.",
    ["endpoint", "method", "status"],
)
REQUEST_LATENCY = Histogram(
    "formwise_http_request_duration_seconds", "Time to answer an HTTP request, by route template, method and status.",
    ["endpoint", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ANSWERS = Counter("formwise_answers_total", "Answers given (single and batch), by max_severity.", ["max_severity"])
BATCH_ROWS = Counter("formwise_batch_rows_total", "Batch rows (endpoint and files), by outcome.", ["outcome"])


def record_batch_rows(scored: int, rejected: int) -> None:
    """Count the rows of one batch (the batch endpoint, or a file scored by ``formwise score``)."""
    if scored:
        BATCH_ROWS.labels(outcome="scored").inc(scored)
    if rejected:
        BATCH_ROWS.labels(outcome="rejected").inc(rejected)


@functools.cache
def _answers_counter(severity: str):
    return ANSWERS.labels(max_severity=severity)  # labels() costs more than inc(): once per severity


def record_answers(answers: list[dict], locale: str, preferences: list[dict]) -> None:
    """Answer hook: count answers by their max_severity (the answers only, never the profiles)."""
    counts: dict[str, int] = {}
    for answer in answers:
        severity = answer["max_severity"]
        counts[severity] = counts.get(severity, 0) + 1
    for severity, count in counts.items():
        _answers_counter(severity).inc(count)


def metrics_registry() -> CollectorRegistry:
    """Every worker's metrics under gunicorn; this process's alone otherwise."""
    if os.environ.get(MULTIPROC_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@blp.get("/metrics")
def metrics():
    """Prometheus text format (not part of /openapi.json: it is for scrapers, not clients)."""
    return Response(generate_latest(metrics_registry()), mimetype=CONTENT_TYPE_LATEST)


def utc_timestamp(created: float) -> str:
    """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, the same
    text (microseconds rounded half to even, then cut to milliseconds) with the date and time
    of day built once per second: datetime was a third of a log line's cost."""
    fraction, whole = math.modf(created)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{_utc_second(int(whole))}.{micros // 1000:03d}+00:00"


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, datetime.UTC).isoformat(timespec="seconds")[:-len("+00:00")]


def _entry(created: float, level: str, logger: str, pid: int | None, message: str, request_id: str | None,
           fields: dict | None) -> dict:
    entry = {"ts": utc_timestamp(created), "level": level, "logger": logger, "pid": pid, "message": message}
    if request_id:
        entry["request_id"] = request_id
    entry.update(fields or {})
    return entry


def _json_line(entry: dict) -> str:
    return orjson.dumps(entry, default=str).decode()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id when there
    is one, and the record's ``fields``. An exception is reduced to its type and the place
    it was raised: its message or traceback could hold a profile's values."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            request_id = current_request_id()
        entry = _entry(record.created, record.levelname.lower(), record.name, record.process, record.getMessage(),
                       request_id, getattr(record, "fields", None))
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            frame = record.exc_info[2]
            while frame is not None and frame.tb_next is not None:
                frame = frame.tb_next
            if frame is not None:
                entry["exception_at"] = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}"
        return _json_line(entry)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (gunicorn's log, or a test's capture).

    Request lines (``write_line``) are written in batches, as nginx's ``access_log
    buffer= flush=`` does: a system call per request line was a twentieth of a served
    request's cost. They wait at most ``flush_seconds`` (a daemon thread writes them even
    when no request comes) or until ``MAX_PENDING_BYTES`` have gathered. Any other record
    writes them first, so the log stays in order, and ``flush()`` (which logging calls at
    exit, also in a gunicorn worker leaving on SIGTERM, SIGQUIT or its timeout) writes them
    all: only a process killed outright loses its last second of request lines.
    ``flush_seconds`` 0 writes each line at once."""

    MAX_PENDING_BYTES = 64 * 1024

    def __init__(self, flush_seconds: float = DEFAULT_LOG_FLUSH_SECONDS):
        super().__init__(sys.stderr)
        self.flush_seconds = flush_seconds
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._flusher: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the property always follows sys.stderr
        pass

    def write_line(self, line: str) -> None:
        """What ``emit`` does with a record once formatted, for a line formatted without one."""
        with self.lock:
            self._pending.append(line)
            self._pending_bytes += len(line) + 1
            if self.flush_seconds <= 0 or self._pending_bytes >= self.MAX_PENDING_BYTES:
                self._write_pending()
            elif self._flusher is None:
                self._start_flusher()

    def emit(self, record: logging.LogRecord) -> None:
        if self._pending:  # logging holds self.lock here
            self._write_pending()
        super().emit(record)

    def flush(self) -> None:
        with self.lock:
            if self._pending:
                self._write_pending()
            else:
                super().flush()

    def _write_pending(self) -> None:
        """Every pending line in one write (the caller holds self.lock)."""
        text = self.terminator.join(self._pending) + self.terminator
        self._pending.clear()
        self._pending_bytes = 0
        try:
            stream = self.stream
            stream.write(text)
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"name": log.name, "msg": text}))

    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(target=self._flush_every_period, name="formwise-log-flush", daemon=True)
        self._flusher.start()

    def _flush_every_period(self) -> None:
        """Until the period is set to 0 (from then on each line is written at once)."""
        while (seconds := self.flush_seconds) > 0:
            time.sleep(seconds)
            if self._pending:
                self.flush()
        with self.lock:
            self._flusher = None
            if self._pending:
                self._write_pending()

    def _after_fork(self) -> None:
        """A forked child starts empty: the parent writes what it had pending, and the
        parent's flusher thread did not come along."""
        self._pending = []
        self._pending_bytes = 0
        self._flusher = None


def _sole_handler() -> StderrHandler | None:
    """The handler a request record reaches when it is the only one and nothing but
    JsonFormatter could shape the line (no filter, no other handler up to the root): the
    usual case under gunicorn. None otherwise: a test's capture or an operator's handler."""
    if log.disabled or log.filters:
        return None
    found = None
    logger = log
    while logger is not None:
        for handler in logger.handlers:
            if (found is not None or type(handler) is not StderrHandler or handler.filters
                    or handler.level > logging.INFO or type(handler.formatter) is not JsonFormatter):
                return None
            found = handler
        logger = logger.parent if logger.propagate else None
    return found


class _Process:
    """This process's id, asked of the system once per process rather than per log line
    (os.getpid is a system call); a forked child asks again."""

    def __init__(self):
        self.id = os.getpid()
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self.id = os.getpid()


_process = _Process()


def _log_request(request_id: str, fields: dict) -> None:
    """The request's log line (the caller has checked that INFO is enabled). When
    ``_sole_handler`` finds the one handler the record can reach, the line that handler would
    write is written directly: making the LogRecord and walking loggers and handlers were most
    of the line's cost, a tenth of the service's own work per request. Otherwise the record
    goes through logging as any other."""
    handler = _sole_handler()
    if handler is None:
        log.info("request", extra={"request_id": request_id, "fields": fields})
        return
    pid = _process.id if logging.logProcesses else None
    handler.write_line(_json_line(_entry(time.time(), "info", log.name, pid, "request", request_id, fields)))


def configure_logging(level: str | int = "INFO", flush_seconds: float | None = None) -> None:
    """JSON lines to stderr for the ``formwise`` loggers, installed once per process.
    Records still propagate, so a test's or an operator's root handlers see them too.
    ``flush_seconds``: how long request lines may wait to be written (StderrHandler)."""
    logger = logging.getLogger("formwise")
    handler = next((handler for handler in logger.handlers if isinstance(handler, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    if flush_seconds is not None:
        handler.flush_seconds = flush_seconds
    logger.setLevel(level.upper() if isinstance(level, str) else level)


@functools.cache
def _template_of(rule_text: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule_text)


def route_template(rule) -> str:
    """``/v1/forms/<string:form_id>`` as ``/v1/forms/{form_id}``: bounded, and free of what callers sent."""
    if rule is None:
        return UNMATCHED_ENDPOINT
    return _template_of(rule.rule)


@functools.cache
def _request_metrics(endpoint: str, method: str, status: str):
    """The labelled counter and histogram of one (route, method, status): looked up once,
    since ``labels()`` costs more than the observation itself."""
    return (REQUESTS.labels(endpoint=endpoint, method=method, status=status),
            REQUEST_LATENCY.labels(endpoint=endpoint, method=method, status=status))


@functools.cache
def _security_header_plan(html: bool, ancestors: str | None, script: bool, no_store: bool) -> tuple:
    """``(lowercase name, name, value)`` of every security header one kind of response gets;
    ``ancestors`` is None for a page that may not be framed. A handful of kinds, each built once."""
    frameable = ancestors is not None
    wanted = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]
    if html:
        wanted.append(("Content-Security-Policy",
                       PAGE_CONTENT_SECURITY_POLICY.format(ancestors=ancestors if frameable else "'none'")))
    else:
        wanted.append(("Content-Security-Policy", API_CONTENT_SECURITY_POLICY))
    if not frameable:
        wanted.append(("X-Frame-Options", "DENY"))
    if script:
        wanted.append(("Cross-Origin-Resource-Policy", "cross-origin"))
    if no_store:
        wanted.append(("Cache-Control", "no-store"))  # answers are derived from health data
    return tuple((name.lower(), name, value) for name, value in wanted)


class RequestObservability:
    """WSGI middleware around the Flask app: every response, whichever part answered it
    (a view, an error handler, a 401 or 429 from a before-request hook, routing's 404 and
    405), gets its request id and the security headers a view has not set itself, and every
    request is timed, counted and logged in one line once the app has answered.

    In the WSGI layer rather than in Flask hooks: it sees every response, including those
    no after-request hook sees, its headers are appended to the list the server sends
    instead of going through werkzeug's Headers one validated call at a time (the values are
    constants and an id that REQUEST_ID_PATTERN has checked), and it looks up no
    request-context proxy."""

    def __init__(self, wsgi_app, frame_ancestors: str):
        self.wsgi_app = wsgi_app
        self.frame_ancestors = frame_ancestors  # FORMWISE_FRAME_ANCESTORS, for the framed pages

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        given = environ.get(REQUEST_ID_ENVIRON_HEADER, "")
        request_id = given if REQUEST_ID_PATTERN.fullmatch(given) else ids.request_id()
        environ[REQUEST_ID_ENVIRON] = request_id
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        answered = []

        def start_with_headers(status, headers, exc_info=None):
            present = {name.lower() for name, _ in headers}
            if "x-request-id" in present:
                headers[:] = [(name, value) for name, value in headers if name.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
            ancestors = self.frame_ancestors if path in FRAMEABLE_PATHS else None
            plan = _security_header_plan(content_type.split(";", 1)[0].strip().lower() == "text/html", ancestors,
                                         path in CROSS_ORIGIN_SCRIPT_PATHS,
                                         method == "POST" and path.startswith("/v1/"))
            headers.extend((name, value) for lower, name, value in plan if lower not in present)
            # The Flask request (it knows the matched rule) is in the environ until the app
            # has answered: Flask drops it when the request context ends.
            current = environ.get("werkzeug.request")
            answered[:] = (status, headers, route_template(getattr(current, "url_rule", None)))
            return start_response(status, headers, exc_info)

        body = self.wsgi_app(environ, start_with_headers)
        if answered:
            _record_request(environ, method, *answered, time.perf_counter() - started, request_id)
        return body


def _record_request(environ: dict, method: str, status_line: str, headers: list, endpoint: str, duration: float,
                    request_id: str) -> None:
    """The request's metrics and log line, from the route template, never the raw path."""
    status = int(status_line[:3])
    counter, latency = _request_metrics(endpoint, method, str(status))
    counter.inc()
    latency.observe(duration)
    if log.isEnabledFor(logging.INFO):
        length = next((value for name, value in headers if name.lower() == "content-length"), None)
        _log_request(request_id, {
            "method": method,
            "endpoint": endpoint,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "request_bytes": _whole_number(environ.get("CONTENT_LENGTH")) or 0,
            "response_bytes": _whole_number(length),
        })


def _whole_number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def current_request_id() -> str | None:
    """The id of the request being answered, for log lines written while answering it."""
    return request.environ.get(REQUEST_ID_ENVIRON) if has_request_context() else None


def init_app(app: Flask, api=None) -> None:
    """Metrics, request logs and headers for every response; the answer-severity hook."""
    settings = settings_of(app)
    configure_logging(settings["FORMWISE_LOG_LEVEL"], settings["FORMWISE_LOG_FLUSH_SECONDS"])
    app.wsgi_app = RequestObservability(app.wsgi_app, settings["FORMWISE_FRAME_ANCESTORS"])
    app.extensions["formwise_answer_hooks"].append(record_answers)
