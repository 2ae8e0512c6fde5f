"""Load and validate one supplement's knowledge base from ``data/``.

Every clinical number carries a source id that must resolve to a citation. Any malformed
file stops start-up with a :class:`KnowledgeBaseError` naming the file, row and field, so a
bad edit to the data can never reach an answer.
"""

from __future__ import annotations

import csv
import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from data import DATA_DIR, supplement_dir
from models import vocabulary as vocab

# Numeric form attributes every form must have, and the range each must lie in.
FORM_ATTRIBUTES = {
    "elemental_fraction": (0.01, 1.0),
    "absorption": (0.0, 1.0),
    "laxative_strength": (0.0, 1.0),
    "gi_tolerance": (0.0, 1.0),
    "relative_cost": (0.0, 1.0),
    "unit_elemental_mg": (1.0, 1000.0),
}
# Attributes that enter the score (evidence per goal is added as evidence_<goal>).
SCORED_ATTRIBUTES = ("absorption", "gi_tolerance", "laxative_strength", "relative_cost")
EVIDENCE_GRADES = ("A", "B", "C", "D")
KIDNEY_ACTIONS = ("exclude_all", "exclude_listed", "none")
FORM_USES = ("daily", "occasional")
UNIT_KINDS = ("tablet", "capsule", "liquid", "powder")  # liquid in mL, powder in g
UNKNOWN_KIDNEY_BAND = "unknown"
GI_ACTIONS = ("exclude", "rank_below_non_laxative")


class KnowledgeBaseError(ValueError):
    """A data file is malformed; the message names the file, row and field."""

    def __init__(self, path: Path | str, row: int | None, field_name: str | None, message: str):
        self.path, self.row, self.field_name = str(path), row, field_name
        where = [_relative(path)]
        if row is not None:
            where.append(f"row {row}")
        if field_name is not None:
            where.append(f"field '{field_name}'")
        super().__init__(f"{', '.join(where)}: {message}")


def _relative(path: Path | str) -> str:
    try:
        return str(Path(path).relative_to(DATA_DIR.parent))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Citation:
    id: str
    title: str
    authors: str
    year: int
    url: str
    note: str


@dataclass(frozen=True)
class SourcedValue:
    value: float
    source: str
    note: str = ""


@dataclass(frozen=True)
class Evidence:
    strength: float
    grade: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class Form:
    id: str
    name: str  # English, the default locale
    salt: str
    ingredient: str  # as medicines.csv names the salt ("magnesium oxide"): an ordered medicine's form
    formula: str
    hydrate: str
    laxative: bool
    use: str  # "daily" or "occasional" (contract rule 8: not a daily supplement)
    # What the unit of unit_elemental_mg is: a tablet, a capsule, unit_size mL of a liquid or
    # unit_size g of a powder (how a handout counts the daily amount)
    unit_kind: str
    unit_size: float
    source: str
    note: str
    attributes: dict[str, SourcedValue]
    evidence: dict[str, Evidence]
    names: dict[str, str] = field(default_factory=dict)  # locale -> name, every locale with one

    def name_in(self, locale: str) -> str:
        return self.names.get(locale) or self.name


@dataclass(frozen=True)
class Caveat:
    code: str
    scope: str
    severity: str
    texts: dict[str, str]
    source: str
    # A higher severity from this age on (contract v1.1: kidney_function_unknown from 65).
    escalated_severity: str = ""
    escalated_from_age: int | None = None
    # Scored attributes whose "+" reasons this caveat silences (contract rule 10).
    limits_evidence: tuple[str, ...] = ()
    # Profile words (conditions and goals) that raise this answer caveat by themselves.
    triggered_by: tuple[str, ...] = ()

    def text(self, locale: str) -> str:
        return self.texts.get(locale) or self.texts[vocab.DEFAULT_LOCALE]


@dataclass(frozen=True)
class Interaction:
    """How magnesium and one interaction class, or one ingredient of it, go together.

    A class row (``ingredient`` empty) is the default for its members; an ingredient row
    holds what that medicine's own label says and wins over its class. ``texts`` may hold
    ``{before}`` and ``{after}``, filled with the hours as words (``text``)."""

    drug_class: str
    severity: str
    management: str  # vocab.MANAGEMENTS
    before_magnesium_h: float
    after_magnesium_h: float
    texts: dict[str, str]
    source: str
    ingredient: str = ""
    caveat: str = ""  # an answer caveat the class raises besides medication_interaction
    note: str = ""

    @property
    def separates(self) -> bool:
        return self.management == "separate"

    def text(self, locale: str) -> str:
        template = self.texts.get(locale) or self.texts[vocab.DEFAULT_LOCALE]
        language = locale if locale in self.texts else vocab.DEFAULT_LOCALE
        return template.format(before=duration_words(self.before_magnesium_h, language),
                               after=duration_words(self.after_magnesium_h, language))


# Hours as words, per locale: (one hour, n hours, n minutes).
_DURATION_WORDS = {"en": ("1 hour", "{n} hours", "{n} minutes"), "de": ("1 Stunde", "{n} Stunden", "{n} Minuten")}


def hours_value(hours: float) -> int | float:
    """Hours as the labels write them: 2.0 -> 2, 0.5 stays 0.5."""
    return int(hours) if float(hours).is_integer() else hours


