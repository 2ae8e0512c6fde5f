"""Issue 21, part 5: the widget that sells, in a real browser (Debian's Chromium driven by
Playwright) against a live gunicorn server that requires keys, embedded in the sample shop
page (examples/shop.html) served from another origin, with a catalog that has pictures and
cart links.

The profiles come from the public clinical vignettes (/work/shared/vignettes), and what the
tests expect of their answers is only what the vignettes and the contract promise."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import requests

from formwise.models.knowledge.ui_texts import load_ui_texts
from tests.conftest import VIGNETTES, load_vignettes
from tests.e2e.server import CHROMIUM
from tests.e2e.test_widget import events_for, is_answer, shadow_focus, shop_service

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PAGE = ROOT / "examples" / "shop.html"
EXAMPLE_SCRIPT_SRC = "https://formwise.example/widget.js"
EXAMPLE_KEY = "pk_REPLACE_WITH_YOUR_PUBLISHABLE_KEY"
VIEWPORTS = {"375": {"width": 375, "height": 740}, "1280": {"width": 1280, "height": 900}}
XSS_NAME = 'Magnesium glycinate <img src=x onerror="window.formwiseXss=1"> 90 capsules'
TEXTS = load_ui_texts()


def catalog_rows(markup: bool = True) -> list[dict]:
    """The shop's products, with pictures and cart links ({shop} is the shop's origin), and
    (``markup``) one whose name tries to smuggle markup into the page."""
    rows = [
        ("GLY-120", "Magnesium glycinate 120 capsules", "glycinate", 100, 120, "19.90"),
        ("GLY-60", "Magnesium glycinate 60 capsules", "glycinate", 150, 60, "12.50"),
        ("GLY-XSS", XSS_NAME, "glycinate", 100, 90, "24.00"),
        ("LAC-100", "Magnesium lactate 100 tablets", "lactate", 84, 100, "8.00"),
        ("CHL-100", "Magnesium chloride 100 tablets", "chloride", 120, 100, "9.50"),
        ("THR-90", "Magnesium L-threonate 90 capsules", "l_threonate", 48, 90, "29.90"),
        ("CIT-90", "Magnesium citrate 90 tablets", "citrate", 150, 90, "9.90"),
        ("MAL-90", "Magnesium malate 90 tablets", "malate", 125, 90, "14.00"),
        ("TAU-60", "Magnesium taurate 60 capsules", "taurate", 125, 60, "17.50"),
    ]
    return [{"sku": sku, "name": name, "form": form, "elemental_mg_per_unit": mg, "units_per_pack": units,
             "price": price, "currency": "EUR", "url": f"{{shop}}/p/{sku}", "image_url": f"{{shop}}/img/{sku}.svg",
             "cart_url": f"{{shop}}/cart/add?sku={sku}"}
            for sku, name, form, mg, units, price in rows if markup or name != XSS_NAME]


def catalog_csv(markup: bool = True) -> str:
    rows = catalog_rows(markup)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def example_page(service: dict, attributes: str = "", script: str = "") -> str:
    """examples/shop.html with its placeholders replaced as an integrator would, plus extra
    attributes on the element and a script of the shop's before the widget's tag."""
    page = EXAMPLE_PAGE.read_text(encoding="utf-8")
    assert page.count(EXAMPLE_SCRIPT_SRC) == 1 and page.count(f'shop-key="{EXAMPLE_KEY}"') == 1
    page = page.replace(EXAMPLE_SCRIPT_SRC, service["base"] + "/widget.js")
    page = page.replace(f'shop-key="{EXAMPLE_KEY}"', f'shop-key="{service["keys"]["publishable_key"]}"{attributes}')
    return page.replace("<!-- REPLACE 1:", f"<script>{script}</script>\n  <!-- REPLACE 1:") if script else page


def vignette(vignette_id: str) -> dict:
    found = [item for item in load_vignettes() if item["id"] == vignette_id]
    if not found:
        pytest.skip(f"no vignette {vignette_id} at {VIGNETTES}")
    return found[0]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: ./scripts/test installs it (apt-get install chromium)")
    with shop_service(tmp_path_factory.mktemp("widget-sells"), catalog_csv()) as service:
        service["site"].pages["/"] = example_page(service)
        yield service


@pytest.fixture()
def new_page(browser):
    """Opens pages in fresh browser contexts of a given window size, closed after the test."""
    contexts = []

    def open_page(viewport: dict):
        contexts.append(browser.new_context(viewport=viewport))
        return contexts[-1].new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture()
def page(new_page):
    return new_page(VIEWPORTS["1280"])


def fill_profile(page, profile: dict) -> None:
    """Answers the questionnaire as the person of ``profile`` would (by label, as a visitor)."""
    texts = TEXTS["en"]
    more = page.locator("details#more")
    if more.count() and any(profile.get(name) for name in (
            "sex", "pregnant", "breastfeeding", "egfr", "dialysis", "conditions", "medications")):
        more.locator("summary").click()
    page.get_by_label(texts["widget.age"]).fill(str(profile["age"]))
    if profile.get("sex"):
        page.get_by_label(texts["widget.sex"], exact=True).select_option(profile["sex"])
    if profile.get("dialysis"):
        page.get_by_label(texts["widget.kidney"], exact=True).select_option("dialysis")
    if profile.get("egfr") is not None:
        page.get_by_label(texts["widget.egfr"]).fill(str(profile["egfr"]))
    for word in profile.get("conditions", []):
        page.locator(f"#conditions-{word}").check()
    for word in profile.get("goals", []):
        page.locator(f"#goals-{word}").check()
    if profile.get("medications"):
        page.get_by_label(texts["widget.medications"]).fill(", ".join(profile["medications"]))


def submit(page) -> dict:
    with page.expect_response(is_answer) as answered:
        page.locator("#submit").click()
    answer = answered.value.json()
    page.locator("#results-heading").wait_for()
    return answer


def server_answer(live, profile: dict, locale: str) -> dict:
    response = requests.post(live["base"] + "/v1/recommendations",
                             json={"profile": profile, "options": {"locale": locale}},
                             headers={"X-API-Key": live["keys"]["secret_key"]}, timeout=30)
    assert response.status_code == 200
    return response.json()


def inside(box: dict, viewport: dict) -> bool:
    return (box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= viewport["width"]
            and box["y"] + box["height"] <= viewport["height"])


def conversions(live) -> dict:
    """The shop's widget figures by product, from the report API (its secret key)."""
    response = requests.get(live["base"] + "/v1/reports/conversions", params={"group": "product"},
                            headers={"X-API-Key": live["keys"]["secret_key"]}, timeout=30)
    assert response.status_code == 200, response.text
    return {row["sku"]: row for row in response.json()["widget"]["rows"]}


