"""Every setting formwise reads, in one table: its environment variable, its default, what it
means and how it is read. ``Settings`` reads them all once (a test's ``create_app`` dict
first, then the environment, then the default) and a bad value stops start-up with a message
naming the variable; the app factory keeps the result in ``app.extensions`` and every part
asks it (``setting(name)``), never ``os.environ``. The docs' configuration page is written
from this table (``python scripts/configuration_page.py``), and
tests/service/test_settings.py fails when the page is stale or code reads a setting elsewhere.

Outside this module only the gunicorn config files look at the environment themselves, for
the two things they must know before anything is imported (the worker class, to monkey-patch
for gevent first, and prometheus-client's multiprocess folder)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app


def _text(value: str) -> str:
    return value.strip()


def _switch(value: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("must be 1/true/yes/on or 0/false/no/off")


def _whole(minimum: int) -> Callable[[str], int]:
    def read(value: str) -> int:
        text = str(value).strip().replace("_", "")
        if not text.lstrip("-").isdigit() or int(text) < minimum:
            raise ValueError(f"must be a whole number of at least {minimum}")
        return int(text)

    return read


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not seconds > 0:
        raise ValueError("must be a positive number of seconds")
    return seconds


def _flush_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 <= seconds <= 60:
        raise ValueError("must be a number of seconds from 0 to 60")
    return seconds


def _words(value: str) -> tuple[str, ...]:
    return tuple(value.split()) if isinstance(value, str) else tuple(value)


def _rate_limit(value: str) -> str:
    from limits import parse_many

    parse_many(value)  # raises ValueError for a string the limits library cannot read
    return value.strip()


def _open_rate_limit(value: str) -> str:
    text = value.strip()
    return "off" if text.lower() == "off" else _rate_limit(text)


def _one_of(*choices: str) -> Callable[[str], str]:
    def read(value: str) -> str:
        text = value.strip().lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return read


@dataclass(frozen=True)
class Setting:
    name: str  # the environment variable, and the key a test's create_app dict may use
    default: str  # as an operator would write it; "" for none
    section: str
    meaning: str
    read: Callable[[str], Any] = _text
    shown_default: str = ""  # what the page says when the default is computed ("CPUs usable")


SETTINGS = (
    # storage
    Setting("FORMWISE_DATA_DIR", "", "Storage", "where the embedded SQLite database (`formwise.db`) lives",
            shown_default="the Flask instance folder"),
    Setting("DATABASE_URL", "", "Storage", "PostgreSQL instead (`postgresql://...`, psycopg 3); migrated by "
            "Alembic on start", shown_default="none (SQLite)"),
    Setting("REDIS_URL", "", "Storage", "rate-limit counts and used CDS token ids shared by every worker and host",
            shown_default="none (memory)"),
    Setting("FORMWISE_RETENTION_DAYS", "90", "Storage", "days answers, events, outcomes and audit entries are kept "
            "(`formwise db prune`), and feedback is taken", _whole(1)),
    Setting("FORMWISE_SECRET_KEY", "", "Storage", "the key of handout links and of answer-id tags; set it to share "
            "them across databases", shown_default="made once, kept in the database"),
    Setting("FORMWISE_KNOWLEDGE_BASE_DIR", "", "Storage", "a folder with a supplement's knowledge base",
            shown_default="the packaged one"),
    # keys, limits and cost
    Setting("FORMWISE_REQUIRE_API_KEY", "0", "Keys, limits and cost", "every `/v1` call needs an `X-API-Key` "
            "(production for shops)", _switch, "off"),
    Setting("FORMWISE_RATE_LIMIT", "600/minute", "Keys, limits and cost", "profiles per publishable key",
            _rate_limit),
    Setting("FORMWISE_SECRET_RATE_LIMIT", "60000/minute", "Keys, limits and cost", "profiles per secret key",
            _rate_limit),
    Setting("FORMWISE_CLIENT_RATE_LIMIT", "120/minute", "Keys, limits and cost", "profiles per client address "
            "with a publishable key", _rate_limit),
    Setting("FORMWISE_OPEN_RATE_LIMIT", "600/minute", "Keys, limits and cost", "profiles per client address "
            "without a key; `off` behind a gateway that limits", _open_rate_limit),
    Setting("FORMWISE_ANSWER_RATE_LIMIT", "30/hour", "Keys, limits and cost", "events and feedback per answer id",
            _rate_limit),
    Setting("FORMWISE_RATE_LIMIT_WHEN_STORE_DOWN", "refuse", "Keys, limits and cost", "with Redis unreachable: "
            "`refuse` (503) or `memory` (each worker counts alone)", _one_of("refuse", "memory")),
    Setting("FORMWISE_TRUSTED_PROXIES", "0", "Keys, limits and cost", "proxies in front that append to "
            "`X-Forwarded-For`", _whole(0)),
    Setting("FORMWISE_MAX_REQUEST_COST", "120000", "Keys, limits and cost", "work units a batch may cost (items x "
            "limit x (1 + products listed)); 413 above", _whole(1)),
    Setting("FORMWISE_REQUEST_DEADLINE_SECONDS", "20", "Keys, limits and cost", "how long a batch may work before "
            "it stops with a 503", _seconds),
    Setting("FORMWISE_JSON_MAX_DEPTH", "32", "Keys, limits and cost", "deepest nesting of arrays and objects in a "
            "JSON body", _whole(1)),
    # serving
    Setting("FORMWISE_BIND", "127.0.0.1:8000", "Serving", "address (`formwise serve --bind` overrides)"),
    Setting("FORMWISE_WORKERS", "", "Serving", "worker processes (`--workers` overrides)", _whole(1),
            "CPUs usable"),
    Setting("FORMWISE_WORKER_CLASS", "gevent", "Serving", "`gevent` (slow clients hold a greenlet) or `sync` (one "
            "request per worker)", _one_of("gevent", "sync")),
    Setting("FORMWISE_BODY_TIMEOUT", "15", "Serving", "seconds a request body may take after its headers (408 "
            "after)", _seconds),
    Setting("FORMWISE_TIMEOUT", "30", "Serving", "seconds before a silent worker is replaced", _whole(1)),
    Setting("FORMWISE_PIDFILE", "", "Serving", "where the master writes its pid (for `kill -HUP`)",
            shown_default="none"),
    Setting("FORMWISE_LOG_LEVEL", "info", "Serving", "the app's and gunicorn's log level",
            _one_of("debug", "info", "warning", "error", "critical")),
    Setting("FORMWISE_LOG_FLUSH_SECONDS", "1", "Serving", "longest a request log line waits to be written, 0 to 60",
            _flush_seconds),
    Setting("FORMWISE_FRAME_ANCESTORS", "*", "Serving", "who may show `/demo` in a frame (CSP `frame-ancestors`)"),
    # clinical systems
    Setting("FORMWISE_CDS_TRUSTED_CLIENTS", "", "Clinical systems (CDS Hooks)", "a JSON file of trusted clients "
            "(issuer, JWKS or keys); without it the CDS services take no JWT", shown_default="none"),
    Setting("FORMWISE_CDS_OPEN", "0", "Clinical systems (CDS Hooks)", "keep the CDS services open beside required "
            "API keys (a gateway checks the JWT)", _switch, "off"),
    Setting("FORMWISE_CDS_PUBLIC_URL", "", "Clinical systems (CDS Hooks)", "the base URL clients call: the JWT's "
            "`aud` and the cards' links", shown_default="none (the request's own)"),
    Setting("FORMWISE_CDS_ALLOWED_FHIR_SERVERS", "", "Clinical systems (CDS Hooks)", "space-separated FHIR base "
            "URLs the service may fetch from", _words, "none (prefetch only)"),
    Setting("FORMWISE_CDS_FHIR_PRIVATE_HOSTS", "", "Clinical systems (CDS Hooks)", "host names of allowed FHIR "
            "servers that may resolve to private addresses", _words, "none"),
    Setting("FORMWISE_CDS_FHIR_DEADLINE_SECONDS", "8", "Clinical systems (CDS Hooks)", "total time for one hook "
            "call's FHIR reads", _seconds),
    Setting("FORMWISE_CDS_MAX_OBSERVATION_AGE_DAYS", "365", "Clinical systems (CDS Hooks)", "oldest eGFR or serum "
            "magnesium observation a card uses, in days (0: none)", _whole(0)),
    Setting("FORMWISE_CDS_CARD_MEMORY_DAYS", "30", "Clinical systems (CDS Hooks)", "days an issued card is "
            "remembered, so that feedback on it is taken (0: none)", _whole(0)),
    Setting("FORMWISE_HANDOUT_LINK_HOURS", "24", "Clinical systems (CDS Hooks)", "how long a card's handout link "
            "works", _whole(1)),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


class Settings(Mapping):
    """Every setting's value, read once: ``overrides`` (a test's dict, the app's config)
    first, then ``environ``, then the default. Raises ValueError naming the first bad one."""

    def __init__(self, overrides: Mapping | None = None, environ: Mapping | None = None):
        overrides = overrides or {}
        environ = os.environ if environ is None else environ
        self._values = {}
        for item in SETTINGS:
            given = overrides.get(item.name)
            raw = given if given not in (None, "") else environ.get(item.name) or item.default
            if raw in (None, ""):
                self._values[item.name] = None
                continue
            try:
                self._values[item.name] = item.read(raw if isinstance(raw, (list, tuple)) else str(raw))
            except (TypeError, ValueError) as error:
                raise ValueError(f"{item.name} {error}, not {raw!r}") from None

    def __getitem__(self, name: str):
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def install(app: Flask) -> Settings:
    """Reads every setting once for this app (its config holds a test's overrides) and keeps
    them in ``app.extensions``: a bad value stops the app's creation here."""
    settings = app.extensions["formwise_settings"] = Settings(app.config)
    return settings


def settings_of(app: Flask) -> Settings:
    return app.extensions["formwise_settings"]


def setting(name: str):
    """The current app's value of a setting."""
    return current_app.extensions["formwise_settings"][name]


def configuration_page() -> str:
    """docs/configuration.md, written from SETTINGS."""
    lines = ["# Configuration", "",
             "Every setting is an environment variable (a test's `create_app({...})` dict may set the same",
             "names). A bad value stops start-up with a message naming the setting; nothing is read from",
             "files. This page is written from `service/settings.py` by `python",
             "scripts/configuration_page.py`; `tests/service/test_settings.py` fails when it is stale or",
             "when code reads a setting anywhere else."]
    sections = dict.fromkeys(item.section for item in SETTINGS)
    for section in sections:
        lines += ["", f"## {section}", "", "| variable | default | what |", "|---|---|---|"]
        for item in SETTINGS:
            if item.section == section:
                shown = item.shown_default or (f"`{item.default}`" if item.default else "none")
                lines.append(f"| `{item.name}` | {shown} | {item.meaning} |")
    lines += ["", "Read by libraries themselves: `NUMBA_CACHE_DIR` (where the compiled scoring loop is kept;",
              "default `models/engine/__pycache__`, else a private temporary folder) and `PROMETHEUS_MULTIPROC_DIR`",
              "(where the workers' metric files live; default a fresh temporary folder)."]
    return "\n".join(lines) + "\n"