def duration_words(hours: float, locale: str) -> str:
    """``2`` -> "2 hours", ``0.5`` -> "30 minutes", ``1.5`` -> "90 minutes" (in the locale's words)."""
    one, many, minutes = _DURATION_WORDS.get(locale, _DURATION_WORDS[vocab.DEFAULT_LOCALE])
    if hours == 1:
        return one
    if float(hours).is_integer():
        return many.format(n=int(hours))
    return minutes.format(n=round(hours * 60))


@dataclass(frozen=True)
class Medicine:
    """A name people type, and what it contains: one (ingredient, interaction class) pair
    per ingredient that interacts (combination products have several)."""

    name: str
    components: tuple[tuple[str, str], ...]

    @property
    def drug_classes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(drug_class for _, drug_class in self.components))

    @property
    def ingredients(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ingredient for ingredient, _ in self.components))


@dataclass(frozen=True)
class Weight:
    factor: str
    attribute: str
    weight: float
    reason_plus: dict[str, str]
    reason_minus: dict[str, str]
    source: str


@dataclass(frozen=True)
class KidneyBand:
    band: str
    egfr_min: float  # NaN for the band of an unknown eGFR
    egfr_max: float
    caveat: str
    action: str
    excluded_forms: tuple[str, ...]
    source: str
    excluded_from_age: int = 0  # the exclusions apply from this age (contract rule 7: 65 when unknown)


@dataclass(frozen=True)
class GiRule:
    condition: str
    laxative_forms: str
    caveat: str
    source: str


@dataclass(frozen=True)
class KnowledgeBase:
    """Everything the engine needs for one supplement, validated and cross-referenced."""

    supplement: str
    name: str
    version: str
    forms: tuple[Form, ...]
    citations: dict[str, Citation]
    caveats: dict[str, Caveat]
    interactions: dict[str, Interaction]  # per class: the defaults
    ingredient_interactions: dict[tuple[str, str], Interaction]  # (ingredient, class) -> its own label's
    medicines: dict[str, Medicine]
    rxcui_to_ingredient: dict[str, str]
    weights: tuple[Weight, ...]
    kidney_bands: tuple[KidneyBand, ...]  # by eGFR, ascending
    kidney_unknown_band: KidneyBand  # eGFR not given (and no dialysis)
    gi_rules: dict[str, GiRule]
    rules: dict
    upper_limit_by_age: np.ndarray  # mg/day, NaN where no limit is set (infants)
    start_dose_by_age: np.ndarray  # mg/day
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    rda_rows: tuple[dict, ...] = field(default=())

    @property
    def form_ids(self) -> tuple[str, ...]:
        return tuple(form.id for form in self.forms)

    @property
    def scored_attributes(self) -> tuple[str, ...]:
        """Column names of the attribute matrix the weights act on."""
        return SCORED_ATTRIBUTES + tuple(f"evidence_{goal}" for goal in vocab.GOALS)

    def attribute_matrix(self) -> np.ndarray:
        """forms x scored attributes; missing evidence counts as none (0)."""
        columns = []
        for name in self.scored_attributes:
            if name.startswith("evidence_"):
                goal = name.removeprefix("evidence_")
                columns.append([f.evidence[goal].strength if goal in f.evidence else 0.0 for f in self.forms])
            else:
                columns.append([f.attributes[name].value for f in self.forms])
        return np.array(columns, dtype=np.float64).T

    def form_array(self, attribute: str) -> np.ndarray:
        return np.array([f.attributes[attribute].value for f in self.forms], dtype=np.float64)

    def interaction_for(self, ingredient: str, drug_class: str) -> Interaction:
        """The ingredient's own row where its label was read, else its class's defaults."""
        return self.ingredient_interactions.get((ingredient, drug_class)) or self.interactions[drug_class]


# ---------------------------------------------------------------------------------------
# Reading helpers: every failure names the file, row and field.


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise KnowledgeBaseError(path, None, None, "file is missing")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for column in required:
            if column not in header:
                raise KnowledgeBaseError(path, 1, column, f"required column is missing (header: {header})")
        rows = []
        for record in reader:
            if None in record:
                raise KnowledgeBaseError(path, reader.line_num, None, "row has more cells than the header")
            if all(not (value or "").strip() for value in record.values()):
                continue
            rows.append((reader.line_num, {key: (value or "").strip() for key, value in record.items()}))
    if not rows:
        raise KnowledgeBaseError(path, None, None, "file has no data rows")
    return rows


def _number(path, row, record, name, low=-math.inf, high=math.inf, optional=False) -> float | None:
    raw = record.get(name, "")
    if raw == "":
        if optional:
            return None
        raise KnowledgeBaseError(path, row, name, "value is required")
    try:
        value = float(raw)
    except ValueError:
        raise KnowledgeBaseError(path, row, name, f"'{raw}' is not a number") from None
    if not (low <= value <= high) or math.isnan(value):
        raise KnowledgeBaseError(path, row, name, f"{value} is outside {low}..{high}")
    return value


def _choice(path, row, record, name, allowed) -> str:
    value = record.get(name, "")
    if value not in allowed:
        raise KnowledgeBaseError(path, row, name, f"'{value}' is not one of {', '.join(allowed)}")
    return value


