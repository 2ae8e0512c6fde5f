"""English and German: every text an answer, a handout or a card shows exists in both, the
requested locale is used, and an unknown one falls back to English and says so."""

from __future__ import annotations

import csv
import string

import pytest

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.knowledge.ui_texts import UI_TEXTS_PATH

KB = default_knowledge_base()
PROFILE = {"age": 70, "egfr": 45, "goals": ["sleep"], "conditions": ["leg_cramps", "sensitive_stomach"],
           "medications": ["doxycycline", "omeprazole", "Zorblax"]}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def answer(client, locale, **options):
    response = client.post("/v1/recommendations", json={"profile": PROFILE, "options": {"locale": locale,
                                                                                         **options}})
    assert response.status_code == 200
    return response


def test_every_knowledge_base_text_has_a_german_version():
    for caveat in KB.caveats.values():
        assert caveat.texts.get("de"), caveat.code
    for interaction in KB.interactions.values():
        assert interaction.texts.get("de"), interaction.drug_class
    for weight in KB.weights:
        assert weight.reason_plus.get("de") and weight.reason_minus.get("de"), (weight.factor, weight.attribute)
    for key, texts in KB.texts.items():
        assert texts.get("de"), key
        assert placeholders(texts["en"]) == placeholders(texts["de"]), key


def test_every_form_has_a_german_name_and_answers_use_the_locales_names(client):
    for form in KB.forms:
        assert form.names["de"] and form.names["de"] != form.name, form.id
        assert form.names["en"] == form.name
    german, english = answer(client, "de").get_json(), answer(client, "en").get_json()
    for answer_json, locale in ((german, "de"), (english, "en")):
        shown = answer_json["recommendations"] + answer_json["excluded"]
        assert shown
        for item in shown:
            assert item["name"] == next(form for form in KB.forms if form.id == item["form"]).names[locale]
    forms = client.get("/v1/forms").get_json()["forms"]
    assert {form["id"]: form["names"]["de"] for form in forms}["citrate"] == "Magnesiumcitrat"


def test_every_handout_and_card_string_has_both_languages():
    with UI_TEXTS_PATH.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["key"].startswith(("handout.", "cds."))]
    assert len(rows) > 30
    for row in rows:
        for locale in vocab.LOCALES:
            assert row[f"text_{locale}"].strip(), (row["key"], locale)
        assert placeholders(row["text_en"]) == placeholders(row["text_de"]), row["key"]


def test_a_german_answer_is_german_throughout(client):
    response = answer(client, "de", explain=True, schedule={"doxycycline": "08:00"})
    assert response.headers["Content-Language"] == "de"
    body = response.get_json()
    by_code = {caveat.code: caveat for caveat in KB.caveats.values()}
    for caveat in body["caveats"]:
        assert caveat["text"] == by_code[caveat["code"]].texts["de"]
    for interaction in body["interactions"]:
        row = KB.interaction_for(interaction["ingredient"], interaction["drug_class"])
        assert interaction["text"] == row.text("de")
        assert "Stunden" in interaction["text"] or interaction["management"] != "separate"
    german_reasons = {text for w in KB.weights for text in (w.reason_plus["de"], w.reason_minus["de"])}
    for recommendation in body["recommendations"]:
        assert recommendation["reasons"] and all(r["text"] in german_reasons for r in recommendation["reasons"])
        for caveat in recommendation["caveats"]:
            assert caveat["text"] == by_code[caveat["code"]].texts["de"]
    for excluded in body["excluded"]:
        assert all(reason["text"] == by_code[reason["code"]].texts["de"] for reason in excluded["reasons"])
    assert body["disclaimer"] == KB.texts["disclaimer"]["de"]
    assert body["timing"]["text"].startswith("Nehmen Sie Magnesium um")


@pytest.mark.parametrize(("requested", "answered"), [("de", "de"), ("de-AT", "de"), ("de_CH", "de"), ("EN", "en"),
                                                     ("fr", "en"), ("x-klingon", "en")])
def test_the_locale_used_is_named_in_content_language(client, requested, answered):
    response = answer(client, requested)
    assert response.headers["Content-Language"] == answered
    assert response.get_json()["disclaimer"] == KB.texts["disclaimer"][answered]


def test_an_unknown_locale_answers_exactly_the_english_answer(client):
    english, unknown = answer(client, "en").get_json(), answer(client, "fr").get_json()
    english.pop("recommendation_id"), unknown.pop("recommendation_id")
    assert english == unknown


def test_the_handout_follows_the_locale(client):
    response = client.post("/v1/handout", json={"profile": PROFILE, "options": {"locale": "de"}})
    page = response.get_data(as_text=True)
    assert response.headers["Content-Language"] == "de" and '<html lang="de">' in page
    assert "Ihr Magnesium-Plan" in page and KB.texts["see_clinician"]["de"] in page
    response = client.post("/v1/handout", json={"profile": PROFILE, "options": {"locale": "pt-BR"}})
    assert response.headers["Content-Language"] == "en" and "Your magnesium plan" in response.get_data(as_text=True)
