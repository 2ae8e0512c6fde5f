"""CDS cards from the whole record (issue 18): kidney codes on the problem list, serum
magnesium, units, stale values, draft magnesium orders judged with suggestions, the
clinician's wording in English and German, links, override reasons, and feedback that is
taken only for this service's cards and their suggestions.

Expected values come from the sources, not from the service: the KDIGO 2012 GFR
categories (G3a 45-59, G3b 30-44, G4 15-29, G5 <15: kdigo2012) with the kidney policy
(no supplement below eGFR 30 or on dialysis; no oxide, hydroxide or Epsom salt at 30-59:
formwise-kidney-policy), the serum thresholds of contract v1.1 (above 1.05 mmol/L
critical, below 0.70 mmol/L a warning; 1 mmol/L = 2.43 mg/dL), and 1 mL/s = 60 mL/min."""

from __future__ import annotations

import re
import uuid

import pytest

from formwise.models.knowledge.codes import RXNORM_SYSTEM
from formwise.service.app import create_app

from .test_hooks import (
    SERVICE,
    bundle,
    card_of,
    condition,
    days_ago,
    hook_body,
    medication_statement,
    observation,
    patient,
    prefetch,
)

NO_SUPPLEMENT = "No magnesium supplement for this patient"


def dated_condition(snomed_code: str, recorded: str) -> dict:
    return {**condition(snomed_code), "recordedDate": recorded}


def excluded_forms(card: dict) -> str:
    return card["detail"].split("**Not advised**: ", 1)[1].split("\n", 1)[0] if "**Not advised**" in card[
        "detail"] else ""


# ---- kidney codes on the problem list ---------------------------------------------------------


@pytest.mark.parametrize(("code", "what"), [
    ("431857002", "chronic kidney disease stage 4 (G4: eGFR 15-29)"),
    ("433146000", "chronic kidney disease stage 5 (G5: eGFR below 15)"),
    ("46177005", "end-stage renal disease"),
    ("443143006", "dependence on haemodialysis"),
    ("443596009", "dependence on peritoneal dialysis"),
    ("714152005", "chronic kidney disease stage 5 on dialysis"),
])
def test_a_severe_kidney_code_with_no_egfr_means_no_supplement(client, code, what):
    card = card_of(client, hook_body(prefetch(patient(60), conditions=[condition(code)])))
    assert card["indicator"] == "critical", what
    assert card["summary"].startswith(NO_SUPPLEMENT)
    assert code not in card["detail"]  # shown as what it means


@pytest.mark.parametrize("code", ["433144002", "700378005", "700379002"])
def test_a_stage_3_code_with_no_egfr_excludes_the_laxative_salts(client, code):
    card = card_of(client, hook_body(prefetch(patient(50), conditions=[condition(code)])))
    assert card["indicator"] == "warning"
    assert {"Magnesium oxide", "Magnesium hydroxide", "Magnesium sulfate"} <= set(
        re.findall(r"Magnesium \w+", excluded_forms(card)))
    assert "read as eGFR below" in card["detail"]


def test_a_newer_egfr_wins_over_an_older_stage_and_a_newer_stage_over_an_older_egfr(client):
    stage_then_egfr = prefetch(patient(50), conditions=[dated_condition("700379002", days_ago(200))],
                               observations=[observation("98979-8", 75, days_ago(20))])
    card = card_of(client, hook_body(stage_then_egfr))
    assert card["indicator"] != "critical" and "Magnesium oxide" not in excluded_forms(card)
    assert "eGFR 75" in card["detail"]
    egfr_then_stage = prefetch(patient(50), conditions=[dated_condition("431857002", days_ago(20))],
                               observations=[observation("98979-8", 75, days_ago(200))])
    card = card_of(client, hook_body(egfr_then_stage))
    assert card["indicator"] == "critical" and "read as eGFR below 30" in card["detail"]


def test_a_resolved_or_refuted_kidney_code_is_not_read(client):
    resolved = condition("46177005", "resolved")
    refuted = {**condition("443143006"), "verificationStatus": {"coding": [{"code": "refuted"}]}}
    card = card_of(client, hook_body(prefetch(patient(40), conditions=[resolved, refuted])))
    assert card["indicator"] != "critical"


# ---- serum magnesium, units and stale values --------------------------------------------------


def test_a_high_serum_magnesium_in_mg_per_dl_means_no_supplement(client):
    # 4.1 mg/dL / 2.43 = 1.69 mmol/L, above 1.05: critical however good the kidneys are
    data = prefetch(observations=[observation("98979-8", 70, days_ago(10)),
                                  observation("19123-9", 4.1, days_ago(10), unit="mg/dL")])
    card = card_of(client, hook_body(data))
    assert card["indicator"] == "critical"
    assert card["summary"] == f"{NO_SUPPLEMENT}: serum magnesium above 1.05 mmol/L"
    assert "Serum magnesium 1.69 mmol/L" in card["detail"]