def event_rows(live, recommendation_id: str) -> list[tuple[str, str, str | None]]:
    """(type, sku, session_id) of the events stored for one answer, in the order stored."""
    import sqlalchemy as sa

    from formwise.service.store import tables
    from formwise.service.store.database import session_scope

    with live["database"].app_context(), session_scope() as session:
        return [tuple(row) for row in session.execute(
            sa.select(tables.Event.type, tables.Event.sku, tables.Event.session_id)
            .where(tables.Event.recommendation_id == recommendation_id).order_by(tables.Event.id)).all()]


def sent_events(page) -> list[dict]:
    """Collects the bodies of the widget's POST /v1/events, in the order the page sent them."""
    sent = []
    page.on("request", lambda request: sent.append(json.loads(request.post_data))
            if request.url.endswith("/v1/events") and request.method == "POST" else None)
    return sent


@pytest.mark.parametrize("size", VIEWPORTS)
def test_a_critical_caveat_is_in_view_and_focused_after_submit(live, new_page, size):
    case = vignette("P05")  # severe kidney impairment: the contract's critical caveat
    assert case["expect"]["max_severity"] == "critical"
    viewport = VIEWPORTS[size]
    page = new_page(viewport)
    page.goto(live["site"].origin + "/")
    fill_profile(page, case["profile"])
    answer = submit(page)
    first = page.locator("#results .caveat").first
    first.wait_for()
    assert "critical" in first.get_attribute("class") and first.get_attribute("role") == "alert"
    assert first.get_attribute("data-code") in case["expect"]["caveats_include"]
    assert first.get_attribute("data-code") in {c["code"] for c in answer["caveats"] if c["severity"] == "critical"}
    box = first.bounding_box()
    print(f"critical caveat at {size}: {box}")
    assert inside(box, viewport), (box, viewport)
    # It has the focus (a screen reader reads it first), and the focus is not trapped there.
    assert page.evaluate("() => document.querySelector('formwise-advisor').shadowRoot.activeElement"
                         ".classList.contains('critical')")
    page.keyboard.press("Tab")
    assert shadow_focus(page) == "summary"  # the next control: the forms that are not suitable
    page.keyboard.press("Shift+Tab")
    assert shadow_focus(page) == "submit"


