"""CDS Hooks 2.0 through the Flask test client: discovery, cards from FHIR R4 prefetch, data
fetched from a real local FHIR server (http.server in a thread), 412s, and feedback."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from formwise.models.knowledge.codes import LOINC_SYSTEM, RXNORM_SYSTEM, SNOMED_SYSTEM
from formwise.service.app import create_app

SERVICE = "/cds-services/magnesium-form-advice"
TODAY = dt.date.today()


def days_ago(days: int) -> str:
    """A date relative to today: the service ignores values older than 365 days."""
    return (TODAY - dt.timedelta(days=days)).isoformat()


# ---- FHIR resources, built here ----------------------------------------------------------


def born_years_ago(years: int) -> str:
    return TODAY.replace(year=TODAY.year - years, day=1).isoformat()


def patient(years=50, gender="female", patient_id="p1"):
    return {"resourceType": "Patient", "id": patient_id, "gender": gender, "birthDate": born_years_ago(years)}


def observation(code, value, date, status="final", unit="mL/min/{1.73_m2}", comparator=None):
    quantity = {"value": value, "unit": unit}
    if comparator:
        quantity["comparator"] = comparator
    return {"resourceType": "Observation", "status": status, "effectiveDateTime": date,
            "code": {"coding": [{"system": LOINC_SYSTEM, "code": code}]}, "valueQuantity": quantity}


def condition(snomed_code, clinical_status="active"):
    return {"resourceType": "Condition", "code": {"coding": [{"system": SNOMED_SYSTEM, "code": snomed_code}]},
            "clinicalStatus": {"coding": [{"code": clinical_status}]}}


def medication_request(rxcui=None, text=None, status="active"):
    concept = {}
    if rxcui:
        concept["coding"] = [{"system": RXNORM_SYSTEM, "code": rxcui}]
    if text:
        concept["text"] = text
    return {"resourceType": "MedicationRequest", "status": status, "medicationCodeableConcept": concept}


def medication_statement(text, status="active"):
    return {"resourceType": "MedicationStatement", "status": status, "medicationCodeableConcept": {"text": text}}


def bundle(*resources, next_url=None):
    body = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        body["link"] = [{"relation": "next", "url": next_url}]
    return body


def prefetch(person=None, observations=(), conditions=(), requests_=(), statements=()):
    return {"patient": person or patient(), "observations": bundle(*observations),
            "conditions": bundle(*conditions), "medicationRequests": bundle(*requests_),
            "medicationStatements": bundle(*statements)}


def hook_body(data=None, hook="patient-view", **extra):
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": {"userId": "Practitioner/1",
                                                                        "patientId": "p1"}}
    if data is not None:
        body["prefetch"] = data
    body.update(extra)
    return body


def card_of(client, body, **kwargs):
    response = client.post(SERVICE, json=body, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    (card,) = response.get_json()["cards"]
    return card


def expected_answer(client, profile):
    return client.post("/v1/recommendations", json={"profile": profile}).get_json()


# ---- discovery ----------------------------------------------------------------------------


def test_discovery_lists_one_service_per_hook_with_prefetch_templates(client):
    response = client.get("/cds-services")
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
    services = response.get_json()["services"]
    assert {service["hook"] for service in services} == {"patient-view", "order-select"}
    assert len({service["id"] for service in services}) == len(services)
    assert "magnesium-form-advice" in {service["id"] for service in services}
    for service in services:
        assert service["description"] and service["title"]
        templates = service["prefetch"]
        assert templates["patient"] == "Patient/{{context.patientId}}"
        for code in ("33914-3", "62238-1", "98979-8", "98980-6", "19123-9", "2601-3"):
            assert f"{LOINC_SYSTEM}|{code}" in templates["observations"]
        assert {"conditions", "medicationRequests", "medicationStatements"} <= set(templates)


# ---- cards from prefetch ------------------------------------------------------------------


def test_a_card_follows_the_specification_and_the_engine(client):
    data = prefetch(patient(66), observations=[observation("98979-8", 45, days_ago(20)),
                                               observation("19123-9", 1.9, days_ago(20), unit="mg/dL")],
                    conditions=[condition("37796009")], requests_=[medication_request("3640", "Doxy 100")])
    card = card_of(client, hook_body(data))
    engine = expected_answer(client, {"age": 66, "sex": "female", "egfr": 45, "conditions": ["migraine"],
                                      "medications": ["rxcui:3640"]})
    uuid.UUID(card["uuid"])
    assert len(card["summary"]) < 140
    assert card["indicator"] == engine["max_severity"] == "warning"
    assert card["source"]["label"] and card["source"]["url"].startswith("http")
    detail = card["detail"]
    ranks = [detail.index(f"**{item['name']}**") for item in engine["recommendations"]]
    assert ranks == sorted(ranks)  # the engine's order
    points = detail.split("**Points to check**")[1].split("**Medicines**")[0]
    severities = [line.split("**")[1] for line in points.strip().splitlines()]
    assert severities == [{"critical": "Critical", "warning": "Warning", "info": "Note"}[c["severity"]]
                          for c in engine["caveats"]]  # one point per caveat, in the engine's order
    assert "Doxy 100 (RxNorm 3640) (doxycycline)" in detail and "3 hours" in detail
    # the values used, each with its date; codes are shown as what they mean
    assert f"eGFR 45 mL/min/1.73 m² on {days_ago(20)}" in detail
    assert f"Serum magnesium 0.78 mmol/L on {days_ago(20)}" in detail  # 1.9 mg/dL / 2.43
    assert "problem list: Migraine" in detail and "37796009" not in detail and "98979-8" not in detail


def test_the_newest_current_egfr_is_used(client):
    observations = [observation("62238-1", 85, days_ago(200)), observation("98979-8", 24, days_ago(100)),
                    observation("98979-8", 90, days_ago(50), status="entered-in-error"),
                    observation("2160-0", 1.0, days_ago(10), unit="mg/dL")]  # creatinine: not an eGFR code
    card = card_of(client, hook_body(prefetch(observations=observations)))
    assert card["indicator"] == "critical"  # eGFR 24: no form
    assert "No magnesium supplement" in card["summary"]
    assert "eGFR 24" in card["detail"]


def test_a_reported_upper_bound_is_read_below_it(client):
    card = card_of(client, hook_body(prefetch(observations=[observation("33914-3", 30, days_ago(30),
                                                                        comparator="<")])))
    assert card["indicator"] == "critical"  # "<30" is severe, not moderate
    assert r"eGFR \<30" in card["detail"]  # Markdown-escaped


def test_conditions_pregnancy_and_dialysis_come_from_current_snomed_codes(client):
    pregnant = card_of(client, hook_body(prefetch(patient(30), conditions=[condition("77386006")])))
    expected = expected_answer(client, {"age": 30, "sex": "female", "pregnant": True})
    assert "pregnancy" in {caveat["code"] for caveat in expected["caveats"]}
    assert "Pregnancy: supplemental upper limit 350 mg a day." in pregnant["detail"]
    assert pregnant["indicator"] == expected["max_severity"]
    resolved = card_of(client, hook_body(prefetch(conditions=[condition("105502003", "resolved")])))
    assert resolved["indicator"] != "critical"
    dialysis = card_of(client, hook_body(prefetch(conditions=[condition("105502003")])))
    assert dialysis["indicator"] == "critical"


def test_medicines_resolve_from_rxnorm_codes_or_text_and_unknown_ones_are_named(client):
    data = prefetch(requests_=[medication_request("10582"), medication_request(status="stopped", text="digoxin")],
                    statements=[medication_statement("Synthroid 50 mcg tablet"), medication_statement("Zorblax")])
    detail = card_of(client, hook_body(data))["detail"]
    assert "levothyroxine" in detail and "digoxin" not in detail.split("Data used")[0]
    assert "Zorblax" in detail and "Not recognised" in detail


def test_order_select_reads_the_draft_orders(client):
    draft = medication_request("2551", "ciprofloxacin 500 MG Oral Tablet", status="draft")
    draft["id"] = "draft-1"
    body = hook_body(prefetch(), hook="order-select")
    body["context"] |= {"selections": ["MedicationRequest/draft-1"], "draftOrders": bundle(draft)}
    detail = card_of(client, body)["detail"]
    # a draft that is not magnesium counts as a medicine the patient will take
    assert "ciprofloxacin 500 MG Oral Tablet (RxNorm 2551) (ciprofloxacin): give ciprofloxacin at least" in detail


def test_text_from_the_record_stays_text_in_the_markdown(client):
    data = prefetch(statements=[medication_statement("**[click](javascript:alert(1))**")])
    detail = card_of(client, hook_body(data))["detail"]
    assert "[click]" not in detail and r"\*\*\[click\]" in detail


def test_cards_are_written_in_the_requested_language(client):
    response = client.post(SERVICE, json=hook_body(prefetch()), headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert response.headers["Content-Language"] == "de"
    assert response.get_json()["cards"][0]["summary"].startswith("Geeignete Magnesiumformen")
    response = client.post(SERVICE, json=hook_body(prefetch()), headers={"Accept-Language": "fr"})
    assert response.headers["Content-Language"] == "en"


# ---- missing data and bad requests -----------------------------------------------------------


def assert_problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json()


def test_missing_prefetch_without_a_fhir_server_is_412_naming_what_is_missing(client):
    data = prefetch()
    del data["medicationStatements"]
    data["conditions"] = None
    problem = assert_problem(client.post(SERVICE, json=hook_body(data)), 412)
    assert "medicationStatements" in problem["detail"] and "conditions" in problem["detail"]
    assert "patient (" not in problem["detail"]


def test_a_patient_without_a_birth_date_is_412(client):
    person = patient()
    del person["birthDate"]
    problem = assert_problem(client.post(SERVICE, json=hook_body(prefetch(person))), 412)
    assert problem["errors"][0]["field"] == "Patient.birthDate"


@pytest.mark.parametrize(("body", "field"), [
    ({"hookInstance": "x", "context": {"patientId": "p1"}}, "hook"),
    ({"hook": "order-sign", "hookInstance": "x", "context": {"patientId": "p1"}}, "hook"),
    ({"hook": "patient-view", "hookInstance": "x", "context": {}}, "context.patientId"),
    ({"hook": "order-select", "hookInstance": "x", "context": {"patientId": "p1"}}, "context.selections"),
    ({"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "p1"},
      "fhirServer": "ftp://example.org"}, "fhirServer"),
])
def test_malformed_hook_requests_are_422_naming_the_field(client, body, field):
    problem = assert_problem(client.post(SERVICE, json=body), 422)
    assert field in {error["field"] for error in problem["errors"]}


def test_unknown_services_and_non_json_bodies_are_problems(client):
    assert_problem(client.post("/cds-services/no-such-service", json=hook_body(prefetch())), 404)
    assert_problem(client.post(SERVICE, data="hook=patient-view", content_type="text/plain"), 415)
    assert_problem(client.post(SERVICE, data="{", content_type="application/json"), 400)
    assert_problem(client.post(SERVICE, json=["patient-view"]), 422)
    assert_problem(client.put(SERVICE, json=hook_body(prefetch())), 405)


# ---- a real FHIR server -----------------------------------------------------------------------


class ServedInThread:
    """``self.server`` (an http.server) served from a thread for the length of a with block."""

    server: http.server.ThreadingHTTPServer

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class FhirServer(ServedInThread):
    """A tiny FHIR server on a free local port: answers the service's queries from a dict of
    resources, requires a bearer token, pages MedicationRequest, and records what it was asked."""

    def __init__(self, token="secret-token"):
        self.token, self.requests, self.resources = token, [], {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self.reply(401, {"resourceType": "OperationOutcome"})
                path = urlsplit(self.path)
                kind = path.path.split("/")[2]  # /fhir/<type>[/<id>]
                if kind == "Patient":
                    return self.reply(200, outer.resources["Patient"])
                items = outer.resources.get(kind, [])
                if kind == "MedicationRequest":  # two pages: the first links to the second
                    if "page" not in parse_qs(path.query):
                        return self.reply(200, bundle(*items[:1], next_url=outer.base + "MedicationRequest?page=2"))
                    items = items[1:]
                return self.reply(200, bundle(*items))

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir/"


@pytest.fixture()
def fhir_server():
    with FhirServer() as server:
        server.resources = {
            "Patient": patient(72, "male"),
            "Observation": [observation("62238-1", 52, days_ago(40))],
            "Condition": [condition("193462001")],
            "MedicationRequest": [medication_request("3640"), medication_request(text="Synthroid")],
            "MedicationStatement": [],
        }
        yield server


def with_server(server, token="secret-token"):
    return {"fhirServer": server.base, "fhirAuthorization": {
        "access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "s"}}


def allowing(server, **settings):
    """A client of an app that may call this test server (loopback, so allowed by name)."""
    return create_app({"TESTING": True, "FORMWISE_CDS_ALLOWED_FHIR_SERVERS": [server.base],
                       "FORMWISE_CDS_FHIR_PRIVATE_HOSTS": ["127.0.0.1"], **settings}).test_client()


def test_missing_prefetch_is_fetched_from_the_fhir_server_with_the_token(fhir_server):
    client = allowing(fhir_server)
    card = card_of(client, hook_body(None, **with_server(fhir_server)))
    engine = expected_answer(client, {"age": 72, "sex": "male", "egfr": 52, "conditions": ["insomnia"],
                                      "medications": ["rxcui:3640", "Synthroid"]})
    assert card["indicator"] == engine["max_severity"]
    assert "eGFR 52" in card["detail"] and "problem list: Trouble sleeping" in card["detail"]
    assert "doxycycline (RxNorm 3640)" in card["detail"]  # a code alone is shown as what it names
    assert "levothyroxine" in card["detail"]  # from the second page
    paths = [path for path, _ in fhir_server.requests]
    assert "/fhir/Patient/p1" in paths and any("page=2" in path for path in paths)
    assert all(auth == "Bearer secret-token" for _, auth in fhir_server.requests)


def test_prefetch_wins_and_only_the_missing_keys_are_fetched(fhir_server):
    data = prefetch(patient(40))
    del data["observations"]
    card_of(allowing(fhir_server), hook_body(data, **with_server(fhir_server)))
    assert [path.split("?")[0] for path, _ in fhir_server.requests] == ["/fhir/Observation"]


def test_a_fhir_server_that_refuses_is_412_without_saying_how(fhir_server):
    client = allowing(fhir_server)
    problem = assert_problem(client.post(SERVICE, json=hook_body(None, **with_server(fhir_server, "wrong"))), 412)
    assert "could not be read" in problem["detail"] and "401" not in problem["detail"]


def test_an_unreachable_fhir_server_is_412(client):
    with FhirServer() as server:
        base = server.base
    body = hook_body(None, fhirServer=base)
    problem = assert_problem(allowing(server).post(SERVICE, json=body), 412)
    assert "could not be read" in problem["detail"]


def test_by_default_no_fhir_server_is_called(client, fhir_server):
    problem = assert_problem(client.post(SERVICE, json=hook_body(None, **with_server(fhir_server))), 412)
    assert "prefetch only" in problem["detail"] and fhir_server.requests == []


def test_only_allowed_fhir_servers_are_fetched(fhir_server):
    app = create_app({"TESTING": True, "FORMWISE_CDS_ALLOWED_FHIR_SERVERS": ["https://fhir.example.org"]})
    response = app.test_client().post(SERVICE, json=hook_body(None, **with_server(fhir_server)))
    assert response.status_code == 412 and fhir_server.requests == []


# ---- feedback -------------------------------------------------------------------------------


def feedback(outcome="accepted", card=None, **extra):
    return {"card": card or str(uuid.uuid4()), "outcome": outcome, "outcomeTimestamp": "2026-01-02T10:00:00Z",
            **extra}


def test_feedback_is_stored_by_card_id_and_reason_code_only(database_url):
    from formwise.service.store import queries as storage

    client = create_app({"TESTING": True, "DATABASE_URL": database_url}).test_client()
    first, second = (card_of(client, hook_body(prefetch()))["uuid"] for _ in range(2))
    overridden = feedback("overridden", first, overrideReason={
        "reason": {"code": "patient-declined", "system": "urn:formwise:cds-override-reason"},
        "userComment": "patient name here"})
    response = client.post(SERVICE + "/feedback", json={"feedback": [overridden, feedback("overridden", second)]})
    assert response.status_code == 200 and response.get_json() == {"received": 2, "stored": 2}
    with client.application.app_context():
        stored = {item["card_uuid"]: item for item in storage.list_cds_feedback()}
    assert stored[first]["override_reason_code"] == "patient-declined" and stored[second]["outcome"] == "overridden"
    assert "patient name here" not in json.dumps([str(v) for item in stored.values() for v in item.values()])


@pytest.mark.parametrize(("item", "field"), [
    (feedback("ignored"), "feedback.0.outcome"),
    ({**feedback(), "card": "not-a-uuid"}, "feedback.0.card"),
    (feedback("accepted", overrideReason={"reason": {"code": "x"}}), "feedback.0.overrideReason"),
])
def test_malformed_feedback_is_422(client, item, field):
    problem = assert_problem(client.post(SERVICE + "/feedback", json={"feedback": [item]}), 422)
    assert field in {error["field"] for error in problem["errors"]}


def test_feedback_for_an_unknown_service_is_404(client):
    assert_problem(client.post("/cds-services/nope/feedback", json={"feedback": [feedback()]}), 404)