def test_a_low_serum_magnesium_asks_for_its_cause(client):
    # 1.2 mg/dL = 0.49 mmol/L, below 0.70
    data = prefetch(observations=[observation("98979-8", 80, days_ago(10)),
                                  observation("19123-9", 1.2, days_ago(10), unit="mg/dL")])
    card = card_of(client, hook_body(data))
    assert card["indicator"] == "warning"
    assert "Serum magnesium below 0.70 mmol/L: find the cause" in card["detail"]


def test_serum_magnesium_in_meq_per_l_is_halved(client):
    data = prefetch(observations=[observation("98979-8", 80, days_ago(10)),
                                  observation("2601-3", 3.0, days_ago(10), unit="meq/L")])
    card = card_of(client, hook_body(data))  # 3.0 mEq/L = 1.5 mmol/L: high
    assert card["indicator"] == "critical" and "Serum magnesium 1.5 mmol/L" in card["detail"]


def test_an_egfr_in_ml_per_s_is_converted(client):
    # 0.4 mL/s/1.73 m² x 60 = 24 mL/min/1.73 m²: G4
    data = prefetch(observations=[observation("98979-8", 0.4, days_ago(10), unit="mL/s/{1.73_m2}")])
    card = card_of(client, hook_body(data))
    assert card["indicator"] == "critical" and "eGFR 24 mL/min/1.73 m²" in card["detail"]


def test_an_egfr_in_an_unknown_unit_is_not_guessed_and_the_card_says_so(client):
    data = prefetch(patient(40), observations=[observation("98979-8", 24, days_ago(10), unit="mmol/min")])
    card = card_of(client, hook_body(data))
    assert "Not used, unit not understood: eGFR 24 mmol/min" in card["detail"]
    assert "No current eGFR found" in card["detail"] and card["indicator"] != "critical"


def test_an_old_egfr_counts_as_unknown_and_the_card_says_which_and_why(client):
    data = prefetch(patient(78), observations=[observation("62238-1", 80, "2012-03-01")])
    card = card_of(client, hook_body(data))
    assert "Not used, older than 365 days: eGFR 80 mL/min/1.73 m² on 2012-03-01" in card["detail"]
    # 78 with no current eGFR: oxide, hydroxide and Epsom salt wait for one (contract rule 7)
    assert "Magnesium oxide" in excluded_forms(card) and "no current eGFR at 65 or older" in excluded_forms(card)


def test_the_age_limit_is_a_setting():
    client = create_app({"TESTING": True, "FORMWISE_CDS_MAX_OBSERVATION_AGE_DAYS": 9000}).test_client()
    card = card_of(client, hook_body(prefetch(patient(78), observations=[observation("62238-1", 80, "2012-03-01")])))
    assert "eGFR 80 mL/min/1.73 m² on 2012-03-01" in card["detail"] and "Not used" not in card["detail"]


def test_a_magnesium_product_among_the_medicines_is_a_duplicate(client):
    data = prefetch(statements=[medication_statement("Magnesium glycinate 200 mg")])
    card = card_of(client, hook_body(data))
    assert "Already taking magnesium (Magnesium glycinate 200 mg" in card["detail"]


# ---- order-select: the draft order is judged ----------------------------------------------------


