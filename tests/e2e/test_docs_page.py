"""/docs in a real browser (Debian's Chromium through Playwright): Swagger UI, served from
the installed package, renders every operation of /openapi.json under the page's own
Content-Security-Policy, with no console errors and no request to another origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, running_service

pytestmark = pytest.mark.slow


def test_swagger_ui_renders_the_document_with_the_pages_policy(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: ./scripts/test installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with running_service(tmp_path, workers=1) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems, origins = [], set()
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("request", lambda request: origins.add(request.url.split("/")[2]))
        page.goto(base + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        for path in ("/v1/recommendations", "/v1/recommendations/batch", "/v1/forms/{form_id}", "/v1/feedback",
                     "/health/ready"):
            assert any(text.replace("\u200b", "") == path for text in paths), (path, paths)
        # the single answer's operation shows its problem responses with their meaning
        page.locator("#operations-recommendations-post_v1_recommendations").click()
        page.wait_for_selector("#operations-recommendations-post_v1_recommendations .responses-table")
        responses = page.locator("#operations-recommendations-post_v1_recommendations .responses-table").inner_text()
        assert "422" in responses and "errors lists each bad field" in responses
        page.screenshot(path=str(tmp_path / "docs.png"))
        browser.close()
    assert not problems, problems
    assert origins == {base.removeprefix("http://")}, origins  # nothing from a CDN