def test_interactions_come_before_products_which_show_a_picture_the_price_a_day_and_add_to_cart(live, new_page):
    case = vignette("P13")  # an antibiotic that interacts: the answer lists it in interactions
    viewport = VIEWPORTS["375"]
    page = new_page(viewport)
    sent = sent_events(page)
    asked = []  # the visit token each answer was asked with (a shop's A/B experiment splits by it)
    page.on("request", lambda request: asked.append(request.headers.get("x-formwise-session"))
            if request.method == "POST" and request.url.endswith("/v1/recommendations") else None)
    page.goto(live["site"].origin + "/")
    fill_profile(page, case["profile"])
    answer = submit(page)
    assert answer["interactions"], "the vignette's medicine interacts"
    offers = [(item, product) for item in answer["recommendations"] for product in item["products"]]
    assert offers, "the catalog covers the recommended forms"
    results = page.locator("#results")
    # In the page and on the screen, the medicines' notes come before the first product.
    interactions = results.locator(".interactions")
    assert all(item["text"] in interactions.inner_text() for item in answer["interactions"])
    first_product = results.locator("li.product").first
    assert interactions.evaluate("(notes, product) => Boolean(notes.compareDocumentPosition(product) & 4)",
                                 first_product.element_handle())
    assert interactions.bounding_box()["y"] + interactions.bounding_box()["height"] <= first_product.bounding_box()["y"]

    for item, product in offers:
        row = results.locator(f'li.form[data-form="{item["form"]}"] li.product[data-sku="{product["sku"]}"]')
        assert row.locator("img").get_attribute("src") == product["image_url"]
        row.scroll_into_view_if_needed()  # the pictures load lazily
        page.wait_for_function("image => image.complete && image.naturalWidth > 0",
                               arg=row.locator("img").element_handle())
        assert row.locator(".per-day").inner_text() == f"€{product['cost_per_day']:.2f} a day"
        cart = row.locator("a.add-to-cart")
        assert cart.get_attribute("href") == product["cart_url"] and cart.inner_text() == "Add to cart"
        assert product["name"] in cart.get_attribute("aria-label")

    # Add to cart records the event (after the views, with the visit's token), then follows the link.
    item, product = offers[0]
    results.locator(f'li.product[data-sku="{product["sku"]}"] a.add-to-cart').click()
    page.wait_for_url("**/cart/add?sku=" + product["sku"])
    stored = event_rows(live, answer["recommendation_id"])
    session_ids = {session_id for _, _, session_id in stored}
    assert len(session_ids) == 1 and None not in session_ids
    assert ("add_to_cart", product["sku"]) in [(kind, sku) for kind, sku, _ in stored]
    kinds = [event["type"] for event in sent if event["sku"] == product["sku"]]
    assert kinds == ["view", "add_to_cart"]
    assert {event["session_id"] for event in sent} == session_ids
    figures = conversions(live)[product["sku"]]
    assert (figures["views"], figures["add_to_cart"]) == (1, 1)

    # Back on the shop's page (a reload in the same tab): the same visit, so asking again and
    # clicking the product counts its view once and the click once.
    page.go_back()
    page.locator("#age").wait_for()
    fill_profile(page, case["profile"])
    again = submit(page)
    assert again["recommendation_id"] != answer["recommendation_id"]
    page.locator(f'li.product[data-sku="{product["sku"]}"] a.product-name').click()
    page.wait_for_url(f"**/p/{product['sku']}")
    assert {session_id for _, _, session_id in event_rows(live, again["recommendation_id"])} == session_ids
    figures = conversions(live)[product["sku"]]
    assert (figures["views"], figures["clicks"], figures["add_to_cart"]) == (1, 1, 1)
    assert [event["type"] for event in sent if event["sku"] == product["sku"]] == [
        "view", "add_to_cart", "view", "click"]
    assert len(asked) == 2 and set(asked) == session_ids