def oxide_order(draft_id="draft-1", text=True) -> dict:
    concept = {"coding": [{"system": RXNORM_SYSTEM, "code": "198741"}]}
    if text:
        concept["text"] = "magnesium oxide 400 MG Oral Tablet"
    return {"resourceType": "MedicationRequest", "id": draft_id, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": concept}


def order_select(data: dict, *drafts: dict, selections=("MedicationRequest/draft-1",)) -> dict:
    body = hook_body(data, hook="order-select")
    body["context"] |= {"selections": list(selections), "draftOrders": bundle(*drafts)}
    return body


def levothyroxine_patient_at_egfr_45() -> dict:
    levothyroxine = {"resourceType": "MedicationStatement", "status": "active", "medicationCodeableConcept": {
        "coding": [{"system": RXNORM_SYSTEM, "code": "10582"}], "text": "Levothyroxine 100 mcg tablet"}}
    return prefetch(patient(70), observations=[observation("98979-8", 45, days_ago(30))], statements=[levothyroxine])


@pytest.mark.parametrize("with_text", [True, False])  # a code alone (RxNorm SCD 198741) is enough
def test_an_excluded_ordered_form_is_said_first_with_a_replacement_and_a_removal(client, with_text):
    card = card_of(client, order_select(levothyroxine_patient_at_egfr_45(), oxide_order(text=with_text)))
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Magnesium oxide is not advised for this patient (eGFR 30–59); consider ")
    assert card["detail"].startswith("**Ordered**: Magnesium oxide: not advised (eGFR 30–59).")
    replace, remove = card["suggestions"]
    assert card["selectionBehavior"] == "at-most-one" and replace["isRecommended"] is True
    (update,) = replace["actions"]
    top = card["summary"].rsplit("consider ", 1)[1]
    assert update["type"] == "update" and update["resource"]["id"] == "draft-1"
    assert update["resource"]["medicationCodeableConcept"]["text"] == top != "Magnesium oxide"
    assert "100–350 mg elemental magnesium a day" in update["resource"]["dosageInstruction"][0]["text"]  # UL 350
    assert remove["actions"] == [{"type": "delete", "resourceId": "MedicationRequest/draft-1",
                                  "description": "Delete the draft order for Magnesium oxide"}]
    assert "levothyroxine at least 4 hours before or 4 hours after magnesium" in card["detail"]


def test_an_ordered_form_at_severe_kidney_function_is_critical(client):
    data = prefetch(patient(70), conditions=[condition("443143006")])
    card = card_of(client, order_select(data, oxide_order()))
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Magnesium oxide is not advised: no magnesium supplement for this patient")
    (remove,) = card["suggestions"]  # nothing to replace it with
    assert remove["actions"][0]["type"] == "delete"


def test_a_suitable_ordered_form_has_no_suggestions(client):
    data = prefetch(patient(40), observations=[observation("98979-8", 95, days_ago(30))])
    citrate = {**oxide_order(), "medicationCodeableConcept": {"text": "Magnesium citrate 150 mg capsule"}}
    card = card_of(client, order_select(data, citrate))
    assert card["summary"].startswith("Magnesium citrate ") and "suggestions" not in card


def test_only_the_selected_draft_is_judged_the_others_are_medicines(client):
    other = {**oxide_order("draft-2"), "medicationCodeableConcept": {"text": "Magnesium citrate 150 mg capsule"}}
    card = card_of(client, order_select(levothyroxine_patient_at_egfr_45(), oxide_order(), other))
    assert card["summary"].startswith("Magnesium oxide is not advised")
    assert "Already taking magnesium (Magnesium citrate 150 mg capsule" in card["detail"]


# ---- the card's parts ------------------------------------------------------------------------


def test_every_card_has_override_reasons_and_working_links(client):
    card = card_of(client, hook_body(levothyroxine_patient_at_egfr_45()))
    assert [reason["code"] for reason in card["overrideReasons"]] == [
        "supervised-monitoring", "benefit-outweighs-risk", "record-out-of-date", "patient-declined", "not-relevant"]
    assert {reason["system"] for reason in card["overrideReasons"]} == {"urn:formwise:cds-override-reason"}
    evidence, handout = card["links"]
    assert evidence["type"] == handout["type"] == "absolute"
    for link in (evidence, handout):
        response = client.get(link["url"].removeprefix("http://localhost"))
        assert response.status_code == 200, link
    page = client.get(handout["url"].removeprefix("http://localhost")).get_data(as_text=True)
    assert "Magnesium oxide" not in page.split("</h2>", 2)[1]  # not the first recommendation
    assert "levothyroxine" in page.lower()


def test_a_tampered_handout_link_is_refused(client):
    card = card_of(client, hook_body(levothyroxine_patient_at_egfr_45()))
    url = card["links"][1]["url"].removeprefix("http://localhost")
    response = client.get(url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB"))
    assert response.status_code in (400, 404) and response.mimetype == "application/problem+json"


ENGLISH_WORDS = {"the", "and", "with", "for", "of", "or", "not", "on", "per", "to", "from", "is", "are",
                 "before", "after", "give", "take", "suitable", "caution", "advised", "kidney", "disorder",
                 "finding", "estimated", "medicine", "medicines", "source", "date", "unknown", "found",
                 "none", "female", "male", "checks", "points", "patient", "replace", "remove", "order",
                 "delete", "change", "draft", "elemental", "salt", "day", "a", "at", "by",
                 "magnesium-containing", "tablet", "evidence", "handout", "declined", "relevant", "record"}


def words_of(card: dict) -> set[str]:
    text = " ".join([card["summary"], re.sub(r"\]\([^)]*\)", "]", card["detail"]),
                     *(link["label"] for link in card["links"]),
                     *(reason["display"] for reason in card["overrideReasons"]),
                     *(s["label"] for s in card.get("suggestions", ())),
                     *(a["description"] for s in card.get("suggestions", ()) for a in s["actions"])])
    text = text.replace("Levothyroxine 100 mcg tablet", "")  # the record's own words
    return {word.lower() for word in re.findall(r"[A-Za-zÄÖÜäöüß-]+", text)}


def test_german_cards_have_no_english_words_and_german_numbers(client):
    headers = {"Accept-Language": "de"}
    cards = [card_of(client, order_select(levothyroxine_patient_at_egfr_45(), oxide_order()), headers=headers),
             card_of(client, hook_body(prefetch(patient(78), conditions=[condition("431857002")],
                                                observations=[observation("62238-1", 80, "2012-03-01"),
                                                              observation("19123-9", 1.2, days_ago(5),
                                                                          unit="mg/dL")])), headers=headers)]
    for card in cards:
        assert not words_of(card) & ENGLISH_WORDS, words_of(card) & ENGLISH_WORDS
        undated = re.sub(r"\b\d{2}\.\d{2}\.\d{4}\b", "", card["detail"])  # German dates use points
        assert not re.search(r"\d\.\d{1,2}(?!\d)", undated)  # no English decimal point (1.234 groups thousands)
    first, second = cards
    assert first["summary"].startswith("Magnesiumoxid wird für diese Person nicht empfohlen")
    assert re.search(r"\d\.\d{3} mg des Salzes", first["detail"])  # a German thousands separator
    assert "0,49 mmol/l" in second["detail"] and "am 01.03.2012" in second["detail"]
    assert "Geschlecht" not in second["detail"] and "weiblich" in second["detail"]


def test_english_cards_are_written_for_the_clinician(client):
    card = card_of(client, order_select(levothyroxine_patient_at_egfr_45(), oxide_order()))
    text = " ".join([card["summary"], card["detail"]]).lower()
    assert not re.search(r"\b(you|your)\b", text)
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", card["detail"])  # no raw codes such as kidney_impairment_moderate
    assert len(card["summary"]) < 140


# ---- feedback --------------------------------------------------------------------------------


def feedback_item(card, outcome, **extra):
    return {"card": card, "outcome": outcome, "outcomeTimestamp": "2026-12-07T10:00:00Z", **extra}


def post_feedback(client, *items):
    return client.post(SERVICE + "/feedback", json={"feedback": list(items)})


def test_feedback_is_taken_only_for_issued_cards_and_their_suggestions(client):
    card = card_of(client, order_select(levothyroxine_patient_at_egfr_45(), oxide_order()))
    replace = card["suggestions"][0]["uuid"]
    accepted = feedback_item(card["uuid"], "accepted", acceptedSuggestions=[{"id": replace}])
    assert post_feedback(client, accepted).status_code == 200

    never_issued = post_feedback(client, feedback_item(str(uuid.uuid4()), "overridden"))
    assert never_issued.status_code == 422
    assert never_issued.get_json()["errors"][0]["field"] == "feedback.0.card"

    foreign = feedback_item(card["uuid"], "accepted", acceptedSuggestions=[{"id": str(uuid.uuid4())}])
    assert post_feedback(client, foreign).get_json()["errors"][0]["field"] == "feedback.0.acceptedSuggestions"

    plain = card_of(client, hook_body(prefetch()))  # a card without suggestions
    refused = post_feedback(client, feedback_item(plain["uuid"], "accepted"))
    assert refused.status_code == 422 and refused.get_json()["errors"][0]["field"] == "feedback.0.acceptedSuggestions"
    assert post_feedback(client, feedback_item(plain["uuid"], "overridden", overrideReason={
        "reason": {"system": "urn:formwise:cds-override-reason", "code": "not-relevant"}})).status_code == 200


def test_a_bad_cds_setting_stops_the_start():
    with pytest.raises(ValueError, match="FORMWISE_CDS_CARD_MEMORY_DAYS"):
        create_app({"TESTING": True, "FORMWISE_CDS_CARD_MEMORY_DAYS": "a month"})


def test_cards_are_forgotten_after_the_set_time():
    client = create_app({"TESTING": True, "FORMWISE_CDS_CARD_MEMORY_DAYS": 0}).test_client()
    card = card_of(client, hook_body(prefetch()))
    response = post_feedback(client, feedback_item(card["uuid"], "overridden"))
    assert response.status_code == 422


def test_card_links_use_the_public_url_not_the_callers_host_header():
    client = create_app({"TESTING": True, "FORMWISE_CDS_PUBLIC_URL": "https://formwise.example.org"}).test_client()
    card = card_of(client, hook_body(prefetch()), headers={"Host": "attacker.test"})
    assert card["source"]["url"] == "https://formwise.example.org/docs"
    assert all(link["url"].startswith("https://formwise.example.org/v1/") for link in card["links"])
