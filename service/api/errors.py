"""One place that turns every error into ``application/problem+json`` (RFC 9457).

Validation errors carry ``errors``: one ``{field, message}`` per bad field, the field
written as a dotted path (``profile.conditions.1``)."""

from __future__ import annotations

import http
import logging

import orjson
from flask import Response, current_app, has_request_context, request
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException, InternalServerError

from formwise.service.api.answer_schemas import ProblemSchema
from formwise.service.config import MIB, Config

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "tag:formwise,2026:problem/"
log = logging.getLogger("formwise.errors")


def log_unexpected(error: BaseException) -> None:
    """Log where an unexpected error happened, but not its message or locals: either
    could hold a profile's health data."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "unknown"
    log.error("unhandled %s at %s", type(error).__name__, where)


def flatten_messages(messages, prefix: str = "") -> list[dict]:
    """marshmallow's nested {field: [messages]} as a flat list of {field, message}."""
    if isinstance(messages, dict):
        flat = []
        for key, value in messages.items():
            if key == "_schema":  # marshmallow's whole-object errors belong to the object itself
                name = prefix
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            flat.extend(flatten_messages(value, name))
        return flat
    if isinstance(messages, (list, tuple)):
        if all(isinstance(item, str) for item in messages):
            return [{"field": prefix or "body", "message": item} for item in messages]
        flat = []
        for item in messages:
            flat.extend(flatten_messages(item, prefix))
        return flat
    return [{"field": prefix or "body", "message": str(messages)}]


def problem(status: int, title: str, detail: str | None = None, errors: list[dict] | None = None,
            slug: str | None = None, headers: dict | None = None) -> Response:
    return problem_from_body(problem_body(status, title, detail, errors, slug), headers)