def _source(path, row, record, citations, name="source", optional=False) -> str:
    value = record.get(name, "")
    if value == "" and optional:
        return ""
    if value not in citations:
        raise KnowledgeBaseError(path, row, name, f"source id '{value}' has no entry in data/citations.csv")
    return value


def _texts(path, row, record, prefix: str) -> dict[str, str]:
    texts = {}
    for locale in vocab.LOCALES:
        value = record.get(f"{prefix}_{locale}", "")
        if value:
            texts[locale] = value
    if vocab.DEFAULT_LOCALE not in texts:
        raise KnowledgeBaseError(path, row, f"{prefix}_{vocab.DEFAULT_LOCALE}", "text is required")
    return texts


# ---------------------------------------------------------------------------------------
# One loader per file.


def _load_citations(path: Path) -> dict[str, Citation]:
    citations = {}
    for row, record in _read_csv(path, ("id", "title", "authors", "year", "url", "note")):
        for name in ("id", "title", "url"):
            if not record[name]:
                raise KnowledgeBaseError(path, row, name, "value is required")
        if record["id"] in citations:
            raise KnowledgeBaseError(path, row, "id", f"duplicate id '{record['id']}'")
        if not record["url"].startswith(("https://", "http://", "urn:")):
            raise KnowledgeBaseError(path, row, "url", "must be an http(s) URL or a urn")
        year = int(_number(path, row, record, "year", 1900, 2100))
        citations[record["id"]] = Citation(
            record["id"], record["title"], record["authors"], year, record["url"], record["note"]
        )
    return citations


def _load_forms(folder: Path, citations) -> tuple[Form, ...]:
    path = folder / "forms.csv"
    headers: dict[str, dict] = {}
    for row, record in _read_csv(path, ("id", "name", "salt", "ingredient", "formula", "hydrate", "laxative", "use",
                                        "unit_kind", "unit_size", "source", "note")):
        form_id = record["id"]
        if not form_id or not form_id.replace("_", "").isalnum() or form_id != form_id.lower():
            raise KnowledgeBaseError(path, row, "id", f"'{form_id}' must be lower-case letters, digits and _")
        if form_id in headers:
            raise KnowledgeBaseError(path, row, "id", f"duplicate form '{form_id}'")
        if not record["name"]:
            raise KnowledgeBaseError(path, row, "name", "value is required")
        names = {vocab.DEFAULT_LOCALE: record["name"]}
        for locale in vocab.LOCALES:
            column = f"name_{locale}"
            if locale != vocab.DEFAULT_LOCALE and column in record:
                if not record[column]:
                    raise KnowledgeBaseError(path, row, column, "value is required when the column is present")
                names[locale] = record[column]
        record["names"] = names
        laxative = _choice(path, row, record, "laxative", ("true", "false")) == "true"
        if form_id in vocab.CONTRACT_LAXATIVE_FORMS and not laxative:
            raise KnowledgeBaseError(path, row, "laxative", f"the contract counts '{form_id}' as a laxative form")
        use = _choice(path, row, record, "use", FORM_USES)
        if form_id in vocab.CONTRACT_OCCASIONAL_FORMS and use != "occasional":
            raise KnowledgeBaseError(path, row, "use", f"the contract says '{form_id}' is not for daily use")
        if use == "occasional" and not laxative:
            raise KnowledgeBaseError(path, row, "use", "an occasional-use form must be a laxative form (rule 8)")
        unit_kind = _choice(path, row, record, "unit_kind", UNIT_KINDS)
        unit_size = _number(path, row, record, "unit_size", 0.1, 100.0)
        if unit_kind in ("tablet", "capsule") and unit_size != 1:
            raise KnowledgeBaseError(path, row, "unit_size", "a tablet or capsule is one unit")
        headers[form_id] = dict(record, laxative=laxative, use=use, unit_kind=unit_kind, unit_size=unit_size,
                                source=_source(path, row, record, citations))
    for required in vocab.REQUIRED_FORMS:
        if required not in headers:
            raise KnowledgeBaseError(path, None, "id", f"the contract's form '{required}' is missing")

    attributes: dict[str, dict[str, SourcedValue]] = {form_id: {} for form_id in headers}
    path = folder / "form_attributes.csv"
    for row, record in _read_csv(path, ("form", "attribute", "value", "source", "note")):
        form_id = _choice(path, row, record, "form", tuple(headers))
        name = _choice(path, row, record, "attribute", tuple(FORM_ATTRIBUTES))
        if name in attributes[form_id]:
            raise KnowledgeBaseError(path, row, "attribute", f"'{name}' given twice for '{form_id}'")
        low, high = FORM_ATTRIBUTES[name]
        value = _number(path, row, record, "value", low, high)
        attributes[form_id][name] = SourcedValue(value, _source(path, row, record, citations), record["note"])
    for form_id, values in attributes.items():
        for name in FORM_ATTRIBUTES:
            if name not in values:
                raise KnowledgeBaseError(path, None, "attribute", f"form '{form_id}' has no '{name}'")

    evidence: dict[str, dict[str, Evidence]] = {form_id: {} for form_id in headers}
    path = folder / "evidence.csv"
    for row, record in _read_csv(path, ("form", "goal", "strength", "grade", "source", "note")):
        form_id = _choice(path, row, record, "form", tuple(headers))
        goal = _choice(path, row, record, "goal", vocab.GOALS)
        if goal in evidence[form_id]:
            raise KnowledgeBaseError(path, row, "goal", f"'{goal}' given twice for '{form_id}'")
        evidence[form_id][goal] = Evidence(
            _number(path, row, record, "strength", 0.0, 1.0),
            _choice(path, row, record, "grade", EVIDENCE_GRADES),
            _source(path, row, record, citations),
            record["note"],
        )

    return tuple(
        Form(
            id=form_id,
            name=header["name"],
            salt=header["salt"],
            ingredient=normalize_medicine_name(header["ingredient"]),
            formula=header["formula"],
            hydrate=header["hydrate"],
            laxative=header["laxative"],
            use=header["use"],
            unit_kind=header["unit_kind"],
            unit_size=header["unit_size"],
            source=header["source"],
            note=header["note"],
            attributes=attributes[form_id],
            evidence=evidence[form_id],
            names=header["names"],
        )
        for form_id, header in headers.items()
    )


