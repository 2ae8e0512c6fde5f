"""Request parsing shared by every blueprint: orjson (fast, and it refuses NaN and
nesting deeper than 1,024 levels instead of recursing) and a problem for bad JSON."""

from __future__ import annotations

import functools

import marshmallow as ma
import orjson
from flask import current_app, g, request
from flask_smorest import Blueprint as SmorestBlueprint
from webargs import core
from webargs.flaskparser import FlaskParser, abort

from formwise.service.api.schemas import StrictSchema

# No request of the API nests deeper than 6 levels; FORMWISE_JSON_MAX_DEPTH (32) leaves room
# and still stops bodies built to make every later step (validation, logging, errors) walk
# thousands of levels.


def nested_deeper_than(document, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (a scalar is level 0)."""
    pending = [(document, 1)] if isinstance(document, (dict, list)) else []
    while pending:
        value, depth = pending.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


class OrjsonParser(FlaskParser):
    def _raw_load_json(self, req):
        if not core.is_json(req.mimetype):
            return core.missing
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        document = g.get("formwise_json")  # read already by a rate limit that counts batch items
        if document is None:
            try:
                document = orjson.loads(data)
            except orjson.JSONDecodeError as error:
                abort(400, messages={"body": [f"Invalid JSON: {error}"]}, exc=error)
        limit = current_app.extensions["formwise_settings"]["FORMWISE_JSON_MAX_DEPTH"]
        # A body with no more opening brackets than the limit cannot nest deeper (brackets
        # inside strings only overcount): most bodies skip the walk.
        if data.count(b"[") + data.count(b"{") > limit and nested_deeper_than(document, limit):
            abort(400, messages={"body": [f"JSON nested deeper than {limit} levels of arrays and objects."]})
        return document

    def _process_location_data(self, location_data, schema, req, location, unknown, validators):
        """A JSON body goes through the schema's compiled fast path first (service/api/fast_load.py);
        what it cannot vouch for is loaded by marshmallow as usual."""
        fast = location == "json" and not validators and location_data is not core.missing
        if fast and isinstance(schema, StrictSchema):
            return schema.load_fast(location_data)
        return super()._process_location_data(location_data, schema, req, location, unknown, validators)

    def handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, messages={"body": [f"Invalid JSON: {error}"]}, exc=error)


# Options of smorest's ``arguments`` that only shape the OpenAPI document.
DOCUMENTATION_OPTIONS = frozenset({"content_type", "required", "description", "example", "examples"})


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = OrjsonParser()

    def arguments(self, schema, *, location="json", **options):
        """smorest's ``arguments`` (the same OpenAPI document), with one parsing step for a
        JSON body checked by a StrictSchema: the parser's own JSON loading and its error
        handling, then the schema's fast load, without webargs' generic dispatch around
        them (2-3% of a recommendation request under gunicorn). Other locations and
        options go through webargs as smorest arranges it."""
        documented = super().arguments(schema, location=location, **options)
        if location != "json" or not isinstance(schema, StrictSchema) or options.keys() - DOCUMENTATION_OPTIONS:
            return documented
        parser = self.ARGUMENTS_PARSER

        def decorator(func):
            @functools.wraps(func)
            def parse_then_call(*args, **kwargs):
                current = request._get_current_object()
                document = parser.load_json(current, schema)
                try:
                    loaded = schema.load_fast({} if document is core.missing else document)
                except ma.ValidationError as error:
                    parser._on_validation_error(error, current, schema, location,
                                                error_status_code=None, error_headers=None)
                return func(*args, loaded, **kwargs)

            # smorest's decorator writes the OpenAPI entry; of what it returns, only that is kept
            parse_then_call._apidoc = documented(func)._apidoc
            return parse_then_call

        return decorator
