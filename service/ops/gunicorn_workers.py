"""The service's gunicorn workers. Both answer the errors gunicorn itself raises (a request
line or headers too long, a malformed request, an app that fails outside Flask) as
application/problem+json like every other error of the service, not as an HTML page.

``ProblemGeventWorker`` (production): each connection is a greenlet, so a client that sends
its request slowly holds a greenlet and a socket, never the worker; the request line and
headers must arrive within the keep-alive time (5 s) and the body within
``FORMWISE_BODY_TIMEOUT`` seconds of them (default 15), else the connection is closed or
answered 408. Scoring is CPU-bound and never yields, so one worker per CPU still does one
request's work at a time, as the sync worker did.

``ProblemSyncWorker``: one request at a time per worker (``FORMWISE_WORKER_CLASS=sync``)."""

from __future__ import annotations

import re
import time

import orjson
from gunicorn import util
from gunicorn.workers.sync import SyncWorker

from formwise.service.api.errors import BodyTimeout


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error``, with an RFC 9457 body."""
    body = orjson.dumps({"type": "about:blank", "title": reason, "status": status_int,
                         "detail": mesg or "The server could not handle the request."})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body)


class ProblemSyncWorker(SyncWorker):
    """A sync worker handles one request at a time, so swapping the writer for the length
    of one ``handle_error`` call affects no other request."""

    def handle_error(self, req, client, addr, exc):
        html_writer = util.write_error
        util.write_error = write_problem
        try:
            super().handle_error(req, client, addr, exc)
        finally:
            util.write_error = html_writer


def body_timeout() -> float:
    from formwise.service.settings import Settings

    return Settings()["FORMWISE_BODY_TIMEOUT"]  # a worker process: the environment gunicorn started with


class BodyWithDeadline:
    """A request body (gunicorn's ``wsgi.input``) that must be read by a fixed moment: a read
    still waiting for bytes then raises BodyTimeout, which the app answers 408."""

    def __init__(self, request, seconds: float):
        self._request, self._body, self._ends = request, request.body, time.monotonic() + seconds

    def _within_deadline(self, read, size):
        import gevent

        remaining = self._ends - time.monotonic()
        try:
            if remaining <= 0:
                raise BodyTimeout
            with gevent.Timeout(remaining, BodyTimeout):
                return read(size)
        except BodyTimeout:
            self._request.must_close = True  # the rest of the body is not read: no next request
            raise

    def read(self, size=None):
        return self._within_deadline(self._body.read, size)

    def readline(self, size=None):
        return self._within_deadline(self._body.readline, size)

    def readlines(self, size=None):
        return self._within_deadline(self._body.readlines, size)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


try:
    from gunicorn.workers.ggevent import GeventWorker
except ImportError:  # gevent missing: only the sync worker can be used
    GeventWorker = None

if GeventWorker is not None:
    import gevent

    class ProblemGeventWorker(GeventWorker):
        """gunicorn's gevent worker with problem+json errors and a body deadline."""

        def init_process(self):
            self.body_seconds = body_timeout()
            # Many greenlets may answer errors at once: the writer is set for the whole process
            # instead of swapped per error as in the sync worker.
            util.write_error = write_problem
            super().init_process()

        def handle_request(self, listener_name, req, sock, addr):
            req.body = BodyWithDeadline(req, self.body_seconds)
            try:
                return super().handle_request(listener_name, req, sock, addr)
            finally:
                # Let every other ready connection go first. Otherwise a connection whose
                # next request has already arrived is read again without a switch, and a few
                # busy connections keep the worker while the others wait (measured with wrk,
                # 16 connections: p50 0.8 ms but p99 600 ms; with the yield, fair turns).
                gevent.sleep(0)


_QUERY_STRING = re.compile(r"\?[^\s'\"]*")


def redact_query_strings(record) -> bool:
    """gunicorn's error lines quote the request ("Error handling request GET /x?q=...",
    "Invalid request ... line 'GET /x?...'"): the query string, where a profile could ride,
    is dropped before the line is written."""
    message = record.getMessage()
    if "?" in message:
        record.msg, record.args = _QUERY_STRING.sub("?[query removed]", message), None
    return True