# Severities the contract fixes (a data edit must not soften them).
CONTRACT_CAVEAT_SEVERITIES = {
    "consult_clinician": "info",
    "kidney_impairment_severe": "critical",
    "kidney_impairment_moderate": "warning",
    "kidney_function_unknown": "info",
    "serum_magnesium_high": "critical",
    "serum_magnesium_low": "warning",
    "duplicate_magnesium": "warning",
    "occasional_use_only": "warning",
    "infant": "critical",
}


def _load_caveats(path: Path, citations, attribute_names) -> dict[str, Caveat]:
    known = vocab.ANSWER_CAVEATS + vocab.FORM_CAVEATS + vocab.EXCLUSION_CODES
    caveats = {}
    for row, record in _read_csv(path, ("code", "scope", "severity", "text_en", "source")):
        code = _choice(path, row, record, "code", tuple(dict.fromkeys(known)))
        if code in caveats:
            raise KnowledgeBaseError(path, row, "code", f"duplicate code '{code}'")
        severity = _choice(path, row, record, "severity", vocab.SEVERITIES)
        escalated, from_age = "", None
        if record.get("escalated_severity"):
            escalated = _choice(path, row, record, "escalated_severity", vocab.SEVERITIES)
            if vocab.SEVERITIES.index(escalated) <= vocab.SEVERITIES.index(severity):
                raise KnowledgeBaseError(path, row, "escalated_severity", f"must be above '{severity}'")
            from_age = int(_number(path, row, record, "escalated_from_age", 0, 120))
        elif record.get("escalated_from_age"):
            raise KnowledgeBaseError(path, row, "escalated_severity", "an age is given but no severity")
        limits = tuple(item for item in record.get("limits_evidence", "").split(";") if item)
        for attribute in limits:
            if attribute not in attribute_names:
                raise KnowledgeBaseError(path, row, "limits_evidence", f"'{attribute}' is not a scored attribute")
        scope = _choice(path, row, record, "scope", ("answer", "form", "exclusion"))
        triggered_by = tuple(item for item in record.get("triggered_by", "").split(";") if item)
        for word in triggered_by:
            if word not in vocab.CONDITIONS and word not in vocab.GOALS:
                raise KnowledgeBaseError(path, row, "triggered_by", f"'{word}' is no condition or goal")
        if triggered_by and scope != "answer":
            raise KnowledgeBaseError(path, row, "triggered_by", "only an answer caveat is raised by profile words")
        caveats[code] = Caveat(
            code,
            scope,
            severity,
            _texts(path, row, record, "text"),
            _source(path, row, record, citations, optional=record["scope"] == "exclusion"),
            escalated,
            from_age,
            limits,
            triggered_by,
        )
    for code in dict.fromkeys(known):
        if code not in caveats:
            raise KnowledgeBaseError(path, None, "code", f"no text for caveat code '{code}'")
    for code, contract_severity in CONTRACT_CAVEAT_SEVERITIES.items():
        if caveats[code].severity != contract_severity:
            raise KnowledgeBaseError(path, None, "severity", f"{code} is {contract_severity} in the contract")
    unknown = caveats["kidney_function_unknown"]
    if (unknown.escalated_severity, unknown.escalated_from_age) != ("warning", vocab.CONTRACT_UNKNOWN_KIDNEY_FROM_AGE):
        raise KnowledgeBaseError(path, None, "escalated_severity", "kidney_function_unknown is a warning from age "
                                 f"{vocab.CONTRACT_UNKNOWN_KIDNEY_FROM_AGE} in the contract")
    return caveats


