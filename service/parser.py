"""Request parsing shared by every blueprint: orjson (fast, and it refuses NaN and
nesting deeper than 1,024 levels instead of recursing) and a problem for bad JSON."""

from __future__ import annotations

import orjson
from flask_smorest import Blueprint as SmorestBlueprint
from webargs import core
from webargs.flaskparser import FlaskParser, abort


class OrjsonParser(FlaskParser):
    def _raw_load_json(self, req):
        if not core.is_json(req.mimetype):
            return core.missing
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            abort(400, messages={"body": [f"Invalid JSON: {error}"]}, exc=error)

    def handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, messages={"body": [f"Invalid JSON: {error}"]}, exc=error)


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = OrjsonParser()
