"""Flask's own settings for the app (the API's title, body size caps). formwise's settings
(every FORMWISE_* variable, DATABASE_URL, REDIS_URL) are in service/settings.py."""

from __future__ import annotations

MIB = 1024 * 1024


class Config:
    API_TITLE = "formwise"
    API_VERSION = "1"
    OPENAPI_VERSION = "3.1.0"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    API_SPEC_OPTIONS = {
        "info": {
            "description": "Ranks magnesium supplement forms for one person, with reasons, caveats and "
            "the advice to consult a clinician. Errors are application/problem+json (RFC 9457).",
        }
    }
    # The largest body any endpoint takes (the batch endpoint); others are capped lower per request.
    MAX_CONTENT_LENGTH = 8 * MIB
    SINGLE_MAX_CONTENT_LENGTH = 1 * MIB
    JSON_SORT_KEYS = False


