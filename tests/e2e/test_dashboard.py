"""The shop dashboard in a real browser (Playwright driving Debian's Chromium) against a live
gunicorn server with FORMWISE_REQUIRE_API_KEY=1 (issue 21, part 2): opened from the link of
``formwise shops dashboard`` and by signing in with the secret key, it draws the same figures
GET /v1/reports/conversions gives, and its CSV downloads are the report's.

Screenshots go to the test's folder; with FORMWISE_DOCS_SCREENSHOTS=1 they are also written
to docs/images/ (the docs show them)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import PROJECT_ROOT
from tests.e2e.server import CHROMIUM, formwise_cli, running_service

pytestmark = pytest.mark.slow

SHOP_ORIGIN = "http://localhost:8080"  # the example catalog's shop: only its Origin header is sent here
PROFILES = [{"age": 40, "goals": ["sleep"]}, {"age": 62, "goals": ["cramps"]}, {"age": 35, "goals": ["general"]},
            {"age": 50, "goals": ["energy"]}, {"age": 29, "goals": ["relaxation"]}]


@pytest.fixture(scope="module")
def shop_with_traffic(tmp_path_factory):
    """A live service, a shop with the example catalog, and a little of everything: widget
    answers with views, clicks, carts and orders, the shop's own server calls, a stray event."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: ./scripts/test installs it (apt-get install chromium)")
    workdir = tmp_path_factory.mktemp("dashboard")
    env = {"FORMWISE_DATA_DIR": str(workdir), "FORMWISE_REQUIRE_API_KEY": "1"}
    name = f"dashboard-shop-{uuid.uuid4().hex[:6]}"
    keys = json.loads(formwise_cli("shops", "create", name, "--origin", SHOP_ORIGIN, "--json", env=env))
    formwise_cli("catalog", "upload", name, str(PROJECT_ROOT / "examples" / "catalog.csv"), env=env)
    formwise_cli("shops", "experiment", name, "--control-share", "0.5", "--default", "general=GLY-120", env=env)
    page_headers = {"X-API-Key": keys["publishable_key"], "Origin": SHOP_ORIGIN}
    server_headers = {"X-API-Key": keys["secret_key"]}
    with running_service(workdir, workers=1, env=env) as base, requests.Session() as http:
        for number, profile in enumerate(PROFILES * 2):
            visit = f"visit-{number:04d}"
            answer = http.post(f"{base}/v1/recommendations", json={"profile": profile},
                               headers={**page_headers, "X-Formwise-Session": visit}).json()
            shown = [p["sku"] for item in answer["recommendations"] for p in item["products"]]
            for sku in shown:
                http.post(f"{base}/v1/events", headers=page_headers, json={
                    "type": "view", "recommendation_id": answer["recommendation_id"], "sku": sku, "session_id": visit})
            if number % 2 == 0:
                http.post(f"{base}/v1/events", headers=page_headers, json={
                    "type": "click", "recommendation_id": answer["recommendation_id"], "sku": shown[0],
                    "session_id": visit})
            if number % 3 == 0:
                response = http.post(f"{base}/v1/events", headers=server_headers, json={
                    "type": "purchase", "recommendation_id": answer["recommendation_id"], "sku": shown[0],
                    "order_id": f"order-{number}", "quantity": 1, "revenue": 19.9, "currency": "EUR"})
                assert response.status_code == 201, response.text
        for profile in PROFILES[:2]:  # the shop's own server testing its integration
            http.post(f"{base}/v1/recommendations", json={"profile": profile}, headers=server_headers)
        yield {"base": base, "env": env, "name": name, "keys": keys, "server_headers": server_headers}


def report(shop, group: str) -> dict:
    response = requests.get(f"{shop['base']}/v1/reports/conversions", params={"group": group},
                            headers=shop["server_headers"], timeout=30)
    assert response.status_code == 200
    return response.json()


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("FORMWISE_DOCS_SCREENSHOTS") == "1":
        shutil.copy(path, PROJECT_ROOT / "docs" / "images" / name)