def test_changing_the_locale_keeps_the_answer_and_shows_it_in_the_new_language(live, page):
    case = vignette("P01")
    page.goto(live["site"].origin + "/")
    fill_profile(page, case["profile"])
    english = submit(page)
    assert page.locator("#results li.form").count() == len(english["recommendations"])
    with page.expect_response(is_answer) as answered:
        # The shop's own language switch sets the attribute; right after it the answer is still shown.
        during = page.evaluate("""() => {
            document.querySelector('.languages button[data-locale=de]').click();
            const results = document.querySelector('formwise-advisor').shadowRoot.getElementById('results');
            return {hidden: results.hidden, forms: results.querySelectorAll('li.form').length};
        }""")
    assert during == {"hidden": False, "forms": len(english["recommendations"])}
    german = answered.value.json()
    assert answered.value.request.post_data_json["options"]["locale"] == "de"
    assert answered.value.request.post_data_json["profile"]["goals"] == case["profile"]["goals"]
    # The same profile asked again in German: what the server answers it in German.
    assert server_answer(live, case["profile"], "de")["recommendations"] == german["recommendations"]
    de = TEXTS["de"]
    page.get_by_role("heading", name=de["widget.results"]).wait_for()
    results = page.locator("#results")
    assert results.get_attribute("lang") == "de"
    shown = results.locator("li.form").evaluate_all("items => items.map(item => item.dataset.form)")
    assert shown == [item["form"] for item in german["recommendations"]] == [
        item["form"] for item in english["recommendations"]]
    assert german["disclaimer"] in results.locator(".disclaimer").inner_text() != english["disclaimer"]
    first = german["recommendations"][0]
    assert first["name"] in results.locator("li.form").first.inner_text()
    offer = first["products"][0]
    assert results.locator(f'li.product[data-sku="{offer["sku"]}"] .per-day').inner_text() == (
        f"{offer['cost_per_day']:.2f}".replace(".", ",") + "\u00a0€ pro Tag")
    # The questions follow too, keeping what was typed.
    assert page.get_by_label(de["widget.age"]).input_value() == str(case["profile"]["age"])
    assert page.locator(f"#goals-{case['profile']['goals'][0]}").is_checked()


@pytest.mark.parametrize("locale", ["en", "de"])
@pytest.mark.parametrize("size", VIEWPORTS)
def test_compact_mode_is_at_most_600_px_tall_before_the_results(live, new_page, size, locale):
    live["site"].pages[f"/compact-{locale}"] = example_page(live, ' mode="compact"').replace(
        'locale="en"', f'locale="{locale}"')
    page = new_page(VIEWPORTS[size])
    page.goto(live["site"].origin + f"/compact-{locale}")
    page.get_by_text(TEXTS[locale]["widget.goals"]).wait_for()
    height = page.locator("formwise-advisor").bounding_box()["height"]
    print(f"compact widget height at {size} px, {locale}: {height}")
    assert height <= 600


def test_compact_mode_asks_for_the_goal_first_and_folds_the_rest(live, new_page):
    live["site"].pages["/compact"] = example_page(live, ' mode="compact"')
    page = new_page(VIEWPORTS["375"])
    page.goto(live["site"].origin + "/compact")
    page.locator("#goals-legend").wait_for()
    # The goal is the first question, then the age; the rest is there but folded away.
    assert page.locator("form fieldset").first.get_attribute("class") == "goals"
    assert page.locator("#kidney").is_hidden() and page.locator("#medications").is_hidden()
    more = page.locator("#more > summary")
    assert more.inner_text().startswith(TEXTS["en"]["widget.more_details"])
    more.click()
    assert page.locator("#kidney").is_visible() and page.locator("#medications").is_visible()
    # An answer in the folded part that needs more (kidney disease without an eGFR) opens it.
    page.get_by_label(TEXTS["en"]["widget.kidney"], exact=True).select_option("yes")
    more.click()
    assert page.locator("#egfr").is_hidden()
    page.locator("#goals-sleep").check()
    page.get_by_label(TEXTS["en"]["widget.age"]).fill("52")
    page.locator("#submit").click()
    assert page.locator("#egfr").is_visible() and shadow_focus(page) == "egfr"
    assert page.locator("#results").is_hidden()
    page.get_by_label(TEXTS["en"]["widget.kidney"], exact=True).select_option("none")
    answer = submit(page)
    assert answer["recommendations"] and page.locator("#results li.form").count() == len(answer["recommendations"])


def test_the_full_form_stays_the_default_and_the_demo_page_shows_both(live, page):
    page.goto(live["site"].origin + "/")
    page.locator("#age").wait_for()
    assert page.locator("details#more").count() == 0
    for field in ("#age", "#sex", "#kidney", "#egfr", "#conditions-constipation", "#goals-sleep", "#medications"):
        assert page.locator(field).is_visible()
    key = live["keys"]["publishable_key"]
    page.goto(f"{live['base']}/demo?shop_key={key}&locale=de&mode=compact")
    page.locator("#more > summary").wait_for()
    assert page.locator("#kidney").is_hidden()
    assert page.get_by_role("link", name="full form").get_attribute("href") == f"?shop_key={key}&locale=de"


