"""The configuration page lists every setting the code reads (issue 20, part 2, as far as
it goes today): a new ``FORMWISE_*`` name in service/ or models/ without a row on
docs/configuration.md fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Names that look like settings but are not: an app-config key filled from the others, a
# marker the master sets for itself, and placeholders in the widget's script.
NOT_SETTINGS = {"FORMWISE_LIMITS", "FORMWISE_METRICS_DIR_MADE_HERE", "FORMWISE_TEXTS", "FORMWISE_VOCABULARY"}


def names_in_code() -> set[str]:
    found = set()
    for folder in ("service", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(re.findall(r"FORMWISE_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8")))
    for extra in ("wsgi.py", "gunicorn.conf.py"):
        found |= set(re.findall(r"FORMWISE_[A-Z_]+[A-Z]", (ROOT / extra).read_text(encoding="utf-8")))
    return found - NOT_SETTINGS


def test_every_setting_the_code_reads_has_a_row():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([A-Z_]+)` \|", page, flags=re.MULTILINE))
    missing = names_in_code() - rows
    assert not missing, f"add these to docs/configuration.md: {sorted(missing)}"
    assert {"DATABASE_URL", "REDIS_URL"} <= rows
