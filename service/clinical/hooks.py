"""HL7 CDS Hooks 2.0: ``GET /cds-services`` (discovery), the magnesium-form-advice service
for the ``patient-view`` and ``order-select`` hooks, and its feedback endpoint.

The FHIR R4 data comes from the request's ``prefetch``; a key the client left out (or sent
as null) is fetched from ``fhirServer`` with the ``fhirAuthorization`` bearer token. When
data is missing and cannot be fetched the answer is 412. Reading the resources into a profile
is models/knowledge/codes.py's job and ranking is the one engine's: this module moves data
and writes the card (summary, indicator from max_severity, source, Markdown detail)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
from urllib.parse import quote

import marshmallow as ma
import orjson
from flask import Blueprint, abort, current_app, g, request
from marshmallow import fields, validate

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.codes import LOINC_SYSTEM, default_clinical_codes
from formwise.service.api.errors import problem, problem_from_body, validation_problem_body
from formwise.service.api.handout import handout_link
from formwise.service.api.recommendations import recommend
from formwise.service.api.responses import json_response
from formwise.service.clinical import auth as cds_auth
from formwise.service.clinical.cards import CardWriter
from formwise.service.clinical.fhir_fetch import (
    FetchLimits,
    FhirFetcher,
    FhirFetchFailed,
    FhirFetchRefused,
    describe_failure,
    parse_allow_list,
)
from formwise.service.clinical.fhir_profile import FhirProfileReader, InvalidFhirData, MissingFhirData, resources_of
from formwise.service.settings import settings_of
from formwise.service.store import queries as storage

# A plain Flask blueprint: CDS Hooks describes itself through its discovery endpoint, and its
# answers (412 when the record lacks data) follow that specification, not the v1 OpenAPI contract.
blp = Blueprint("cds_hooks", __name__, url_prefix="/cds-services")
log = logging.getLogger("formwise.cds")

# One service per hook in discovery (CDS clients key services by id); either id answers
# either hook, so a client may also send order-select to magnesium-form-advice.
SERVICES = {
    "magnesium-form-advice": "patient-view",
    "magnesium-form-advice-order-select": "order-select",
}
HOOKS = ("patient-view", "order-select")
SERVICE_TITLE = "Magnesium form advice"
SERVICE_DESCRIPTION = ("Ranks magnesium supplement forms for the patient from age, sex, eGFR, conditions and "
                       "medicines, with the caveats, interactions and the advice to consult a clinician.")
FEEDBACK_MAX_ITEMS = 100
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
}
FHIR_SERVER_URL = re.compile(r"^https?://[^\s/?#]+(/\S*)?$")


def prefetch_templates() -> dict[str, str]:
    """What the service needs, as FHIR queries with the patient id to fill in."""
    codes = default_clinical_codes()
    observation_codes = ",".join(f"{LOINC_SYSTEM}|{code}" for role in ("egfr", "serum_magnesium")
                                 for code in codes.loinc_codes(role))
    patient = "{{context.patientId}}"
    return {
        "patient": f"Patient/{patient}",
        "observations": f"Observation?patient={patient}&code={observation_codes}&_sort=-date",
        "conditions": f"Condition?patient={patient}",
        "medicationRequests": f"MedicationRequest?patient={patient}&_include=MedicationRequest:medication",
        "medicationStatements": f"MedicationStatement?patient={patient}&_include=MedicationStatement:medication",
    }


# ---- request schemas (CDS Hooks objects allow extensions, so unknown fields are kept) -----


class OpenSchema(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE


class FhirAuthorizationSchema(OpenSchema):
    access_token = fields.String(required=True, validate=validate.Length(1, 8192))
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer"], error="Must be Bearer."))
    expires_in = fields.Integer()
    scope = fields.String()
    subject = fields.String()


class HookContextSchema(OpenSchema):
    userId = fields.String()
    patientId = fields.String(required=True, validate=validate.Length(1, 64))
    encounterId = fields.String()
    selections = fields.List(fields.String())
    draftOrders = fields.Dict()


class HookRequestSchema(OpenSchema):
    hook = fields.String(required=True, validate=validate.OneOf(HOOKS, error="Must be one of: " + ", ".join(HOOKS)))
    hookInstance = fields.String(required=True, validate=validate.Length(1, 100))
    fhirServer = fields.String(validate=validate.Regexp(FHIR_SERVER_URL, error="Must be an http(s) URL."))
    fhirAuthorization = fields.Nested(FhirAuthorizationSchema, allow_none=True)
    context = fields.Nested(HookContextSchema, required=True)
    prefetch = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))

    @ma.validates_schema
    def _as_the_specification_requires(self, data, **kwargs):
        if data.get("hook") == "order-select":
            context = data.get("context") or {}
            missing = {name: ["Required for the order-select hook."] for name in ("selections", "draftOrders")
                       if name not in context}
            if missing:
                raise ma.ValidationError({"context": missing})
        if data.get("fhirAuthorization") and not data.get("fhirServer"):
            raise ma.ValidationError({"fhirServer": ["Required when fhirAuthorization is given."]})


class CodingSchema(OpenSchema):
    system = fields.String()
    code = fields.String(required=True, validate=validate.Length(1, 100))
    display = fields.String()


class OverrideReasonSchema(OpenSchema):
    reason = fields.Nested(CodingSchema)
    userComment = fields.String()


class FeedbackItemSchema(OpenSchema):
    card = fields.UUID(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(["accepted", "overridden"],
                                                                   error="Must be accepted or overridden."))
    acceptedSuggestions = fields.List(fields.Dict())
    overrideReason = fields.Nested(OverrideReasonSchema)
    outcomeTimestamp = fields.DateTime(required=True)

    @ma.validates_schema
    def _override_reason_only_when_overridden(self, data, **kwargs):
        if data.get("overrideReason") and data.get("outcome") != "overridden":
            raise ma.ValidationError({"overrideReason": ["Only with outcome overridden."]})


class FeedbackRequestSchema(OpenSchema):
    feedback = fields.List(fields.Nested(FeedbackItemSchema), required=True,
                           validate=validate.Length(1, FEEDBACK_MAX_ITEMS))


# ---- FHIR access --------------------------------------------------------------------------


def init_app(app, api=None) -> None:
    """Read the CDS settings once, at start-up: a bad value stops the service here, not at
    the first card."""
    settings = settings_of(app)
    app.extensions["formwise_cds_settings"] = {
        "max_observation_age_days": settings["FORMWISE_CDS_MAX_OBSERVATION_AGE_DAYS"],
        "card_memory_days": settings["FORMWISE_CDS_CARD_MEMORY_DAYS"],
        "allowed_fhir_servers": parse_allow_list(settings["FORMWISE_CDS_ALLOWED_FHIR_SERVERS"] or ()),
        "fhir_private_hosts": frozenset(settings["FORMWISE_CDS_FHIR_PRIVATE_HOSTS"] or ()),
        "fhir_limits": FetchLimits(deadline_seconds=settings["FORMWISE_CDS_FHIR_DEADLINE_SECONDS"]),
    }


def gather_fhir_data(body: dict) -> tuple[dict, list[str]]:
    """Every prefetch key's data, fetched when the client did not send it (only from an
    allowed FHIR server, see formwise.service.clinical.fhir_fetch); and the keys (with the reason) that could
    not be had. The reason for a failed fetch is the same whatever failed."""
    prefetch = body.get("prefetch") or {}
    server = body.get("fhirServer")
    token = (body.get("fhirAuthorization") or {}).get("access_token")
    patient_id = quote(body["context"]["patientId"], safe="")
    data, missing, fetcher, refusal = {}, [], None, None
    for key, template in prefetch_templates().items():
        if prefetch.get(key) is not None:
            data[key] = prefetch[key]
            continue
        if not server:
            missing.append(f"{key} (not prefetched and no fhirServer given)")
            continue
        if fetcher is None and refusal is None:
            settings = current_app.extensions["formwise_cds_settings"]
            try:
                fetcher = FhirFetcher(server, token, settings["allowed_fhir_servers"], settings["fhir_private_hosts"],
                                      settings["fhir_limits"])
            except FhirFetchRefused as error:
                refusal = str(error)
        if refusal is not None:
            missing.append(f"{key} ({refusal})")
            continue
        try:
            data[key] = fetcher.get(template.replace("{{context.patientId}}", patient_id))
        except (FhirFetchRefused, FhirFetchFailed) as error:
            log.info("FHIR fetch failed: %s", error)  # which check; never the URL or the token
            refusal = describe_failure(error)  # the server failed once: the other keys are not tried
            missing.append(f"{key} ({refusal})")
    return data, missing


def _patient_digest(patient_id: str) -> str:
    """The patient id as a keyed hash: the same patient gives the same digest in the audit
    log, and the log alone does not say who it was."""
    key = storage.app_secret("audit-patient-ids").encode()
    return hmac.new(key, str(patient_id).encode(), hashlib.sha256).hexdigest()[:32]


def _service_or_404(service_id: str) -> None:
    if service_id not in SERVICES:
        abort(problem(404, "Not Found", f"No CDS service '{service_id}'. Known services: {', '.join(SERVICES)}."))


# ---- endpoints ------------------------------------------------------------------------------


def _load(schema: ma.Schema) -> dict:
    """The JSON body, validated; a problem (400, 415 or 422) is raised as an HTTP error."""
    if not request.is_json:
        abort(problem(415, "Unsupported Media Type",
                      f"Send the body as application/json (got '{request.mimetype or 'no Content-Type'}')."))
    try:
        body = orjson.loads(request.get_data())
    except orjson.JSONDecodeError as error:
        abort(problem(400, "Bad Request", f"Invalid JSON: {error}", slug="invalid-json"))
    try:
        return schema.load(body if isinstance(body, dict) else {"": body})
    except ma.ValidationError as error:
        abort(problem_from_body(validation_problem_body(error.messages)))


@blp.before_request
def _trusted_clients_only():
    """With trusted clients configured (service/clinical/auth.py), a call or feedback without a
    valid JWT of one of them is refused (401) before its body is read."""
    trust = cds_auth.trusted_clients()
    if trust is None or request.method != "POST":
        return None
    try:
        claims = trust.check(request.headers.get("Authorization"), cds_auth.audiences_of_this_call())
        g.cds_client = f"{claims.get('iss')} {claims.get('sub') or ''}".strip()
    except cds_auth.ClientNotTrusted as refusal:
        return problem(401, "Unauthorized", str(refusal), slug="cds-client-not-trusted",
                       headers={"WWW-Authenticate": 'Bearer realm="cds-services", error="invalid_token"'})
    except cds_auth.ReplayCheckUnavailable as failure:
        log.error("the store of used CDS token ids is unreachable (%s)", failure)
        return problem(503, "Service Unavailable", "Whether this token was used before cannot be checked right "
                       "now; try again shortly.", slug="cds-token-check-unavailable", headers={"Retry-After": "5"})
    return None


@blp.after_request
def _allow_browser_clients(response):
    """CDS clients such as the CDS Hooks sandbox call from the browser."""
    response.headers.update(CORS_HEADERS)
    return response


@blp.get("")
def discovery():
    """CDS Hooks discovery: the services, their hooks and prefetch templates."""
    templates = prefetch_templates()
    return json_response({"services": [
        {"hook": hook, "id": service_id, "title": SERVICE_TITLE, "description": SERVICE_DESCRIPTION,
         "prefetch": templates}
        for service_id, hook in SERVICES.items()
    ]})


@blp.post("/<string:service_id>")
def call_service(service_id: str):
    """A patient-view or order-select call: Patient (age, sex), the newest eGFR and serum
    magnesium Observations (LOINC), current Conditions (SNOMED CT), MedicationRequests,
    MedicationStatements and, for order-select, the draft orders (RxNorm codes or text)
    become one profile for the engine; the answer is one card."""
    _service_or_404(service_id)
    body = _load(HookRequestSchema())
    data, missing = gather_fhir_data(body)
    if missing:
        return problem(412, "Precondition Failed",
                       "Required FHIR data is missing and could not be fetched: " + "; ".join(missing) + ".",
                       slug="fhir-data-missing")
    resources = [data[key] for key in data if key != "patient"]
    patients = resources_of(data["patient"], "Patient")
    recommender = current_app.extensions["formwise"]
    settings = current_app.extensions["formwise_cds_settings"]
    max_age_days = settings["max_observation_age_days"]
    reader = FhirProfileReader(default_clinical_codes(), recommender.engine.medicines,
                               {form.ingredient: form.id for form in recommender.knowledge_base.forms}, max_age_days)
    context = body["context"]
    try:
        reading = reader.read(patients[0] if patients else None, resources, dt.datetime.now(dt.UTC).date(),
                              context.get("draftOrders"), context.get("selections"))
    except InvalidFhirData as error:
        return problem(422, "Unprocessable FHIR data", str(error), slug="fhir-data-invalid",
                       errors=[{"field": error.field_name, "message": str(error)}])
    except MissingFhirData as error:
        return problem(412, "Precondition Failed", f"Required FHIR data is missing: {error}.",
                       slug="fhir-data-missing", errors=[{"field": error.field_name, "message": str(error)}])
    locale = request.accept_languages.best_match(vocab.LOCALES) or vocab.DEFAULT_LOCALE
    (answer,), locale = recommend([reading.profile], {"limit": 20, "locale": locale, "explain": False})
    writer = CardWriter(recommender.knowledge_base, locale, cds_auth.public_base_url(), max_age_days)
    card = writer.card(answer, reading, handout_link(reading.profile, locale))
    memory_days = settings["card_memory_days"]
    storage.remember_card(card["uuid"], [item["uuid"] for item in card.get("suggestions", ())],
                          forget_after=int(dt.datetime.now(dt.UTC).timestamp()) + memory_days * 86400)
    storage.record_audit("cds.call", g.get("cds_client", "open (no JWT checked)"), service_id,
                         {"hook": body["hook"], "patient": _patient_digest(body["context"]["patientId"]),
                          "card": card["uuid"], "indicator": card["indicator"]})
    return json_response({"cards": [card]}, headers={"Content-Language": locale})


@blp.post("/<string:service_id>/feedback")
def feedback(service_id: str):
    """Feedback on cards, accepted or overridden. Only the card's uuid, the outcome and the
    override reason's code are stored, never the clinician's free-text comment."""
    _service_or_404(service_id)
    body = _load(FeedbackRequestSchema())
    now = dt.datetime.now(dt.UTC).timestamp()
    errors = []
    for position, item in enumerate(body["feedback"]):
        suggestions = storage.card_suggestions(str(item["card"]), now)
        if suggestions is None:
            errors.append({"field": f"feedback.{position}.card",
                           "message": "Not a card this service issued (or it is older than the feedback window)."})
            continue
        accepted = [str(choice.get("id")) for choice in item.get("acceptedSuggestions") or ()]
        unknown = [choice for choice in accepted if choice not in suggestions]
        if unknown:
            errors.append({"field": f"feedback.{position}.acceptedSuggestions",
                           "message": f"Not suggestions of this card: {', '.join(unknown)}."})
        elif item["outcome"] == "accepted" and not accepted:
            errors.append({"field": f"feedback.{position}.acceptedSuggestions",
                           "message": "Required with outcome accepted: the suggestions that were accepted."})
    if errors:
        return problem(422, "Unprocessable Content", "Feedback can only be given on this service's cards and "
                       "their suggestions.", slug="cds-feedback-refused", errors=errors)
    stored = 0
    for item in body["feedback"]:
        reason = (item.get("overrideReason") or {}).get("reason") or {}
        storage.record_cds_feedback(str(item["card"]), item["outcome"], reason.get("code"))
        stored += 1
    return json_response({"received": len(body["feedback"]), "stored": stored})
