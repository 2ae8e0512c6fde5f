"""GET /docs: a self-contained, browsable page rendered from the same OpenAPI document
as /openapi.json (no CDN: it must work on a closed network)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

blp = Blueprint("docs", __name__)
METHODS = ("get", "post", "put", "patch", "delete")


def _schema_name(reference: dict | None) -> str | None:
    if not reference:
        return None
    if "$ref" in reference:
        return reference["$ref"].rsplit("/", 1)[-1]
    if reference.get("type") == "array":
        inner = _schema_name(reference.get("items"))
        return f"array of {inner}" if inner else "array"
    return reference.get("type")


@blp.get("/docs")
def docs():
    spec = current_app.extensions["formwise_api"].spec.to_dict()
    operations = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if not operation:
                continue
            body = operation.get("requestBody", {}).get("content", {})
            request_schema = next((_schema_name(media.get("schema")) for media in body.values()), None)
            responses = []
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                schema = next((_schema_name(media.get("schema")) for media in content.values()), None)
                responses.append({"status": status, "description": response.get("description", ""),
                                  "schema": schema})
            operations.append({
                "method": method.upper(), "path": path, "summary": operation.get("summary", ""),
                "description": operation.get("description", ""), "request_schema": request_schema,
                "responses": responses, "tags": operation.get("tags", []),
            })
    schemas = spec.get("components", {}).get("schemas", {})
    return render_template("docs.html", info=spec.get("info", {}), operations=operations, schemas=schemas,
                           describe=_schema_name)
