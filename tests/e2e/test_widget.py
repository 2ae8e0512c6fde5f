"""The widget in a real browser (Playwright driving Debian's Chromium) against a live
gunicorn server with FORMWISE_REQUIRE_API_KEY=1, embedded in a shop page served from another
origin, so keys, CORS, the catalog and attribution are all exercised for real."""

from __future__ import annotations

import contextlib
import html
import http.server
import json
import threading
import uuid
from pathlib import Path

import pytest
import requests

from formwise.models.knowledge.ui_texts import load_ui_texts
from formwise.service.app import create_app
from formwise.service.store import tables
from tests.e2e.server import CHROMIUM, formwise_cli, free_port, running_service

pytestmark = pytest.mark.slow

CATALOG = """sku,name,form,elemental_mg_per_unit,units_per_pack,price,currency,url
GLY-120,Magnesium glycinate 120 capsules,glycinate,100,120,19.90,EUR,{shop}/p/GLY-120
GLY-60,Magnesium glycinate 60 capsules,glycinate,150,60,12.50,EUR,{shop}/p/GLY-60
CIT-90,Magnesium citrate 90 tablets,citrate,150,90,9.90,EUR,{shop}/p/CIT-90
MAL-90,Magnesium malate 90 tablets,malate,125,90,14.00,EUR,{shop}/p/MAL-90
TAU-60,Magnesium taurate 60 capsules,taurate,125,60,17.50,EUR,{shop}/p/TAU-60
LAC-100,Magnesium lactate 100 tablets,lactate,84,100,8.00,EUR,{shop}/p/LAC-100
OXI-100,Magnesium oxide 100 tablets,oxide,250,100,4.50,EUR,{shop}/p/OXI-100
"""
SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<style>formwise-advisor {{ --formwise-accent: #6b2fa3; --formwise-radius: 4px; }}</style></head>
<body><h1>Magnesium at the test shop</h1>
<formwise-advisor shop-key="{key}" locale="en"></formwise-advisor>
<script src="{service}/widget.js" defer></script></body></html>
"""


def product_picture(sku: str) -> bytes:
    """A small SVG jar labelled with the sku: the shop's product pictures."""
    hue = sum(sku.encode()) * 37 % 360
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="120" viewBox="0 0 120 120">'
            '<rect width="120" height="120" fill="#ffffff"/>'
            f'<rect x="38" y="12" width="44" height="14" rx="3" fill="hsl({hue},35%,30%)"/>'
            f'<rect x="30" y="24" width="60" height="84" rx="10" fill="hsl({hue},45%,88%)" '
            f'stroke="hsl({hue},35%,40%)"/>'
            f'<rect x="30" y="50" width="60" height="32" fill="hsl({hue},55%,45%)"/>'
            f'<text x="60" y="71" font-family="sans-serif" font-size="11" font-weight="bold" fill="#ffffff" '
            f'text-anchor="middle">{html.escape(sku.split("-")[0])}</text></svg>').encode()


class ShopSite:
    """A shop's own web server on another origin: its pages (``pages``, by path) embed the
    widget with one script tag; product pages, cart links and product pictures are where the
    widget's links and images lead."""

    def __init__(self):
        self.port = free_port()
        self.origin = f"http://localhost:{self.port}"
        self.pages: dict[str, str] = {}
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path, _, query = self.path.partition("?")
                content_type = "text/html; charset=utf-8"
                if path in site.pages:
                    body = site.pages[path].encode()
                elif path.startswith("/p/"):
                    body = f"<!doctype html><title>{path[3:]}</title><h1>Product {path[3:]}</h1>".encode()
                elif path == "/cart/add":
                    sku = html.escape(query.partition("sku=")[2])
                    body = f"<!doctype html><title>Cart</title><h1>Cart: {sku}</h1>".encode()
                elif path.startswith("/img/") and path.endswith(".svg"):
                    body, content_type = product_picture(path[5:-4]), "image/svg+xml"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def shop_service(workdir: Path, catalog: str):
    """A gunicorn formwise that requires keys, a shop with ``catalog`` (CSV; ``{shop}`` stands
    for the shop site's origin) and the shop's site. Yields what the tests need."""
    env = {"FORMWISE_DATA_DIR": str(workdir), "FORMWISE_REQUIRE_API_KEY": "1"}
    site = ShopSite()
    name = f"widget-shop-{uuid.uuid4().hex[:6]}"
    keys = json.loads(formwise_cli("shops", "create", name, "--origin", site.origin, "--json", env=env))
    catalog_file = workdir / "catalog.csv"
    catalog_file.write_text(catalog.format(shop=site.origin), encoding="utf-8")
    formwise_cli("catalog", "upload", name, str(catalog_file), env=env)
    try:
        with running_service(workdir, workers=2, env=env) as base:
            formwise_cli("shops", "add-origin", name, base, env=env)  # so /demo on the server may use the key
            site.pages["/"] = SHOP_PAGE.format(key=keys["publishable_key"], service=base)
            database = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{workdir / 'formwise.db'}"})
            yield {"base": base, "site": site, "keys": keys, "shop_id": keys["shop_id"], "database": database}
    finally:
        site.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A gunicorn formwise that requires keys, a shop with a catalog, and the shop's site."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: ./scripts/test installs it (apt-get install chromium)")
    with shop_service(tmp_path_factory.mktemp("widget"), CATALOG) as service:
        yield service


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def is_answer(response) -> bool:
    """The answer to the widget's POST, not the CORS preflight before it."""
    return response.url.endswith("/v1/recommendations") and response.request.method == "POST"


def events_for(live, recommendation_id: str) -> list[tuple[str, str]]:
    import sqlalchemy as sa

    with live["database"].app_context():
        from formwise.service.store.database import session_scope

        with session_scope() as session:
            rows = session.execute(sa.select(tables.Event.type, tables.Event.sku)
                                   .where(tables.Event.recommendation_id == recommendation_id)).all()
    return sorted((event_type, sku) for event_type, sku in rows)


def api_answer(live, profile: dict) -> dict:
    response = requests.post(live["base"] + "/v1/recommendations", json={"profile": profile},
                             headers={"X-API-Key": live["keys"]["secret_key"]}, timeout=30)
    assert response.status_code == 200
    return response.json()


def test_questionnaire_shows_ranked_forms_with_the_shops_products(live, page, tmp_path):
    page.goto(live["site"].origin + "/")
    page.get_by_label("Age in years *").fill("45")
    page.get_by_label("Sex").select_option("female")
    page.get_by_label("Leg cramps").check()
    page.get_by_label("Better sleep").check()
    page.get_by_label("Medicines you take").fill("doxycycline, zzq-unknown-pill")
    with page.expect_response(is_answer) as answered:
        page.get_by_role("button", name="Show suitable forms").click()
    answer = answered.value.json()
    results = page.locator("#results")
    results.get_by_role("heading", name="Suggested magnesium forms").wait_for()

    expected = api_answer(live, {"age": 45, "sex": "female", "conditions": ["leg_cramps"], "goals": ["sleep"],
                                 "medications": ["doxycycline", "zzq-unknown-pill"]})
    shown_forms = results.locator("li.form").evaluate_all("items => items.map(item => item.dataset.form)")
    assert shown_forms == [item["form"] for item in expected["recommendations"]] == [
        item["form"] for item in answer["recommendations"]]
    first = expected["recommendations"][0]
    assert first["name"] in results.locator("li.form").first.inner_text()
    # Caveats most severe first, interactions, the unrecognised medicine and the disclaimer.
    severities = results.locator(".caveats .caveat").evaluate_all(
        "items => items.map(item => item.className.split(' ')[1])")
    order = {"critical": 0, "warning": 1, "info": 2}
    assert severities == sorted(severities, key=order.get) and "warning" in severities
    assert "doxycycline" in results.locator(".interactions").inner_text()
    assert "zzq-unknown-pill" in results.locator(".unrecognized").inner_text()
    assert answer["disclaimer"] in results.locator(".disclaimer").inner_text()
    for item in answer["recommendations"]:
        card = results.locator(f'li.form[data-form="{item["form"]}"]').inner_text()
        assert all(caveat["text"] in card for caveat in item["caveats"])
        assert all(reason["text"] in card for reason in item["reasons"])
    lines = results.inner_text().splitlines()
    assert not [line for line in lines if "[object " in line or line.strip() in ("null", "undefined")]

    listed = [(item["form"], product) for item in answer["recommendations"] for product in item["products"]]
    assert listed, "the shop's catalog covers the recommended forms"
    for form, product in listed:
        row = results.locator(f'li.form[data-form="{form}"] li.product[data-sku="{product["sku"]}"]')
        assert product["name"] in row.inner_text()
        assert f"{product['units_per_day']} a day" in row.inner_text()
    screenshot = tmp_path / "widget-results.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    # Following a product link records the click before the shop's product page opens.
    form, product = listed[0]
    results.locator(f'li.product[data-sku="{product["sku"]}"] a').click()
    page.wait_for_url(f"**/p/{product['sku']}")
    recorded = events_for(live, answer["recommendation_id"])
    assert ("click", product["sku"]) in recorded
    assert {sku for event_type, sku in recorded if event_type == "view"} <= {p["sku"] for _, p in listed}


def test_severe_kidney_disease_shows_the_critical_warning_first_and_no_products(live, page, tmp_path):
    page.goto(live["site"].origin + "/")
    page.get_by_label("Age in years *").fill("70")
    page.get_by_label("Kidney disease").select_option("yes")
    page.get_by_role("button", name="Show suitable forms").click()
    # Kidney disease with an unknown eGFR is not guessed: the widget asks for it first.
    egfr = page.get_by_label("eGFR, if known")
    assert egfr.get_attribute("aria-invalid") == "true"
    assert page.locator("#egfr-error").is_visible() and page.locator("#results").is_hidden()
    egfr.fill("20")
    with page.expect_response(is_answer) as answered:
        page.get_by_role("button", name="Show suitable forms").click()
    answer = answered.value.json()
    results = page.locator("#results")
    results.get_by_role("heading", name="Suggested magnesium forms").wait_for()
    critical = results.locator(".caveats .caveat").first
    assert "critical" in critical.get_attribute("class") and critical.get_attribute("role") == "alert"
    kidney = next(c for c in answer["caveats"] if c["code"] == "kidney_impairment_severe")
    assert kidney["text"] in critical.inner_text() and critical.is_visible()
    assert results.locator("li.form").count() == 0 and results.locator("li.product").count() == 0
    assert results.locator(".none-recommended").is_visible()
    assert answer["disclaimer"] in results.locator(".disclaimer").inner_text()
    page.screenshot(path=str(tmp_path / "widget-severe-kidney.png"), full_page=True)


def shadow_focus(page) -> str:
    """The id of the focused element inside the widget, or the page's focused tag."""
    return page.evaluate("""() => {
        const host = document.querySelector('formwise-advisor');
        const inside = host && host.shadowRoot && host.shadowRoot.activeElement;
        return inside ? (inside.id || inside.tagName.toLowerCase()) : document.activeElement.tagName.toLowerCase();
    }""")


def tab_to(page, target: str, limit: int = 60) -> None:
    for _ in range(limit):
        if shadow_focus(page) == target:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {target} (at {shadow_focus(page)})")


def test_the_whole_flow_works_by_keyboard_alone_on_the_demo_page_in_german(live, page):
    page.goto(f"{live['base']}/demo?locale=de&shop_key={live['keys']['publishable_key']}")
    german = load_ui_texts()["de"]
    page.get_by_text(german["widget.title"]).wait_for()
    assert page.locator("legend#goals-legend").inner_text() == german["widget.goals"]
    tab_to(page, "age")
    page.keyboard.type("38")
    tab_to(page, "sex")
    page.keyboard.press("ArrowDown")
    tab_to(page, "goals-relaxation")
    page.keyboard.press("Space")
    tab_to(page, "medications")
    page.keyboard.type("Omeprazol")
    tab_to(page, "submit")
    with page.expect_response(is_answer) as answered:
        page.keyboard.press("Enter")
    answer = answered.value.json()
    page.locator("#results li.form").first.wait_for()
    assert page.locator("#sex").input_value() != "unspecified"
    assert page.locator("#goals-relaxation").is_checked()
    # Focus moves to the results, and the first product link is reachable and followed by keyboard.
    assert shadow_focus(page) == "results-heading"
    assert page.locator("#results-heading").inner_text() == german["widget.results"]
    assert answer["recommendations"][0]["name"] in page.locator("#results li.form").first.inner_text()
    first_product = next(product for item in answer["recommendations"] for product in item["products"])
    tab_to(page, "a")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/p/{first_product['sku']}")
