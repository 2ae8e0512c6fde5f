"""POST /v1/handout: a printable page for the patient, checked as HTML and in a real browser
(Playwright driving Debian's Chromium) with the print stylesheet applied."""

from __future__ import annotations

import html
import re

import pytest

from formwise.models.knowledge.loading import default_knowledge_base

KB = default_knowledge_base()
URL = "/v1/handout"
CHROMIUM = "/usr/bin/chromium"


FORMS = {form.id: form for form in KB.forms}
UNIT_WORDS = {"tablet": "tablets a day", "capsule": "capsules a day", "liquid": "mL a day", "powder": "g a day"}


def handout(client, profile, details=None, **options):
    body = {"profile": profile, "options": options}
    if details is not None:
        body["handout"] = details
    response = client.post(URL, json=body)
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
        kind = FORMS[item["form"]].unit_kind
        assert f"{units['unit_elemental_mg']:g} mg magnesium" in text
        assert f"{units['min']} to {units['max']} {UNIT_WORDS[kind]}" in text
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


# ---- issue 18: real units, a child, the header, the day line, German numbers, two pages ----


def test_each_form_is_counted_in_its_own_units(client):
    """Milk of magnesia in mL (fda-mom-label: 500 mg magnesium in 15 mL, so 167 mg per 5 mL),
    Epsom salt in g and level teaspoons (uk-mg-sulfate-smpc: 98.6 mg per g; a level
    teaspoon is 5 g: epsom-salt-cdma-label), tablets and capsules counted."""
    profile = {"age": 40, "sex": "female", "egfr": 95, "goals": ["constipation_relief"]}
    answer = client.post("/v1/recommendations", json={"profile": profile, "options": {"limit": 13}}).get_json()
    _, page = handout(client, profile, limit=13)
    text = text_of(page)
    by_form = {item["form"]: item for item in answer["recommendations"]}
    assert {"hydroxide", "sulfate"} <= set(by_form), "the laxative forms suit constipation"
    low, high = (by_form["hydroxide"]["dose"]["elemental_mg_per_day"][end] for end in ("min", "max"))
    millilitres = (5 * -(-low // 167), 5 * (high // 167))  # whole 5 mL measures within the dose
    assert f"in 5 mL: {millilitres[0]} to {millilitres[1]} mL a day" in text
    low, high = (by_form["sulfate"]["dose"]["elemental_mg_per_day"][end] for end in ("min", "max"))
    grams = (-(-low // 98.6), high // 98.6)
    assert f"in 1 g: {grams[0]:g} to {grams[1]:g} g a day (about" in text and "level tsp" in text
    for form_id in ("oxide", "citrate"):
        assert UNIT_WORDS[FORMS[form_id].unit_kind] in text
    assert "per tablet or capsule" not in text


def test_a_young_child_is_not_told_to_swallow_with_water(client):
    _, page = handout(client, {"age": 4, "sex": "male", "goals": ["constipation_relief"]})
    text = text_of(page)
    assert KB.texts["how_to_take_child"]["en"] in text and "Swallow it with a glass of water" not in text
    _, page = handout(client, {"age": 6, "sex": "male", "goals": ["constipation_relief"]})
    assert "Swallow it with a glass of water" in text_of(page)


def test_the_header_names_the_patient_date_pharmacy_and_pharmacist(client):
    details = {"patient_name": "Erika Mustermann", "date": "2026-12-07", "pharmacy": "Apotheke am Markt",
               "pharmacist": "A. Schmidt"}
    _, page = handout(client, {"age": 50}, details, locale="de")
    text = text_of(page)
    for expected in ("Für: Erika Mustermann", "Datum: 07.12.2026", "Apotheke: Apotheke am Markt",
                     "Apotheker/in: A. Schmidt"):
        assert expected in text
    response = client.post(URL, json={"profile": {"age": 50}, "handout": {"date": "tomorrow", "fax": "1"}})
    fields = {error["field"] for error in response.get_json()["errors"]}
    assert response.status_code == 422 and {"handout.date", "handout.fax"} <= fields


def test_the_timing_plan_is_drawn_as_a_day_line(client):
    _, page = handout(client, {"age": 60, "medications": ["levothyroxine", "doxycycline"]},
                      schedule={"levothyroxine": "07:00", "doxycycline": ["08:00", "20:00"]})
    svg = page.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert 'class="timeline"' in svg and svg.count("<circle") >= 1  # the magnesium time
    for label in ("levothyroxine 07:00", "doxycycline 08:00", "doxycycline 20:00"):
        assert label in svg
    assert 'fill="#bfe3bf"' in svg  # the window that keeps its distance


def test_no_reason_contradicts_a_caveat(client):
    """Cramps in an older adult: the caveat says magnesium is unlikely to help, so "some
    evidence for cramps" must not be offered as a reason (contract rule 10)."""
    _, page = handout(client, {"age": 70, "egfr": 80, "goals": ["cramps"]})
    text = text_of(page)
    assert KB.caveats["cramps_evidence_limited"].texts["en"] in text
    assert "Some (limited) evidence for cramps" not in text


def test_german_pages_write_numbers_the_german_way(client):
    _, page = handout(client, {"age": 40, "egfr": 95}, locale="de", limit=13)
    text = text_of(page)
    assert "71,5 mg Magnesium" in text  # chloride: 71.5 mg per tablet (slow-mag-label)
    assert not re.search(r"\b\d+\.\d+ mg", text)


def printed_pages(client, profile, details=None, **options):
    """The page printed to PDF by Chromium (A4, the print stylesheet), read back with PyMuPDF:
    each page's text and its rasterised share of inked pixels."""
    playwright = pytest.importorskip("playwright.sync_api")
    pymupdf = pytest.importorskip("pymupdf")
    _, page_html = handout(client, profile, details, **options)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.set_content(page_html)
            pdf = page.pdf(format="A4", print_background=True)
        finally:
            browser.close()
    pages = []
    with pymupdf.open(stream=pdf, filetype="pdf") as document:
        for sheet in document:
            pixmap = sheet.get_pixmap(dpi=50, colorspace=pymupdf.csGRAY)
            inked = sum(1 for value in pixmap.samples if value < 128) / len(pixmap.samples)
            pages.append((sheet.get_text(), inked))
    return pages


TYPICAL = [
    ({"age": 70, "sex": "female", "egfr": 45, "medications": ["levothyroxine"]}, "en"),
    ({"age": 70, "sex": "female", "egfr": 45, "medications": ["levothyroxine"]}, "de"),
    ({"age": 34, "sex": "female", "pregnant": True, "goals": ["cramps", "sleep"],
      "medications": ["doxycycline", "omeprazole"]}, "de"),
]


@pytest.mark.parametrize(("profile", "locale"), TYPICAL)
def test_a_typical_handout_prints_on_at_most_two_a4_pages_with_the_first_form_on_page_one(client, profile, locale):
    answer = client.post("/v1/recommendations", json={"profile": profile, "options": {"locale": locale}}).get_json()
    schedule = {name: "08:00" for name in profile.get("medications", [])}
    pages = printed_pages(client, profile, {"patient_name": "Erika Mustermann", "pharmacy": "Apotheke am Markt"},
                          locale=locale, schedule=schedule)
    assert 1 <= len(pages) <= 2
    first_text, _ = pages[0]
    assert answer["recommendations"][0]["name"] in first_text  # not a page with only the title
    assert all(ink > 0.002 for _, ink in pages), [ink for _, ink in pages]  # no blank page


@pytest.mark.parametrize("profile", [profile for profile, locale in TYPICAL if locale == "de"]
                         + [{"age": 40, "goals": ["constipation_relief"]}, {"age": 4, "sex": "male"}])
def test_german_handouts_have_no_english_words(client, profile):
    from tests.service.clinical.test_cards import ENGLISH_WORDS

    schedule = {name: "08:00" for name in profile.get("medications", [])}
    _, page = handout(client, profile, {"pharmacy": "Apotheke am Markt"}, locale="de", limit=13,
                      schedule=schedule or None)
    text = text_of(page.split("<style>", 1)[0] + page.split("</style>", 1)[1])
    for name in profile.get("medications", []):
        text = text.replace(name, "")  # the names the caller typed
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "", text)  # the recommendation id
    words = {word.lower() for word in re.findall(r"[A-Za-zÄÖÜäöüß-]+", text)}
    assert not words & ENGLISH_WORDS, words & ENGLISH_WORDS
