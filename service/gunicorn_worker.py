"""gunicorn's sync worker, answering the errors gunicorn itself raises (a request line or
headers too long, a malformed request, an app that fails outside Flask) as
application/problem+json like every other error of the service, not as an HTML page."""

from __future__ import annotations

import re

import orjson
from gunicorn import util
from gunicorn.workers.sync import SyncWorker


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


_QUERY_STRING = re.compile(r"\?[^\s'\"]*")


def redact_query_strings(record) -> bool:
    """gunicorn's error lines quote the request ("Error handling request GET /x?q=...",
    "Invalid request ... line 'GET /x?...'"): the query string, where a profile could ride,
    is dropped before the line is written."""
    message = record.getMessage()
    if "?" in message:
        record.msg, record.args = _QUERY_STRING.sub("?[query removed]", message), None
    return True