RENDER_PRODUCT = """
document.querySelector("formwise-advisor").renderProduct = (product, context) => {
  if (product.sku.startsWith("LAC")) return null;  // the widget's own card for these
  const card = document.createElement("div");
  card.className = "shop-card";
  card.setAttribute("part", "shop-card");
  const title = document.createElement("strong");
  title.textContent = product.name + " (" + context.form.name + ")";
  const price = document.createElement("span");
  price.className = "shop-price";
  price.textContent = context.pricePerDay;
  const buy = document.createElement("a");
  buy.className = "shop-buy";
  buy.href = context.cartUrl;
  buy.dataset.formwiseEvent = "add_to_cart";
  buy.textContent = "Buy";
  card.append(title, " ", price, " ", buy);
  return card;
};
"""


def test_a_shops_render_product_hook_draws_its_own_cards(live, page):
    live["site"].pages["/own-cards"] = example_page(live, script=RENDER_PRODUCT)
    sent = sent_events(page)
    page.goto(live["site"].origin + "/own-cards")
    fill_profile(page, vignette("P13")["profile"])
    answer = submit(page)
    offers = [(item, product) for item in answer["recommendations"] for product in item["products"]]
    own = [(item, product) for item, product in offers if not product["sku"].startswith("LAC")]
    default = [(item, product) for item, product in offers if product["sku"].startswith("LAC")]
    assert own and default, "the answer shows both kinds of product"
    for item, product in own:
        row = page.locator(f'li.product[data-sku="{product["sku"]}"]')
        assert row.locator(".shop-card").inner_text().startswith(f"{product['name']} ({item['name']})")
        assert row.locator(".shop-price").inner_text() == f"€{product['cost_per_day']:.2f}"
        assert row.locator(".card").count() == 0
    for _item, product in default:
        row = page.locator(f'li.product[data-sku="{product["sku"]}"]')
        assert row.locator(".card a.add-to-cart").count() == 1 and row.locator(".shop-card").count() == 0
    # The shop's own link records its event like the widget's do.
    _item, product = own[0]
    page.locator(f'li.product[data-sku="{product["sku"]}"] a.shop-buy').click()
    page.wait_for_url("**/cart/add?sku=" + product["sku"])
    assert ("add_to_cart", product["sku"]) in events_for(live, answer["recommendation_id"])
    assert [event["type"] for event in sent if event["sku"] == product["sku"]] == ["view", "add_to_cart"]


def test_shop_texts_and_urls_cannot_inject_markup_or_scripts(live, page):
    """A product name with markup (from the catalog), and an answer tampered with on its way
    (javascript: and data: URLs, which the catalog would refuse), stay inert."""

    def tamper(route):
        if route.request.method != "POST":
            route.continue_()
            return
        response = route.fetch()
        body = response.json()
        for item in body["recommendations"]:
            for product in item["products"]:
                if product["sku"] == "GLY-60":
                    product.update(url="javascript:window.formwiseXss=2", image_url="javascript:window.formwiseXss=3",
                                   cart_url="data:text/html,<script>alert(1)</script>")
        route.fulfill(response=response, json=body)

    page.route("**/v1/recommendations", tamper)
    page.goto(live["site"].origin + "/")
    fill_profile(page, vignette("P01")["profile"])
    answer = submit(page)
    skus = {product["sku"] for item in answer["recommendations"] for product in item["products"]}
    assert {"GLY-XSS", "GLY-60"} <= skus, "both products are in the answer"
    named = page.locator('li.product[data-sku="GLY-XSS"]')
    assert XSS_NAME in named.locator(".product-name").inner_text()  # shown as text, not markup
    assert named.locator(".product-name img").count() == 0
    tampered = page.locator('li.product[data-sku="GLY-60"]')
    assert tampered.locator("a").count() == 0 and tampered.locator("img").count() == 0
    assert "Magnesium glycinate 60 capsules" in tampered.inner_text()
    tampered.locator(".product-name").click()
    links = page.evaluate("""() => [...document.querySelector('formwise-advisor').shadowRoot
        .querySelectorAll('[href], [src]')].map(node => node.getAttribute('href') || node.getAttribute('src'))""")
    assert links and all(link.startswith("http://") for link in links), links
    assert page.evaluate("() => window.formwiseXss") is None
    assert page.url == live["site"].origin + "/"
