"""A per-request deadline for the work that grows with the request (a batch's items, a
shop's products): past it the request stops and answers a 503 problem with Retry-After,
instead of running on until gunicorn kills the worker (an HTML 500 and a lost worker).

``FORMWISE_REQUEST_DEADLINE_SECONDS`` (default 20, below gunicorn's 30 s worker timeout)
counts from the start of the view that calls :func:`start`. The checks are cooperative:
the loops that can be long call :func:`check` every few dozen items, so a single answer,
which cannot be long, pays nothing."""

from __future__ import annotations

import time

from flask import Flask, g

from formwise.service.api.errors import problem
from formwise.service.settings import settings_of

clock = time.monotonic  # tests move it


class DeadlineExceeded(Exception):
    """The request used up its time; answered as a 503 problem."""


def start(budget: float) -> None:
    """This request must be done within ``budget`` seconds from now."""
    g.formwise_deadline = clock() + budget


def check() -> None:
    """Raises DeadlineExceeded when this request has a deadline and it has passed."""
    deadline = g.get("formwise_deadline")
    if deadline is not None and clock() > deadline:
        raise DeadlineExceeded


def init_app(app: Flask, api=None) -> None:
    @app.errorhandler(DeadlineExceeded)
    def _too_long(error):
        budget = settings_of(app)["FORMWISE_REQUEST_DEADLINE_SECONDS"]
        return problem(503, "Service Unavailable", f"The request took longer than its {budget:g} s deadline and was "
                       "stopped; send fewer items or a smaller limit, or try again later.",
                       slug="deadline-exceeded", headers={"Retry-After": "5"})
