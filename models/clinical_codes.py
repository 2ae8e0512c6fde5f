"""Clinical codes, and FHIR R4 resources read into a contract profile.

Which LOINC codes count as eGFR or serum magnesium and which SNOMED CT codes stand for the
contract's conditions, pregnancy, breastfeeding and dialysis are facts in ``data/codes/``
(each row with a source id). Which FHIR states count as current, which eGFR is used (the
newest), and how a reported bound such as "<60" or a birth year alone is read are decisions,
made here once. Pure functions over plain dicts: no HTTP and no Flask; the CDS Hooks
adapter fetches the resources and hands them over."""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from data import DATA_DIR
from models import vocabulary as vocab
from models.knowledge import KnowledgeBaseError, _choice, _load_citations, _read_csv, _source

CODES_DIR = DATA_DIR / "codes"
LOINC_SYSTEM = "http://loinc.org"
SNOMED_SYSTEM = "http://snomed.info/sct"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"

LOINC_ROLES = ("egfr", "serum_magnesium")
PROFILE_FLAGS = ("pregnant", "breastfeeding", "dialysis")
_LOINC_CODE = re.compile(r"^\d{1,7}-\d$")
_SNOMED_CODE = re.compile(r"^\d{6,18}$")

# FHIR states that count as current; resources in any other state are left out.
OBSERVATION_STATUSES = ("final", "amended", "corrected")
CONDITION_INACTIVE_STATUSES = ("inactive", "remission", "resolved")
CONDITION_UNTRUE_STATUSES = ("refuted", "entered-in-error")
MEDICATION_REQUEST_STATUSES = ("active", "on-hold", "draft")
MEDICATION_STATEMENT_STATUSES = ("active", "intended", "on-hold")
# The contract's range for eGFR; a reported value beyond it is read as its end.
EGFR_RANGE = (0.0, 250.0)
MAX_AGE = 120


@dataclass(frozen=True)
class Code:
    code: str
    display: str
    meaning: str  # a LOINC role, or the contract word / profile flag a SNOMED code maps to
    url: str
    source: str


@dataclass(frozen=True)
class ClinicalCodes:
    loinc: dict[str, Code]
    snomed: dict[str, Code]

    def loinc_codes(self, role: str) -> tuple[str, ...]:
        return tuple(code for code, item in self.loinc.items() if item.meaning == role)


def _load_codes(path: Path, citations, pattern: re.Pattern, meaning_column: str, meanings) -> dict[str, Code]:
    codes: dict[str, Code] = {}
    for row, record in _read_csv(path, ("code", "display", meaning_column, "url", "source")):
        code = record["code"]
        if not pattern.match(code):
            raise KnowledgeBaseError(path, row, "code", f"'{code}' is not a valid code")
        if code in codes:
            raise KnowledgeBaseError(path, row, "code", f"duplicate code '{code}'")
        if not record["display"]:
            raise KnowledgeBaseError(path, row, "display", "value is required")
        if not record["url"].startswith("https://"):
            raise KnowledgeBaseError(path, row, "url", "must be an https URL")
        codes[code] = Code(code, record["display"], _choice(path, row, record, meaning_column, meanings),
                           record["url"], _source(path, row, record, citations))
    return codes


def load_clinical_codes(folder: Path = CODES_DIR, citations_path: Path | None = None) -> ClinicalCodes:
    """Read and validate data/codes/; every row's source must resolve in citations.csv."""
    citations = _load_citations(citations_path or folder.parent / "citations.csv")
    codes = ClinicalCodes(
        loinc=_load_codes(folder / "loinc.csv", citations, _LOINC_CODE, "role", LOINC_ROLES),
        snomed=_load_codes(folder / "snomed_conditions.csv", citations, _SNOMED_CODE, "maps_to",
                           (*vocab.CONDITIONS, *PROFILE_FLAGS)),
    )
    for role in LOINC_ROLES:
        if not codes.loinc_codes(role):
            raise KnowledgeBaseError(folder / "loinc.csv", None, "role", f"no code for '{role}'")
    return codes


@cache
def default_clinical_codes() -> ClinicalCodes:
    return load_clinical_codes()


# ---------------------------------------------------------------------------------------
# FHIR R4 resources -> profile


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
    egfr: dict | None = None
    serum_magnesium: dict | None = None
    conditions: list[dict] = field(default_factory=list)
    medications: list[str] = field(default_factory=list)
    # name given to the engine -> how the record wrote it, e.g. "rxcui:3640" -> "Doxy 100 (rxcui:3640)"
    medication_labels: dict[str, str] = field(default_factory=dict)