def _interaction_row(path, row, record, citations, drug_class: str, severity: str, ingredient: str = "",
                     default_texts: dict[str, str] | None = None) -> Interaction:
    """One row of interactions.csv (a class) or ingredient_interactions.csv (an ingredient),
    with the hours that fit its management: a gap for ``separate``, none otherwise."""
    management = _choice(path, row, record, "management", vocab.MANAGEMENTS)
    before = _number(path, row, record, "before_magnesium_h", 0, 48)
    after = _number(path, row, record, "after_magnesium_h", 0, 48)
    if management == "separate" and before == 0 and after == 0:
        raise KnowledgeBaseError(path, row, "management", "'separate' needs hours before or after magnesium")
    if management != "separate" and (before or after):
        raise KnowledgeBaseError(path, row, "management", f"'{management}' takes no hours (they are for 'separate')")
    if default_texts is not None and not record.get("text_en"):
        texts = default_texts
    else:
        texts = _texts(path, row, record, "text")
    interaction = Interaction(drug_class, severity, management, before, after, texts,
                              _source(path, row, record, citations), ingredient, record.get("caveat", ""),
                              record.get("note", ""))
    for locale in texts:
        try:
            interaction.text(locale)
        except (KeyError, IndexError, ValueError) as error:
            raise KnowledgeBaseError(path, row, f"text_{locale}", f"only {{before}} and {{after}} may be filled in "
                                     f"({error!r})") from None
    return interaction


def _load_interactions(path: Path, citations) -> dict[str, Interaction]:
    interactions = {}
    required = ("drug_class", "severity", "management", "before_magnesium_h", "after_magnesium_h", "caveat",
                "text_en", "source", "note")
    for row, record in _read_csv(path, required):
        drug_class = _choice(path, row, record, "drug_class", vocab.INTERACTION_CLASSES)
        if drug_class in interactions:
            raise KnowledgeBaseError(path, row, "drug_class", f"duplicate class '{drug_class}'")
        if record["caveat"]:
            _choice(path, row, record, "caveat", vocab.ANSWER_CAVEATS)
        severity = _choice(path, row, record, "severity", ("info", "warning"))
        interactions[drug_class] = _interaction_row(path, row, record, citations, drug_class, severity)
    for drug_class in vocab.INTERACTION_CLASSES:
        if drug_class not in interactions:
            raise KnowledgeBaseError(path, None, "drug_class", f"the contract's class '{drug_class}' is missing")
    product = interactions["magnesium_product"]
    if (product.management, product.caveat) != ("monitor", "duplicate_magnesium"):
        raise KnowledgeBaseError(path, None, "management", "the contract's magnesium_product is 'monitor' and raises "
                                 "duplicate_magnesium")
    return interactions


def _load_ingredient_interactions(path: Path, citations, classes: dict[str, Interaction],
                                  medicines: dict[str, Medicine]) -> dict[tuple[str, str], Interaction]:
    """What each ingredient's own label says, where it was read; its class gives severity
    and, when the row has none, the texts (with this row's hours filled in)."""
    known = {component for medicine in medicines.values() for component in medicine.components}
    rows = {}
    required = ("ingredient", "drug_class", "management", "before_magnesium_h", "after_magnesium_h", "text_en",
                "source", "note")
    for row, record in _read_csv(path, required):
        ingredient = normalize_medicine_name(record["ingredient"])
        drug_class = _choice(path, row, record, "drug_class", vocab.INTERACTION_CLASSES)
        if (ingredient, drug_class) not in known:
            raise KnowledgeBaseError(path, row, "ingredient", f"'{ingredient}' is not listed as '{drug_class}' in "
                                     "data/medicines.csv")
        if (ingredient, drug_class) in rows:
            raise KnowledgeBaseError(path, row, "ingredient", f"'{ingredient}' ({drug_class}) is given twice")
        if not record["note"]:
            raise KnowledgeBaseError(path, row, "note", "say where in the source the figures stand")
        default = classes[drug_class]
        if record["management"] != default.management and not record["text_en"]:
            raise KnowledgeBaseError(path, row, "text_en", "a management other than its class's needs its own text")
        rows[(ingredient, drug_class)] = _interaction_row(path, row, record, citations, drug_class, default.severity,
                                                          ingredient, default.texts)
    return rows


def normalize_medicine_name(name: str) -> str:
    """Case- and space-insensitive key for a medicine name."""
    return " ".join(name.lower().split())


MEDICINE_KINDS = ("generic", "brand")


