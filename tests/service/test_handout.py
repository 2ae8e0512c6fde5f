"""POST /v1/handout: a printable page for the patient, checked as HTML and in a real browser
(Playwright driving Debian's Chromium) with the print stylesheet applied."""

from __future__ import annotations

import html
import re

import pytest

from models.knowledge import default_knowledge_base

KB = default_knowledge_base()
URL = "/v1/handout"
CHROMIUM = "/usr/bin/chromium"


def handout(client, profile, **options):
    response = client.post(URL, json={"profile": profile, "options": options})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/html"
    return response, response.get_data(as_text=True)


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_the_page_lists_the_ranked_forms_with_amounts_and_what_to_know(client):
    profile = {"age": 45, "sex": "female", "egfr": 95, "goals": ["sleep"], "medications": ["doxycycline"]}
    answer = client.post("/v1/recommendations", json={"profile": profile, "options": {"explain": True}}).get_json()
    response, page = handout(client, profile)
    text = text_of(page)
    assert response.headers["Content-Language"] == "en" and '<html lang="en">' in page
    positions = [page.index(f'data-form="{item["form"]}"') for item in answer["recommendations"]]
    assert positions == sorted(positions)
    for item in answer["recommendations"]:
        dose, (units,) = item["dose"]["elemental_mg_per_day"], item["dose"]["units_per_day"]
        assert f"{dose['min']} to {dose['max']} mg of magnesium a day" in text
        assert f"{units['unit_elemental_mg']:g} mg magnesium per tablet or capsule: {units['min']} to" in text
    for key in ("how_to_take", "see_clinician"):
        assert KB.texts[key]["en"] in text
    interaction = answer["interactions"][0]
    assert interaction["text"] in text and "doxycycline" in text
    consult = next(caveat for caveat in answer["caveats"] if caveat["code"] == "consult_clinician")
    assert consult["text"] in text and answer["disclaimer"] in text
    assert "@media print" in page


def test_the_timing_plan_is_on_the_page(client):
    _, page = handout(client, {"age": 60, "medications": ["levothyroxine"]},
                      schedule={"levothyroxine": "07:00"})
    text = text_of(page)
    assert "Take magnesium at" in text and "levothyroxine" in text
    assert re.search(r'class="time">\d\d:\d\d<', page)


def test_without_a_schedule_the_page_says_to_ask_about_timing(client):
    _, page = handout(client, {"age": 60})
    assert "ask your pharmacist how far apart" in text_of(page)


def test_when_no_form_is_advised_the_page_says_so(client):
    _, page = handout(client, {"age": 70, "egfr": 20})
    text = text_of(page)
    assert "No magnesium supplement is advised" in text and 'data-form="' not in page
    assert KB.caveats["kidney_impairment_severe"].texts["en"] in text


def test_what_the_caller_typed_is_escaped(client):
    _, page = handout(client, {"age": 40, "medications": ["<script>alert(1)</script>"]})
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_bad_bodies_are_problems_like_the_recommendations_endpoint(client):
    response = client.post(URL, json={"profile": {"age": 200}})
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert "profile.age" in {error["field"] for error in response.get_json()["errors"]}
    response = client.post(URL, json={"profile": {"age": 40}, "options": {"schedule": {"doxycycline": "8am"}}})
    assert response.status_code == 422
    assert any(error["field"].startswith("options.schedule") for error in response.get_json()["errors"])


def test_the_page_prints_in_a_real_browser(client):
    playwright = pytest.importorskip("playwright.sync_api")
    _, page_html = handout(client, {"age": 50, "goals": ["sleep"], "medications": ["levothyroxine"]},
                           schedule={"levothyroxine": "07:00"}, locale="de")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.set_content(page_html)
            assert page.evaluate("document.documentElement.lang") == "de"
            assert page.locator("button.print").is_visible()
            assert page.locator("ol.forms > li").count() == 3
            page.emulate_media(media="print")
            assert not page.locator("button.print").is_visible()  # the print stylesheet applies
            assert page.locator("#when .time").is_visible()
            pdf = page.pdf(format="A4")
            assert pdf.startswith(b"%PDF") and len(pdf) > 5000
        finally:
            browser.close()