def problem_from_body(body: dict, headers: dict | None = None) -> Response:
    response = Response(orjson.dumps(body), status=body["status"], mimetype=PROBLEM_MEDIA_TYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def field_problem(field: str, message: str) -> Response:
    """A 422 validation problem about one field."""
    return problem_from_body(validation_problem_body({field: [message]}))


def problem_body(status: int, title: str, detail: str | None = None, errors: list[dict] | None = None,
                 slug: str | None = None) -> dict:
    body = {
        "type": PROBLEM_TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if has_request_context():
        body["instance"] = request.path
    if errors:
        body["errors"] = errors
    return body


MAX_LISTED_ERRORS = 100  # a 120 KB body of empty rows once answered a 6 MB error


def validation_problem_body(messages, prefix: str = "") -> dict:
    errors = flatten_messages(messages, prefix)
    detail = "; ".join(f"{item['field']}: {item['message']}" for item in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    if len(errors) > MAX_LISTED_ERRORS:
        detail += f" (errors lists the first {MAX_LISTED_ERRORS})"
    return problem_body(422, "Request validation failed", detail, errors[:MAX_LISTED_ERRORS], "validation-error")



def mebibytes(size: int) -> str:
    """A body size cap as people read it: ``1 MiB``, ``1.5 MiB``."""
    return f"{size / MIB:g} MiB"


# What the error responses mean in this API, for the OpenAPI document (and so /docs).
RESPONSE_MEANINGS = {
    http.HTTPStatus.BAD_REQUEST: "The body is not valid JSON, or nests too deep: detail says where.",
    http.HTTPStatus.UNAUTHORIZED: "No API key, or an unknown or revoked one (when keys are required).",
    http.HTTPStatus.FORBIDDEN: "The key may not do this: the wrong kind of key, or a page from an origin the "
                               "shop has not registered.",
    http.HTTPStatus.NOT_FOUND: "No such resource (an unknown form id, path or link).",
    http.HTTPStatus.CONFLICT: "Already recorded (feedback on this form of this answer).",
    http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE: f"The body is over {mebibytes(Config.SINGLE_MAX_CONTENT_LENGTH)} "
                                              f"({mebibytes(Config.MAX_CONTENT_LENGTH)} for the batch endpoint), or "
                                              "a batch would cost more than the configured ceiling.",
    http.HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "Send the body as application/json (or text/csv where the operation "
                                            "says so).",
    http.HTTPStatus.UNPROCESSABLE_ENTITY: "Validation failed: errors lists each bad field (field, message) and "
                                          "what is allowed; nothing was done.",
    http.HTTPStatus.TOO_MANY_REQUESTS: "Over a rate limit: wait the seconds in Retry-After.",
    http.HTTPStatus.SERVICE_UNAVAILABLE: "A dependency (database, rate-limit store) cannot be reached, or the "
                                         "request passed its deadline: try again after Retry-After.",
}


class ProblemApi(Api):
    """flask-smorest's Api with RFC 9457 error bodies (the maintainers' advice in
    flask-smorest issue #310: override handle_http_exception)."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self):
        """Document every error response as application/problem+json."""
        for status in http.HTTPStatus:
            response = {"description": RESPONSE_MEANINGS.get(status, status.phrase)}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_MEDIA_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Any other error: an application/problem+json body (RFC 9457) whose title and "
                                   "detail say what went wrong.", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_MEDIA_TYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        headers = dict(data.get("headers") or {})
        messages = data.get("messages") or data.get("errors")
        if messages:
            # webargs nests messages under the location ("json"); the body is the root.
            if isinstance(messages, dict) and set(messages) <= {"json", "query", "form", "files", "headers"}:
                messages = {k: v for location in messages.values() for k, v in location.items()}
            if error.code == 422:
                body = validation_problem_body(messages)
            else:
                errors = flatten_messages(messages)
                detail = "; ".join(f"{item['field']}: {item['message']}" for item in errors)
                slug = "invalid-json" if error.code == 400 else None
                body = problem_body(error.code, error.name, detail, errors, slug)
            return problem_from_body(body, headers)
        if isinstance(error, InternalServerError):
            original = getattr(error, "original_exception", None)
            if original is not None:  # raised after the view (an after-request hook): Flask wraps it
                outage = dependency_problem(original)
                if outage is not None:
                    return outage
                log_unexpected(original)
        detail = data.get("message") or error.description
        if error.code == 413:
            config = current_app.config
            detail = (f"The request body is too large: at most {mebibytes(config['SINGLE_MAX_CONTENT_LENGTH'])}, "
                      f"or {mebibytes(config['MAX_CONTENT_LENGTH'])} for /v1/recommendations/batch.")
        slug = None if error.code in (404, 405, 413, 415) else (error.name or "error").lower().replace(" ", "-")
        if error.code == 405 and error.valid_methods:
            headers.setdefault("Allow", ", ".join(error.valid_methods))
        return problem(error.code or 500, error.name, detail, slug=slug, headers=headers)


def register_fallback_handler(app) -> None:
    """Anything that is not an HTTPException still answers a problem, never an HTML 500."""

    @app.errorhandler(Exception)
    def _unexpected(error):
        if isinstance(error, HTTPException):
            return app.extensions["formwise_api"].handle_http_exception(error)
        if isinstance(error, BodyTimeout):
            return problem(408, "Request Timeout", "The request body did not arrive in time; send it at once.")
        outage = dependency_problem(error)
        if outage is not None:
            return outage
        log_unexpected(error)
        return problem(500, "Internal Server Error", "The server failed to answer; the error was logged.")


RETRY_AFTER_SECONDS = 5


def dependency_problem(error: BaseException):
    """The 503 problem (with Retry-After) for an error that says an outside part is down,
    else None."""
    dependency = unavailable_dependency(error)
    if dependency is None:
        return None
    log.warning("dependency unavailable: %s (%s)", dependency, type(error).__name__)
    return problem(503, "Service Unavailable", f"{dependency.capitalize()} cannot be reached just now; "
                   f"try again in {RETRY_AFTER_SECONDS} seconds.", slug="dependency-unavailable",
                   headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class BodyTimeout(Exception):
    """The request body did not arrive in time (formwise.service.ops.gunicorn_workers): a 408 problem."""


def unavailable_dependency(error: BaseException) -> str | None:
    """Which outside part an error says is down ("the database", "the rate-limit store"), or
    None when it is not an outage: those answer 503 with Retry-After, not 500."""
    import redis.exceptions
    import sqlalchemy.exc

    if isinstance(error, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                          sqlalchemy.exc.DisconnectionError, sqlalchemy.exc.TimeoutError)):
        return "the database"
    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return "the rate-limit store"
    return None