def _load_medicines(path: Path, citations) -> tuple[dict[str, Medicine], dict[str, str]]:
    """Typed names -> ingredients and classes. Every row names the source that maps the name
    to its ingredient (a label, an SmPC, a package leaflet); a combination product has one
    row per interacting ingredient."""
    components: dict[str, list[tuple[str, str]]] = {}
    rxcui_to_ingredient: dict[str, str] = {}
    required = ("name", "drug_class", "kind", "ingredient", "rxcui", "rxcui_source", "name_source")
    for row, record in _read_csv(path, required):
        name = normalize_medicine_name(record["name"])
        if not name:
            raise KnowledgeBaseError(path, row, "name", "value is required")
        drug_class = _choice(path, row, record, "drug_class", vocab.INTERACTION_CLASSES)
        _choice(path, row, record, "kind", MEDICINE_KINDS)
        ingredient = normalize_medicine_name(record["ingredient"])
        if not ingredient:
            raise KnowledgeBaseError(path, row, "ingredient", "value is required")
        _source(path, row, record, citations, name="name_source")
        if (ingredient, drug_class) in components.get(name, []):
            raise KnowledgeBaseError(path, row, "name", f"'{name}' is already mapped to '{ingredient}' ({drug_class})")
        components.setdefault(name, []).append((ingredient, drug_class))
        if record["rxcui"]:
            if not record["rxcui"].isdigit():
                raise KnowledgeBaseError(path, row, "rxcui", f"'{record['rxcui']}' is not a number")
            if rxcui_to_ingredient.get(record["rxcui"], ingredient) != ingredient:
                raise KnowledgeBaseError(path, row, "rxcui", f"RxCUI {record['rxcui']} names two ingredients")
            rxcui_to_ingredient[record["rxcui"]] = ingredient
            if not record["rxcui_source"]:
                raise KnowledgeBaseError(path, row, "rxcui_source", "an rxcui needs a source id")
            _source(path, row, record, citations, name="rxcui_source")
        elif record["rxcui_source"]:
            raise KnowledgeBaseError(path, row, "rxcui_source", "a source is given but there is no rxcui")
    medicines = {name: Medicine(name, tuple(parts)) for name, parts in components.items()}
    for rxcui, ingredient in rxcui_to_ingredient.items():
        if ingredient not in medicines:
            raise KnowledgeBaseError(path, None, "rxcui", f"RxCUI {rxcui} points at '{ingredient}', not a listed name")
    return medicines, rxcui_to_ingredient


def _load_weights(path: Path, citations, feature_names, attribute_names) -> tuple[Weight, ...]:
    weights = []
    seen = set()
    required = ("factor", "attribute", "weight", "reason_plus_en", "reason_minus_en", "source")
    for row, record in _read_csv(path, required):
        factor = _choice(path, row, record, "factor", feature_names)
        attribute = _choice(path, row, record, "attribute", attribute_names)
        if (factor, attribute) in seen:
            raise KnowledgeBaseError(path, row, "attribute", f"'{factor}' x '{attribute}' given twice")
        seen.add((factor, attribute))
        weights.append(
            Weight(
                factor,
                attribute,
                _number(path, row, record, "weight", -10.0, 10.0),
                _texts(path, row, record, "reason_plus"),
                _texts(path, row, record, "reason_minus"),
                _source(path, row, record, citations),
            )
        )
    return tuple(weights)


def _load_kidney_bands(path: Path, citations, form_ids) -> tuple[tuple[KidneyBand, ...], KidneyBand]:
    """The bands by eGFR (contiguous, 0..250) and the band of an unknown eGFR (``unknown``,
    no eGFR range), each with its caveat and the forms it excludes from which age."""
    bands, unknown = [], None
    required = ("band", "egfr_min", "egfr_max", "caveat", "action", "excluded_forms", "excluded_from_age", "source")
    for row, record in _read_csv(path, required):
        is_unknown = record["band"] == UNKNOWN_KIDNEY_BAND
        if is_unknown:
            if record["egfr_min"] or record["egfr_max"]:
                raise KnowledgeBaseError(path, row, "egfr_min", "the unknown band has no eGFR range")
            if unknown is not None:
                raise KnowledgeBaseError(path, row, "band", "the unknown band is given twice")
            low = high = math.nan
        else:
            low = _number(path, row, record, "egfr_min", 0, 251)
            high = _number(path, row, record, "egfr_max", 0, 251)
            if high <= low:
                raise KnowledgeBaseError(path, row, "egfr_max", "must be above egfr_min")
            if bands and low != bands[-1].egfr_max:
                raise KnowledgeBaseError(path, row, "egfr_min", "bands must be contiguous and in ascending order")
        action = _choice(path, row, record, "action", KIDNEY_ACTIONS)
        caveat = record["caveat"]
        if caveat and caveat not in vocab.ANSWER_CAVEATS:
            raise KnowledgeBaseError(path, row, "caveat", f"'{caveat}' is not a contract caveat code")
        excluded = tuple(item for item in record["excluded_forms"].split(";") if item)
        for form_id in excluded:
            if form_id not in form_ids:
                raise KnowledgeBaseError(path, row, "excluded_forms", f"unknown form '{form_id}'")
        if excluded and caveat not in vocab.EXCLUSION_CODES:
            raise KnowledgeBaseError(path, row, "caveat", f"'{caveat}' cannot name an exclusion")
        from_age = int(_number(path, row, record, "excluded_from_age", 0, 120, optional=True) or 0)
        band = KidneyBand(record["band"], low, high, caveat, action, excluded, _source(path, row, record, citations),
                          from_age)
        if is_unknown:
            unknown = band
        else:
            bands.append(band)
    if not bands or bands[0].egfr_min != 0 or bands[-1].egfr_max <= 250:
        raise KnowledgeBaseError(path, None, "egfr_min", "bands must cover eGFR 0..250")
    if unknown is None or unknown.caveat != "kidney_function_unknown":
        raise KnowledgeBaseError(path, None, "band", "an 'unknown' band raising kidney_function_unknown is required")
    moderate = [band for band in bands if band.caveat == "kidney_impairment_moderate"]
    contract = ((moderate[0] if moderate else None, vocab.CONTRACT_MODERATE_KIDNEY_EXCLUDED, 0),
                (unknown, vocab.CONTRACT_UNKNOWN_KIDNEY_EXCLUDED, vocab.CONTRACT_UNKNOWN_KIDNEY_FROM_AGE))
    for band, required_forms, latest_age in contract:
        for form_id in required_forms:
            if form_id in form_ids and (band is None or form_id not in band.excluded_forms
                                        or band.excluded_from_age > latest_age):
                name = band.band if band else "moderate"
                raise KnowledgeBaseError(path, None, "excluded_forms", f"the {name} band must exclude '{form_id}' "
                                         f"from age {latest_age} at the latest")
    return tuple(bands), unknown


