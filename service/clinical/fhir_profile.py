"""FHIR R4 resources read into a contract profile: age from the Patient's birth date, eGFR and
serum magnesium from recent final Observations (units converted by the codes in
formwise.data), conditions and kidney status from active Conditions, medicines from active
MedicationRequests and MedicationStatements. What cannot be read is named, never guessed.

Which FHIR states count as current, which value is used (the newest, not older than a set
age, in a unit known), whether a CKD stage or an eGFR wins (the newer), how a reported bound
such as "<60" or a birth year alone is read, and which draft order is being judged are
decisions, made here once. Pure functions over plain dicts: no HTTP and no Flask; the CDS
Hooks service fetches the resources (fhir_fetch) and hands them over."""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from dataclasses import dataclass, field

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.codes import (
    LOINC_ROLES,
    LOINC_SYSTEM,
    MEASUREMENT_RANGES,
    PROFILE_FLAGS,
    RXNORM_SYSTEM,
    SNOMED_SYSTEM,
    UCUM_SYSTEM,
    ClinicalCodes,
    KidneyCode,
    unit_key,
)

# FHIR states that count as current; resources in any other state are left out.
OBSERVATION_STATUSES = ("final", "amended", "corrected")
CONDITION_INACTIVE_STATUSES = ("inactive", "remission", "resolved")
CONDITION_UNTRUE_STATUSES = ("refuted", "entered-in-error")
MEDICATION_REQUEST_STATUSES = ("active", "on-hold", "draft")
MEDICATION_STATEMENT_STATUSES = ("active", "intended", "on-hold")
MAX_AGE = 120
DEFAULT_MAX_OBSERVATION_AGE_DAYS = 365


class MissingFhirData(ValueError):
    """Data the profile cannot do without is absent (``field`` names the FHIR element)."""

    def __init__(self, field_name: str, message: str):
        self.field_name = field_name
        super().__init__(message)


class InvalidFhirData(MissingFhirData):
    """The data is there but cannot be true (a birth date in the future)."""


def resources_of(container, resource_type: str) -> list[dict]:
    """The resources of one type in a searchset Bundle, a single resource, or a list of either."""
    if container is None:
        return []
    if isinstance(container, list):
        return [item for part in container for item in resources_of(part, resource_type)]
    if not isinstance(container, dict):
        return []
    if container.get("resourceType") == "Bundle":
        return resources_of([entry.get("resource") for entry in container.get("entry") or []
                             if isinstance(entry, dict)], resource_type)
    return [container] if container.get("resourceType") == resource_type else []