class FhirProfileReader:
    """Reads Patient, Observation, Condition, MedicationRequest and MedicationStatement
    resources into one profile. ``medicine_index`` resolves medicine names and RxCUIs."""

    def __init__(self, codes: ClinicalCodes, medicine_index):
        self.codes = codes
        self.medicines = medicine_index
        self.egfr_codes = frozenset(codes.loinc_codes("egfr"))
        self.magnesium_codes = frozenset(codes.loinc_codes("serum_magnesium"))

    def read(self, patient: dict, resources: list[dict], today: dt.date) -> FhirReading:
        if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
            raise MissingFhirData("Patient", "no Patient resource")
        profile: dict = {
            "age": age_from_birth_date(patient.get("birthDate"), today),
            "sex": patient.get("gender") if patient.get("gender") in ("female", "male") else "unspecified",
            "pregnant": False,
            "breastfeeding": False,
            "egfr": None,
            "dialysis": False,
            "conditions": [],
            "goals": [],
            "medications": [],
        }
        reading = FhirReading(profile)
        observations = resources_of(resources, "Observation")
        reading.egfr = self._newest(observations, self.egfr_codes)
        if reading.egfr is not None:
            profile["egfr"] = self._egfr_value(reading.egfr)
        reading.serum_magnesium = self._newest(observations, self.magnesium_codes)

        words = set()
        for condition in resources_of(resources, "Condition"):
            if not self._condition_is_current(condition):
                continue
            for coding in _codings(condition.get("code"), SNOMED_SYSTEM):
                code = self.codes.snomed.get(str(coding.get("code")))
                if code is None:
                    continue
                words.add(code.meaning)
                reading.conditions.append({"code": code.code, "display": code.display, "maps_to": code.meaning})
        for flag in PROFILE_FLAGS:
            profile[flag] = flag in words
        profile["conditions"] = [word for word in vocab.CONDITIONS if word in words]

        for name, label in self._medication_names(resources):
            if name not in reading.medication_labels:
                reading.medications.append(name)
                reading.medication_labels[name] = label
        profile["medications"] = list(reading.medications)
        return reading

    def _newest(self, observations: list[dict], codes: frozenset) -> dict | None:
        best, best_moment = None, None
        for observation in observations:
            if observation.get("status") not in OBSERVATION_STATUSES:
                continue
            matching = [c for c in _codings(observation.get("code"), LOINC_SYSTEM) if c.get("code") in codes]
            quantity = observation.get("valueQuantity") or {}
            value = quantity.get("value")
            if not matching or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                    value):
                continue
            moment = _observation_moment(observation)
            oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
            if best is None or (moment or oldest) > (best_moment or oldest):
                best_moment = moment
                best = {
                    "code": matching[0]["code"],
                    "display": self.codes.loinc[matching[0]["code"]].display,
                    "value": float(value),
                    "comparator": quantity.get("comparator"),
                    "unit": quantity.get("unit") or quantity.get("code") or "",
                    "date": moment.date().isoformat() if moment else None,
                }
        return best

    @staticmethod
    def _egfr_value(observation: dict) -> float:
        """A reported upper bound ("<60") is read just under the bound, so the band is never
        milder than the truth; a lower bound (">90") is read as the bound itself."""
        value = observation["value"]
        if observation["comparator"] in ("<", "<="):
            value -= 1.0
        return float(min(max(value, EGFR_RANGE[0]), EGFR_RANGE[1]))

    @staticmethod
    def _condition_is_current(condition: dict) -> bool:
        if _status_code(condition.get("verificationStatus")) in CONDITION_UNTRUE_STATUSES:
            return False
        return _status_code(condition.get("clinicalStatus")) not in CONDITION_INACTIVE_STATUSES

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
        codes = [f"rxcui:{c['code']}" for c in _codings(concept, RXNORM_SYSTEM) if str(c.get("code", "")).isdigit()]
        words = [c.get("display") for c in concept.get("coding") or [] if isinstance(c, dict)]
        words += [concept.get("text"), fallback]
        words = [w.strip()[:200] for w in words if isinstance(w, str) and w.strip()]
        readable = [w.strip()[:200] for w in (concept.get("text"), fallback) if isinstance(w, str) and w.strip()]
        label = (readable or words or codes or [None])[0]
        if label is None:
            return None
        for candidate in (*codes, *words):
            if self.medicines.resolve(candidate) is not None:
                return candidate, label if label == candidate else f"{label} ({candidate})"
        return label, label
