"""Prints the README's example handout (eGFR 45, levothyroxine at 07:00) to PDF in Debian's
Chromium and saves its first page as docs/handout-page1.png.

    .venv/bin/python scripts/handout_png.py [locale]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pymupdf
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from formwise.service.app import create_app

BODY = {
    "profile": {"age": 70, "sex": "female", "egfr": 45, "medications": ["levothyroxine"]},
    "options": {"schedule": {"levothyroxine": "07:00"}},
    "handout": {"patient_name": "Erika Mustermann", "date": "2026-12-07", "pharmacy": "Apotheke am Markt, Berlin",
                "pharmacist": "A. Schmidt"},
}


def main() -> None:
    locale = sys.argv[1] if len(sys.argv) > 1 else "en"
    client = create_app({"TESTING": True}).test_client()
    response = client.post("/v1/handout", json={**BODY, "options": {**BODY["options"], "locale": locale}})
    if response.status_code != 200:
        raise SystemExit(response.get_data(as_text=True))
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_content(response.get_data(as_text=True))
        pdf = page.pdf(format="A4", print_background=True)
        browser.close()
    target = Path(__file__).resolve().parents[1] / "docs" / ("handout-page1.png" if locale == "en"
                                                            else f"handout-page1-{locale}.png")
    with pymupdf.open(stream=pdf, filetype="pdf") as document:
        document[0].get_pixmap(dpi=90).save(target)
        print(f"{target} (page 1 of {len(document)})")


if __name__ == "__main__":
    main()