def _load_gi_rules(path: Path, citations) -> dict[str, GiRule]:
    rules = {}
    for row, record in _read_csv(path, ("condition", "laxative_forms", "caveat", "source")):
        condition = _choice(path, row, record, "condition", vocab.CONDITIONS)
        rules[condition] = GiRule(
            condition,
            _choice(path, row, record, "laxative_forms", GI_ACTIONS),
            _choice(path, row, record, "caveat", vocab.FORM_CAVEATS),
            _source(path, row, record, citations),
        )
    for condition in vocab.CONTRACT_GI_SENSITIVE_CONDITIONS:
        if condition not in rules:
            raise KnowledgeBaseError(path, None, "condition", f"safety rule 5 needs a row for '{condition}'")
    return rules


def _load_intake_limits(path: Path, citations) -> tuple[np.ndarray, np.ndarray, tuple[dict, ...]]:
    upper = np.full(121, np.nan)
    start = np.full(121, np.nan)
    covered = np.zeros(121, dtype=bool)
    rows = []
    required = ("age_min", "age_max", "rda_male_mg", "rda_female_mg", "supplemental_upper_limit_mg", "start_dose_mg")
    for row, record in _read_csv(path, (*required, "source")):
        low = int(_number(path, row, record, "age_min", 0, 120))
        high = int(_number(path, row, record, "age_max", low, 120))
        limit = _number(path, row, record, "supplemental_upper_limit_mg", 0, 2000, optional=True)
        start_dose = _number(path, row, record, "start_dose_mg", 0, 2000, optional=limit is None)
        if limit is not None and start_dose > limit:
            raise KnowledgeBaseError(path, row, "start_dose_mg", "must not exceed the upper limit")
        if covered[low : high + 1].any():
            raise KnowledgeBaseError(path, row, "age_min", "age ranges overlap")
        covered[low : high + 1] = True
        upper[low : high + 1] = np.nan if limit is None else limit
        start[low : high + 1] = np.nan if start_dose is None else start_dose
        _source(path, row, record, citations)
        rows.append(
            {
                "age_min": low,
                "age_max": high,
                "rda_male_mg": _number(path, row, record, "rda_male_mg", 0, 2000),
                "rda_female_mg": _number(path, row, record, "rda_female_mg", 0, 2000),
                "rda_pregnancy_mg": _number(path, row, record, "rda_pregnancy_mg", 0, 2000, optional=True),
                "rda_lactation_mg": _number(path, row, record, "rda_lactation_mg", 0, 2000, optional=True),
                "supplemental_upper_limit_mg": limit,
                "source": record["source"],
            }
        )
    if not covered.all():
        raise KnowledgeBaseError(path, None, "age_min", f"ages {np.flatnonzero(~covered).tolist()} are not covered")
    return upper, start, tuple(rows)


def _load_rules(path: Path, citations) -> dict:
    if not path.is_file():
        raise KnowledgeBaseError(path, None, None, "file is missing")
    try:
        rules = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise KnowledgeBaseError(path, None, None, f"not valid TOML: {error}") from None
    expected = {
        ("thresholds", "low_absorption_below"): float,
        ("thresholds", "default_max_units_per_day"): int,
        ("age_groups", "infant_below"): int,
        ("age_groups", "child_up_to"): int,
        ("age_groups", "older_adult_from"): int,
        ("kidney", "dialysis_band"): str,
        ("reasons", "min_contribution"): float,
        ("reasons", "max_reasons"): int,
        ("serum_magnesium", "high_above_mmol_l"): float,
        ("serum_magnesium", "low_below_mmol_l"): float,
        ("occasional_use", "goal"): str,
        ("occasional_use", "min_age"): int,
        ("timing", "evening_from"): str,
        ("timing", "evening_for"): list,
        ("handout", "level_teaspoon_g"): float,
        ("handout", "plain_words_below_age"): int,
        ("ranking", "below_share"): float,
    }
    for (section, key), kind in expected.items():
        value = rules.get(section, {}).get(key)
        if not isinstance(value, (int, float) if kind is float else kind) or isinstance(value, bool):
            raise KnowledgeBaseError(path, None, f"{section}.{key}", f"a {kind.__name__} is required")
    for section, key in (("thresholds", "low_absorption_source"), ("age_groups", "source"),
                         ("serum_magnesium", "source"), ("occasional_use", "source"), ("timing", "source"),
                         ("handout", "level_teaspoon_source"), ("handout", "plain_words_source"),
                         ("ranking", "source")):
        if rules[section].get(key) not in citations:
            raise KnowledgeBaseError(path, None, f"{section}.{key}", "must name a source id in data/citations.csv")
    if not 0 < rules["ranking"]["below_share"] < 1:
        raise KnowledgeBaseError(path, None, "ranking.below_share", "must be between 0 and 1 (exclusive)")
    # The contract fixes these; the file says where they come from.
    fixed = {("serum_magnesium", "high_above_mmol_l"): 1.05, ("serum_magnesium", "low_below_mmol_l"): 0.70,
             ("occasional_use", "goal"): vocab.CONTRACT_OCCASIONAL_GOAL,
             ("occasional_use", "min_age"): vocab.CONTRACT_OCCASIONAL_MIN_AGE}
    for (section, key), value in fixed.items():
        if rules[section][key] != value:
            raise KnowledgeBaseError(path, None, f"{section}.{key}", f"the contract sets {value!r}")
    factors = {f"goal:{goal}" for goal in vocab.GOALS} | {f"condition:{c}" for c in vocab.CONDITIONS}
    for factor in rules["timing"]["evening_for"]:
        if factor not in factors:
            raise KnowledgeBaseError(path, None, "timing.evening_for", f"'{factor}' is not goal:<goal> or "
                                     "condition:<condition>")
    if not _CLOCK_TEXT.match(rules["timing"]["evening_from"]):
        raise KnowledgeBaseError(path, None, "timing.evening_from", "must be HH:MM")
    return rules


