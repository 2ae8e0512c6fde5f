"""One table of settings (issue 20, part 2): read once by the app factory, a bad value
stops start-up naming it, the docs' configuration page is written from the table, and no
code reads a setting from the environment anywhere else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from formwise.service.app import create_app
from formwise.service.settings import BY_NAME, SETTINGS, Settings, configuration_page

ROOT = Path(__file__).resolve().parents[2]
# The gunicorn config files must know two things before anything is imported: the worker
# class (to monkey-patch for gevent first) and prometheus-client's folder, which that library
# reads itself. Elsewhere only these reads of the environment are allowed: the metrics folder
# (prometheus-client's variable, not a setting) and PATH, which the CLI passes to gunicorn.
ALLOWED_ENVIRONMENT_READS = {"service/ops/gunicorn_config.py", "gunicorn.conf.py", "service/settings.py"}
ALLOWED_LINES = (re.compile(r"os\.environ\.get\(MULTIPROC_DIR_ENV\)"), re.compile(r'os\.environ\.get\("PATH"'))
SETTING_NAME = re.compile(r"\b(FORMWISE_[A-Z_]+[A-Z]|DATABASE_URL|REDIS_URL)\b")


def test_the_configuration_page_is_written_from_the_table():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == configuration_page(), "run: .venv/bin/python scripts/configuration_page.py"


def test_no_code_reads_the_environment_but_the_settings():
    readers = []
    for path in [*ROOT.glob("service/**/*.py"), *ROOT.glob("models/**/*.py"), ROOT / "wsgi.py",
                 ROOT / "gunicorn.conf.py"]:
        name = str(path.relative_to(ROOT))
        if name in ALLOWED_ENVIRONMENT_READS:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"os\.environ|getenv\(", line) and not any(allowed.search(line) for allowed in ALLOWED_LINES):
                readers.append(f"{name}:{number}")
    assert not readers, f"read settings through formwise.service.settings: {readers}"


def test_every_setting_named_in_the_code_is_in_the_table():
    named = set()
    for path in [*ROOT.glob("service/**/*.py"), *ROOT.glob("models/**/*.py")]:
        named |= set(SETTING_NAME.findall(path.read_text(encoding="utf-8")))
    internal = {"FORMWISE_METRICS_DIR_MADE_HERE", "FORMWISE_TEXTS", "FORMWISE_VOCABULARY"}
    assert named - internal - set(BY_NAME) == set()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("FORMWISE_RETENTION_DAYS", "0", "FORMWISE_RETENTION_DAYS must be a whole number of at least 1, not '0'"),
    ("FORMWISE_REQUIRE_API_KEY", "perhaps", "FORMWISE_REQUIRE_API_KEY must be 1/true/yes/on or 0/false/no/off"),
    ("FORMWISE_RATE_LIMIT", "lots", "FORMWISE_RATE_LIMIT"),
    ("FORMWISE_BODY_TIMEOUT", "-1", "FORMWISE_BODY_TIMEOUT must be a positive number of seconds"),
    ("FORMWISE_WORKER_CLASS", "threads", "FORMWISE_WORKER_CLASS must be one of gevent, sync"),
    ("FORMWISE_LOG_FLUSH_SECONDS", "61", "FORMWISE_LOG_FLUSH_SECONDS must be a number of seconds from 0 to 60"),
])
def test_a_bad_value_is_refused_naming_the_setting(name, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings(environ={name: value})


def test_a_test_dict_comes_before_the_environment_which_comes_before_the_default():
    assert Settings(environ={})["FORMWISE_RETENTION_DAYS"] == 90
    assert Settings(environ={"FORMWISE_RETENTION_DAYS": "30"})["FORMWISE_RETENTION_DAYS"] == 30
    assert Settings({"FORMWISE_RETENTION_DAYS": 7}, environ={"FORMWISE_RETENTION_DAYS": "30"})[
        "FORMWISE_RETENTION_DAYS"] == 7
    assert Settings(environ={"FORMWISE_CDS_ALLOWED_FHIR_SERVERS": "https://a.example/fhir https://b.example"})[
        "FORMWISE_CDS_ALLOWED_FHIR_SERVERS"] == ("https://a.example/fhir", "https://b.example")


def test_the_app_reads_them_once_at_creation(monkeypatch):
    app = create_app({"TESTING": True, "FORMWISE_MAX_REQUEST_COST": 5000})
    monkeypatch.setenv("FORMWISE_MAX_REQUEST_COST", "lots")  # too late: read at creation
    assert app.extensions["formwise_settings"]["FORMWISE_MAX_REQUEST_COST"] == 5000
    with pytest.raises(ValueError, match="FORMWISE_MAX_REQUEST_COST"):
        create_app({"TESTING": True})  # a new app reads the environment again


def test_every_setting_has_a_section_and_a_meaning():
    assert all(item.section and item.meaning for item in SETTINGS)
    assert len(BY_NAME) == len(SETTINGS)