def parse_fhir_moment(value) -> dt.datetime | None:
    """A FHIR date or dateTime ("2024", "2024-05", "2024-05-03", "2024-05-03T10:00:00Z") as an
    aware datetime (partial dates at their start), or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if re.fullmatch(r"\d{4}", text):
        text += "-01-01"
    elif re.fullmatch(r"\d{4}-\d{2}", text):
        text += "-01"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def age_from_birth_date(birth_date: str, today: dt.date) -> int:
    """Whole years on ``today``. A birth date given only as a year or a month is read as its
    last possible day: the youngest possible age, whose dose limits are the stricter ones."""
    if not isinstance(birth_date, str) or not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", birth_date):
        raise MissingFhirData("Patient.birthDate", "Patient.birthDate is missing or is not a FHIR date")
    parts = [int(part) for part in birth_date.split("-")]
    year = parts[0]
    month = parts[1] if len(parts) > 1 else 12
    if not 1 <= month <= 12:
        raise InvalidFhirData("Patient.birthDate", f"Patient.birthDate '{birth_date}' has no such month")
    day = parts[2] if len(parts) > 2 else calendar.monthrange(year, month)[1]
    try:
        born = dt.date(year, month, day)
    except ValueError:
        raise InvalidFhirData("Patient.birthDate", f"Patient.birthDate '{birth_date}' is not a date") from None
    if born > today:
        raise InvalidFhirData("Patient.birthDate", f"Patient.birthDate '{birth_date}' is in the future")
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return min(age, MAX_AGE)


def _codings(concept, system: str) -> list[dict]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, dict) and c.get("system") == system]


def _status_code(concept) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return coding["code"]
    return None


def _condition_moment(condition: dict) -> dt.datetime | None:
    """When a condition was recorded (or began): the date a newer eGFR must beat."""
    period = condition.get("onsetPeriod") or {}
    for value in (condition.get("recordedDate"), condition.get("onsetDateTime"), period.get("start")):
        moment = parse_fhir_moment(value)
        if moment is not None:
            return moment
    return None


def _observation_moment(observation: dict) -> dt.datetime | None:
    period = observation.get("effectivePeriod") or {}
    for value in (observation.get("effectiveDateTime"), observation.get("effectiveInstant"),
                  period.get("end"), period.get("start"), observation.get("issued")):
        moment = parse_fhir_moment(value)
        if moment is not None:
            return moment
    return None


@dataclass
class FhirReading:
    """A contract profile read from FHIR, and what it was read from (for the card)."""

    profile: dict
    egfr: dict | None = None  # the observation used, its value in the contract's unit
    serum_magnesium: dict | None = None
    conditions: list[dict] = field(default_factory=list)
    medications: list[str] = field(default_factory=list)
    # name given to the engine -> how the record wrote it, e.g. "rxcui:3640" -> "Doxy 100 (rxcui:3640)"
    medication_labels: dict[str, str] = field(default_factory=dict)
    # Kidney codes on the problem list; and the one whose stage set the eGFR, when a stage
    # (newer than any eGFR measured) did.
    kidney_conditions: list[dict] = field(default_factory=list)
    egfr_from_condition: dict | None = None
    # Values left out, each with why: {"role", "value", "unit", "date", "code", "reason": "unit" | "old"};
    # "unit" is None when the value is in the contract's unit (converted from a known one)
    ignored: list[dict] = field(default_factory=list)
    # The selected draft orders for a magnesium product (order-select): {"reference", "label",
    # "ingredient", "form" (a form id, or None when no form of the knowledge base is that salt),
    # "resource"}. They are what is being judged, so they are not among the medicines.
    ordered: list[dict] = field(default_factory=list)


class FhirProfileReader:
    """Reads Patient, Observation, Condition, MedicationRequest and MedicationStatement
    resources into one profile. ``medicine_index`` resolves medicine names and RxCUIs;
    ``form_by_ingredient`` names the form of each magnesium salt a medicine may contain."""

    def __init__(self, codes: ClinicalCodes, medicine_index, form_by_ingredient: dict[str, str] | None = None,
                 max_observation_age_days: int = DEFAULT_MAX_OBSERVATION_AGE_DAYS):
        self.codes = codes
        self.medicines = medicine_index
        self.form_by_ingredient = form_by_ingredient or {}
        self.max_observation_age = dt.timedelta(days=max_observation_age_days)
        self.role_codes = {role: frozenset(codes.loinc_codes(role)) for role in LOINC_ROLES}

    def read(self, patient: dict, resources: list[dict], today: dt.date, draft_orders=None,
             selections: list[str] | None = None) -> FhirReading:
        """``draft_orders`` (order-select) are judged when ``selections`` name them (all of
        them when there are no selections); the others count as the patient's medicines."""
        if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
            raise MissingFhirData("Patient", "no Patient resource")
        profile: dict = {
            "age": age_from_birth_date(patient.get("birthDate"), today),
            "sex": patient.get("gender") if patient.get("gender") in ("female", "male") else "unspecified",
            "pregnant": False,
            "breastfeeding": False,
            "egfr": None,
            "dialysis": False,
            "serum_magnesium": None,
            "conditions": [],
            "goals": [],
            "medications": [],
        }
        reading = FhirReading(profile)
        now = dt.datetime.combine(today, dt.time.max, tzinfo=dt.UTC)
        observations = resources_of(resources, "Observation")
        reading.egfr = self._measured(observations, "egfr", now, reading.ignored)
        reading.serum_magnesium = self._measured(observations, "serum_magnesium", now, reading.ignored)
        if reading.serum_magnesium is not None:
            profile["serum_magnesium"] = reading.serum_magnesium["converted"]

        words = set()
        staged: list[tuple[dt.datetime | None, KidneyCode]] = []
        for condition in resources_of(resources, "Condition"):
            if not self._condition_is_current(condition):
                continue
            for coding in _codings(condition.get("code"), SNOMED_SYSTEM):
                code_text = str(coding.get("code"))
                kidney = self.codes.kidney.get(code_text)
                if kidney is not None:
                    moment = _condition_moment(condition)
                    reading.kidney_conditions.append({"code": kidney.code, "display": kidney.display,
                                                      "status": kidney.status, "egfr_below": kidney.egfr_below,
                                                      "date": moment.date().isoformat() if moment else None})
                    if kidney.status == "dialysis":
                        words.add("dialysis")
                    else:
                        staged.append((moment, kidney))
                    continue
                code = self.codes.snomed.get(code_text)
                if code is None:
                    continue
                words.add(code.meaning)
                reading.conditions.append({"code": code.code, "display": code.display, "maps_to": code.meaning})
        for flag in PROFILE_FLAGS:
            profile[flag] = flag in words
        profile["conditions"] = [word for word in vocab.CONDITIONS if word in words]
        if reading.egfr is not None:
            profile["egfr"] = self._bounded_value(reading.egfr, "egfr")
        self._stage_or_egfr(reading, staged)

        self._orders(reading, resources, draft_orders, selections)
        profile["medications"] = list(reading.medications)
        return reading

    # -- measurements -------------------------------------------------------------------

    def _measured(self, observations: list[dict], role: str, now: dt.datetime, ignored: list[dict]) -> dict | None:
        """The newest current observation of a role in a known unit and not older than the
        set age, its value converted to the contract's unit (``converted``); the newer ones
        left out go to ``ignored`` with the reason."""
        candidates = []
        for observation in observations:
            if observation.get("status") not in OBSERVATION_STATUSES:
                continue
            matching = [c for c in _codings(observation.get("code"), LOINC_SYSTEM)
                        if c.get("code") in self.role_codes[role]]
            quantity = observation.get("valueQuantity") or {}
            value = quantity.get("value")
            if not matching or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                    value):
                continue
            candidates.append((_observation_moment(observation), matching[0]["code"], quantity, float(value)))
        oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
        candidates.sort(key=lambda item: item[0] or oldest, reverse=True)
        for moment, code, quantity, value in candidates:
            unit = quantity.get("unit") or quantity.get("code") or ""
            seen = {"role": role, "code": code, "display": self.codes.loinc[code].display, "value": value,
                    "comparator": quantity.get("comparator"), "unit": unit,
                    "date": moment.date().isoformat() if moment else None}
            if moment is None or now - moment > self.max_observation_age:
                factor = self._unit_factor(role, quantity)
                if factor is not None:  # shown in the contract's unit, as a used value would be
                    seen |= {"value": value * factor, "unit": None}
                ignored.append({**seen, "reason": "old"})
                return None  # every older one is older still
            factor = self._unit_factor(role, quantity)
            if factor is None:
                ignored.append({**seen, "reason": "unit"})
                continue
            return {**seen, "converted": value * factor}
        return None

    def _unit_factor(self, role: str, quantity: dict) -> float | None:
        """The factor to the contract's unit for the quantity's UCUM code, else its unit text."""
        written = []
        if quantity.get("system") in (None, UCUM_SYSTEM) and quantity.get("code"):
            written.append(quantity["code"])
        if quantity.get("unit"):
            written.append(quantity["unit"])
        for unit in written:
            factor = self.codes.units.get((role, unit_key(unit)))
            if factor is not None:
                return factor
        return None

    @staticmethod
    def _bounded_value(observation: dict, role: str) -> float:
        """A reported upper bound ("<60") is read just under the bound, so the reading is
        never milder than the truth; a lower bound (">90") is read as the bound itself."""
        value = observation["converted"]
        if observation["comparator"] in ("<", "<="):
            value -= 1.0 if role == "egfr" else 0.01
        low, high = MEASUREMENT_RANGES[role]
        return float(min(max(value, low), high))

    def _stage_or_egfr(self, reading: FhirReading, staged: list) -> None:
        """A CKD stage (or a transplanted kidney) on the problem list gives the eGFR just under
        its bound when no eGFR was measured after the condition was recorded: the newer wins;
        of several stages, the most severe."""
        if not staged:
            return
        measured_at = (parse_fhir_moment(reading.egfr["date"]) if reading.egfr and reading.egfr["date"] else None)
        newer = [(moment, kidney) for moment, kidney in staged
                 if reading.egfr is None or (moment is not None and measured_at is not None and moment > measured_at)]
        if not newer:
            return
        moment, kidney = min(newer, key=lambda item: item[1].egfr_below)
        reading.egfr_from_condition = {"code": kidney.code, "display": kidney.display, "status": kidney.status,
                                       "egfr_below": kidney.egfr_below,
                                       "date": moment.date().isoformat() if moment else None}
        reading.profile["egfr"] = float(kidney.egfr_below - 1.0)

    @staticmethod
    def _condition_is_current(condition: dict) -> bool:
        if _status_code(condition.get("verificationStatus")) in CONDITION_UNTRUE_STATUSES:
            return False
        return _status_code(condition.get("clinicalStatus")) not in CONDITION_INACTIVE_STATUSES

    # -- medicines and draft orders --------------------------------------------------------

    def _orders(self, reading: FhirReading, resources, draft_orders, selections) -> None:
        selected = set(selections or ())
        drafts = [draft for draft in resources_of(draft_orders, "MedicationRequest")]
        judged = [draft for draft in drafts if not selected or f"MedicationRequest/{draft.get('id')}" in selected]
        by_reference = {f"Medication/{m.get('id')}": m for m in resources_of([resources, draft_orders], "Medication")}
        for draft in judged:
            named = self._medication_name(draft, by_reference)
            if named is None:
                continue
            name, label = named
            product = self._magnesium_ingredient(name)
            if product is None:
                continue
            reading.ordered.append({"reference": f"MedicationRequest/{draft.get('id')}", "label": label,
                                    "ingredient": product, "form": self.form_by_ingredient.get(product),
                                    "resource": draft})
        ordered_ids = {id(item["resource"]) for item in reading.ordered}
        others = [draft for draft in drafts if id(draft) not in ordered_ids]
        for name, label in self._medication_names([resources, others]):
            if name not in reading.medication_labels:
                reading.medications.append(name)
                reading.medication_labels[name] = label

    def _magnesium_ingredient(self, name: str) -> str | None:
        resolved = self.medicines.resolve(name)
        if resolved is None:
            return None
        for component in resolved.components:
            ingredient, drug_class = self.medicines.components[component]
            if drug_class == "magnesium_product":
                return ingredient
        return None

    def _medication_names(self, resources: list[dict]) -> list[tuple[str, str]]:
        """(name, label) per current medication. The name is the first of its RxNorm codes
        (as rxcui:NNNN), codings' displays and text that the knowledge base recognises, else
        its text (or display, or code) so the answer can echo it as unrecognised; the label
        is how the record wrote it."""
        by_reference = {f"Medication/{m.get('id')}": m for m in resources_of(resources, "Medication")}
        names = []
        for resource_type, statuses in (("MedicationRequest", MEDICATION_REQUEST_STATUSES),
                                        ("MedicationStatement", MEDICATION_STATEMENT_STATUSES)):
            for resource in resources_of(resources, resource_type):
                if resource.get("status") not in statuses:
                    continue
                name = self._medication_name(resource, by_reference)
                if name:
                    names.append(name)
        return names

    def _medication_name(self, resource: dict, by_reference: dict) -> tuple[str, str] | None:
        concept = resource.get("medicationCodeableConcept")
        fallback = None
        if concept is None:
            reference = resource.get("medicationReference") or {}
            target = str(reference.get("reference") or "")
            contained = {f"#{m.get('id')}": m for m in resources_of(resource.get("contained"), "Medication")}
            medication = contained.get(target) or by_reference.get(target)
            concept = (medication or {}).get("code")
            fallback = reference.get("display")
        concept = concept if isinstance(concept, dict) else {}
        rxcuis = [str(c["code"]) for c in _codings(concept, RXNORM_SYSTEM) if str(c.get("code", "")).isdigit()]
        codes = [f"rxcui:{rxcui}" for rxcui in rxcuis]
        words = [self.codes.products[rxcui] for rxcui in rxcuis if rxcui in self.codes.products]
        words += [c.get("display") for c in concept.get("coding") or [] if isinstance(c, dict)]
        words += [concept.get("text"), fallback]
        words = [w.strip()[:200] for w in words if isinstance(w, str) and w.strip()]
        readable = [w.strip()[:200] for w in (concept.get("text"), fallback) if isinstance(w, str) and w.strip()]
        label = (readable or words or codes or [None])[0]
        if label is None:
            return None
        for candidate in (*codes, *words):
            resolved = self.medicines.resolve(candidate)
            if resolved is None:
                continue
            shown = f"RxNorm {candidate.removeprefix('rxcui:')}" if candidate.startswith("rxcui:") else candidate
            if label == candidate and candidate.startswith("rxcui:"):  # only a code: say what it is
                ingredients = dict.fromkeys(self.medicines.components[c][0] for c in resolved.components)
                return candidate, f"{', '.join(ingredients)} ({shown})"
            return candidate, label if label == candidate else f"{label} ({shown})"
        if label.startswith("rxcui:"):
            return label, f"RxNorm {label.removeprefix('rxcui:')}"
        return label, label