def open_board(browser, url: str, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return context, page, errors


def test_the_link_opens_the_dashboard_with_the_reports_figures(shop_with_traffic, browser, tmp_path):
    shop = shop_with_traffic
    link = formwise_cli("shops", "dashboard", shop["name"], "--base-url", shop["base"], env=shop["env"]).strip()
    assert link.startswith(f"{shop['base']}/dashboard#token=")
    by_day, by_product = report(shop, "day"), report(shop, "product")
    context, page, errors = open_board(browser, link, 1280, 900)
    page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
    assert "#token" not in page.url  # the token leaves the address bar
    assert page.locator("#shop-name").inner_text() == f"· {shop['name']}"
    tiles = dict(zip(page.locator("#totals dt").all_inner_texts(), page.locator("#totals dd").all_inner_texts(),
                     strict=True))
    totals = by_day["widget"]["totals"]
    assert (tiles["Answers"], tiles["Views"], tiles["Clicks"], tiles["Orders"]) == (
        str(by_day["widget"]["answers"]), str(totals["views"]), str(totals["clicks"]), str(totals["orders"]))
    assert by_day["widget"]["answers"] == len(PROFILES) * 2 and by_day["server"]["answers"] == 2
    assert totals["orders"] == 4 and totals["revenue"] == {"EUR": "79.60"}
    assert "2 answers" in page.locator("#elsewhere").inner_text()  # the server's calls, kept apart
    trial = by_day["experiment"]
    arms = page.locator("#experiment-table tbody tr")
    assert page.locator("#experiment").is_visible() and arms.count() == 2
    assert [row.locator("td").nth(2).inner_text() for row in arms.all()] == [
        str(trial["arms"]["ranking"]["answers"]), str(trial["arms"]["control"]["answers"])]
    assert sum(arm["answers"] for arm in trial["arms"].values()) == len(PROFILES) * 2
    if trial["difference"] is not None:
        assert "95 % confidence interval" in page.locator("#experiment-difference").inner_text()
    drawn = page.evaluate("Object.keys(Chart.instances).length")
    assert drawn == 4
    rows = page.locator("#product-table tbody tr")
    assert rows.count() == len(by_product["widget"]["rows"])
    assert sorted(rows.locator("td:first-child").all_inner_texts()) == sorted(
        row["sku"] for row in by_product["widget"]["rows"])
    with page.expect_download() as download:
        page.locator(".downloads a[data-group=product]").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text == requests.get(f"{shop['base']}/v1/reports/conversions",
                                    params={"group": "product", "format": "csv", "from": page.input_value("#from"),
                                            "to": page.input_value("#to")},
                                    headers=shop["server_headers"], timeout=30).text
    screenshot(page, tmp_path, "dashboard-1280.png")
    context.close()
    context, page, errors_narrow = open_board(browser, link, 375, 740)
    page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375 + 1  # nothing wider than a phone
    screenshot(page, tmp_path, "dashboard-375.png")
    context.close()
    assert errors == [] and errors_narrow == []  # no script refused by the page's CSP, no error


def test_signing_in_with_the_secret_key_and_refusals(shop_with_traffic, browser):
    shop = shop_with_traffic
    context, page, _errors = open_board(browser, f"{shop['base']}/dashboard#token=1.99999999999.forged", 1280, 900)
    page.wait_for_selector("#sign-in:not([hidden])")
    assert "sign in again" in page.locator("#sign-in-error").inner_text()
    page.fill("#secret-key", shop["keys"]["publishable_key"])  # the wrong kind of key
    page.click("#sign-in-form button")
    page.locator("#sign-in-error", has_text="secret key").wait_for()  # (no wait_for_function: the CSP forbids eval)
    page.fill("#secret-key", shop["keys"]["secret_key"])
    page.click("#sign-in-form button")
    page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
    assert page.input_value("#secret-key") == ""
    stored = page.evaluate("Object.values(sessionStorage)")
    assert shop["keys"]["secret_key"] not in json.dumps(stored)  # the tab keeps a token, never the key
    page.click("#sign-out")
    assert page.locator("#sign-in").is_visible() and not page.locator("#board").is_visible()
    context.close()


def test_a_dashboard_token_opens_the_reports_and_nothing_else(shop_with_traffic):
    shop = shop_with_traffic
    link = formwise_cli("shops", "dashboard", shop["name"], "--base-url", shop["base"], env=shop["env"]).strip()
    token = {"X-Dashboard-Token": link.split("#token=", 1)[1]}
    assert requests.get(f"{shop['base']}/v1/reports/conversions", headers=token, timeout=30).status_code == 200
    answer = requests.post(f"{shop['base']}/v1/recommendations", json={"profile": {"age": 40}}, headers=token,
                           timeout=30)
    assert answer.status_code == 403 and answer.headers["Content-Type"] == "application/problem+json"
    catalog = requests.put(f"{shop['base']}/v1/catalog", json={"products": []}, headers=token, timeout=30)
    assert catalog.status_code == 403
