"""Screenshots of the widget for docs/shops.md, at 375 and 1280 px wide: the full form, compact
mode, an answer with a critical caveat (what is in view right after submitting) and a
recommended form with the shop's products. It runs what the end-to-end tests run: a live
gunicorn server that requires keys, a shop with a catalog that has pictures and cart links,
and the sample shop page (examples/shop.html) in Debian's Chromium.

    .venv/bin/python scripts/widget_screenshots.py [output folder, default docs/images]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.conftest import VIGNETTES, load_vignettes  # noqa: E402
from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.test_widget import shop_service  # noqa: E402
from tests.e2e.test_widget_sells import VIEWPORTS, catalog_csv, example_page, fill_profile, submit  # noqa: E402

# The profiles are public clinical vignettes: P05 raises the critical kidney caveat, P01 is
# answered with forms the sample catalog stocks.
CRITICAL, WITH_PRODUCTS = "P05", "P01"


def profile_of(vignette_id: str) -> dict:
    for item in load_vignettes():
        if item["id"] == vignette_id:
            return item["profile"]
    raise SystemExit(f"no vignette {vignette_id} in {VIGNETTES}")


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="formwise-screenshots-") as workdir, \
            shop_service(Path(workdir), catalog_csv(markup=False)) as service, sync_playwright() as driver:
        service["site"].pages["/"] = example_page(service)
        service["site"].pages["/compact"] = example_page(service, ' mode="compact"')
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for size, viewport in VIEWPORTS.items():
            page = browser.new_context(viewport=viewport).new_page()
            page.goto(service["site"].origin + "/")
            page.locator("#age").wait_for()
            save(page, target, f"widget-form-{size}.png", page.locator("formwise-advisor").screenshot)

            page.goto(service["site"].origin + "/compact")
            page.locator("#goals-legend").wait_for()
            save(page, target, f"widget-compact-{size}.png", page.locator("formwise-advisor").screenshot)

            page.goto(service["site"].origin + "/")
            fill_profile(page, profile_of(CRITICAL))
            submit(page)
            page.locator("#results .caveat.critical").wait_for()
            save(page, target, f"widget-critical-{size}.png", page.screenshot)  # the window, as the visitor sees it

            page.goto(service["site"].origin + "/")
            fill_profile(page, profile_of(WITH_PRODUCTS))
            submit(page)
            card = page.locator("#results li.form").first
            card.scroll_into_view_if_needed()
            page.wait_for_function("card => [...card.querySelectorAll('img')].every(i => i.complete)",
                                   arg=card.element_handle())
            save(page, target, f"widget-products-{size}.png", card.screenshot)
            page.context.close()
        browser.close()


def save(page, folder: Path, name: str, shoot) -> Path:
    path = folder / name
    page.mouse.move(0, 0)  # no hover effect where the last click was
    shoot(path=str(path), animations="disabled")
    print(path)
    return path


if __name__ == "__main__":
    main()
