"""Writes docs/configuration.md from the settings table (service/settings.py):

    .venv/bin/python scripts/configuration_page.py
"""

from pathlib import Path

from formwise.service.settings import configuration_page

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

if __name__ == "__main__":
    PAGE.write_text(configuration_page(), encoding="utf-8")
    print(f"wrote {PAGE}")
