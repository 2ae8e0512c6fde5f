"""What the page tests share: one Chromium per test module (Debian's, driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def browser():
    """Chromium for a module's tests (starting one takes about a second); each test opens its
    own context, so no cookie or storage passes between tests."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: ./scripts/test installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