_CLOCK_TEXT = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


REQUIRED_TEXTS = ("disclaimer", "upper_limit_phrase", "no_upper_limit_phrase")


def _load_texts(path: Path) -> dict[str, dict[str, str]]:
    texts = {}
    for row, record in _read_csv(path, ("key", "text_en")):
        if record["key"] in texts:
            raise KnowledgeBaseError(path, row, "key", f"duplicate key '{record['key']}'")
        texts[record["key"]] = _texts(path, row, record, "text")
    for key in REQUIRED_TEXTS:
        if key not in texts:
            raise KnowledgeBaseError(path, None, "key", f"no text for '{key}'")
    return texts


def load_knowledge_base(supplement: str = "magnesium", folder: Path | None = None) -> KnowledgeBase:
    """Read, validate and cross-check one supplement's files (``folder`` overrides the
    packaged data, for tests and for operators who keep their own copy)."""
    from models.features import FEATURE_NAMES  # features depends on vocabulary only

    folder = Path(folder) if folder is not None else supplement_dir(supplement)
    shared = folder.parent.parent if folder.parent.name == "supplements" else DATA_DIR
    manifest_path = folder / "manifest.toml"
    if not manifest_path.is_file():
        raise KnowledgeBaseError(manifest_path, None, None, "file is missing")
    try:
        manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise KnowledgeBaseError(manifest_path, None, None, f"not valid TOML: {error}") from None
    for key in ("supplement", "name", "knowledge_base_version"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise KnowledgeBaseError(manifest_path, None, key, "a non-empty string is required")

    citations = _load_citations(shared / "citations.csv")
    forms = _load_forms(folder, citations)
    form_ids = tuple(form.id for form in forms)
    medicines, rxcui_to_ingredient = _load_medicines(shared / "medicines.csv", citations)
    for form in forms:
        # Every salt of forms.csv is a magnesium product by its own name (a patient already
        # taking "magnesium glycinate" takes magnesium), whether or not medicines.csv lists it.
        medicines.setdefault(form.ingredient, Medicine(form.ingredient, ((form.ingredient, "magnesium_product"),)))
    attribute_names = SCORED_ATTRIBUTES + tuple(f"evidence_{goal}" for goal in vocab.GOALS)
    upper, start, rda_rows = _load_intake_limits(folder / "intake_limits.csv", citations)
    rules = _load_rules(folder / "rules.toml", citations)
    kidney_bands, kidney_unknown_band = _load_kidney_bands(folder / "kidney_bands.csv", citations, form_ids)
    if rules["kidney"]["dialysis_band"] not in {band.band for band in kidney_bands}:
        raise KnowledgeBaseError(folder / "rules.toml", None, "kidney.dialysis_band", "names no kidney band")
    interactions = _load_interactions(folder / "interactions.csv", citations)
    ingredient_interactions = _load_ingredient_interactions(folder / "ingredient_interactions.csv", citations,
                                                            interactions, medicines)
    return KnowledgeBase(
        supplement=manifest["supplement"],
        name=manifest["name"],
        version=manifest["knowledge_base_version"],
        forms=forms,
        citations=citations,
        caveats=_load_caveats(folder / "caveats.csv", citations, attribute_names),
        interactions=interactions,
        ingredient_interactions=ingredient_interactions,
        medicines=medicines,
        rxcui_to_ingredient=rxcui_to_ingredient,
        weights=_load_weights(folder / "weights.csv", citations, FEATURE_NAMES, attribute_names),
        kidney_bands=kidney_bands,
        kidney_unknown_band=kidney_unknown_band,
        gi_rules=_load_gi_rules(folder / "gi_rules.csv", citations),
        rules=rules,
        upper_limit_by_age=upper,
        start_dose_by_age=start,
        texts=_load_texts(folder / "texts.csv"),
        rda_rows=rda_rows,
    )


@cache
def default_knowledge_base() -> KnowledgeBase:
    """The packaged magnesium knowledge base, loaded once per process."""
    return load_knowledge_base("magnesium")
