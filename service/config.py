"""Settings, read once at start-up: defaults here, then FORMWISE_* environment variables,
then the dict a test passes to create_app."""

from __future__ import annotations

import os

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
    # A folder with a supplement's knowledge base, to use instead of the packaged one.
    KNOWLEDGE_BASE_DIR = None
    # Work units a batch may cost: items x limit x (1 + products listed per recommendation).
    # The default admits the contract's largest batch (1,000 x 20 x (1 + 5)); lower it on a
    # small machine (FORMWISE_MAX_REQUEST_COST).
    FORMWISE_MAX_REQUEST_COST = 120_000
    JSON_SORT_KEYS = False


def switched_on(value) -> bool:
    """Whether a yes/no setting (from the environment or a test's dict) says yes."""
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def positive_seconds(name: str, setting, default: float) -> float:
    """A duration setting (``setting`` as given, None or empty for ``default``), checked: a
    positive number of seconds, else a ValueError naming ``name``."""
    setting = setting or default
    try:
        value = float(setting)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {setting!r}")
    return value


def from_environment() -> dict:
    """FORMWISE_<NAME> variables override Config.<NAME>."""
    overrides = {}
    if os.environ.get("FORMWISE_KNOWLEDGE_BASE_DIR"):
        overrides["KNOWLEDGE_BASE_DIR"] = os.environ["FORMWISE_KNOWLEDGE_BASE_DIR"]
    if os.environ.get("FORMWISE_MAX_REQUEST_COST"):
        setting = os.environ["FORMWISE_MAX_REQUEST_COST"].replace("_", "")
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"FORMWISE_MAX_REQUEST_COST must be a whole number of work units, not {setting!r}")
        overrides["FORMWISE_MAX_REQUEST_COST"] = int(setting)
    return overrides
