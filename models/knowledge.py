"""Load and validate one supplement's knowledge base from ``data/``.

Every clinical number carries a source id that must resolve to a citation. Any malformed
file stops start-up with a :class:`KnowledgeBaseError` naming the file, row and field, so a
bad edit to the data can never reach an answer.
"""

from __future__ import annotations

import csv
import math
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
    formula: str
    hydrate: str
    laxative: bool
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

    def text(self, locale: str) -> str:
        return self.texts.get(locale) or self.texts[vocab.DEFAULT_LOCALE]


@dataclass(frozen=True)
class Interaction:
    drug_class: str
    severity: str
    before_magnesium_h: float
    after_magnesium_h: float
    texts: dict[str, str]
    source: str

    def text(self, locale: str) -> str:
        return self.texts.get(locale) or self.texts[vocab.DEFAULT_LOCALE]


@dataclass(frozen=True)
class Medicine:
    name: str
    drug_classes: tuple[str, ...]
    ingredients: tuple[str, ...]


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
    egfr_min: float
    egfr_max: float
    caveat: str
    action: str
    excluded_forms: tuple[str, ...]
    source: str


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
    interactions: dict[str, Interaction]
    medicines: dict[str, Medicine]
    rxcui_to_ingredient: dict[str, str]
    weights: tuple[Weight, ...]
    kidney_bands: tuple[KidneyBand, ...]
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
    for row, record in _read_csv(path, ("id", "name", "salt", "formula", "hydrate", "laxative", "source", "note")):
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
        headers[form_id] = dict(record, laxative=laxative, source=_source(path, row, record, citations))
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
            formula=header["formula"],
            hydrate=header["hydrate"],
            laxative=header["laxative"],
            source=header["source"],
            note=header["note"],
            attributes=attributes[form_id],
            evidence=evidence[form_id],
            names=header["names"],
        )
        for form_id, header in headers.items()
    )


def _load_caveats(path: Path, citations) -> dict[str, Caveat]:
    known = vocab.ANSWER_CAVEATS + vocab.FORM_CAVEATS + vocab.EXCLUSION_CODES
    caveats = {}
    for row, record in _read_csv(path, ("code", "scope", "severity", "text_en", "source")):
        code = _choice(path, row, record, "code", tuple(dict.fromkeys(known)))
        if code in caveats:
            raise KnowledgeBaseError(path, row, "code", f"duplicate code '{code}'")
        caveats[code] = Caveat(
            code,
            _choice(path, row, record, "scope", ("answer", "form", "exclusion")),
            _choice(path, row, record, "severity", vocab.SEVERITIES),
            _texts(path, row, record, "text"),
            _source(path, row, record, citations, optional=record["scope"] == "exclusion"),
        )
    for code in dict.fromkeys(known):
        if code not in caveats:
            raise KnowledgeBaseError(path, None, "code", f"no text for caveat code '{code}'")
    if caveats["consult_clinician"].severity != "info":
        raise KnowledgeBaseError(path, None, "severity", "consult_clinician is info in the contract")
    return caveats


def _load_interactions(path: Path, citations) -> dict[str, Interaction]:
    interactions = {}
    required = ("drug_class", "severity", "before_magnesium_h", "after_magnesium_h", "text_en", "source")
    for row, record in _read_csv(path, required):
        drug_class = _choice(path, row, record, "drug_class", vocab.INTERACTION_CLASSES)
        if drug_class in interactions:
            raise KnowledgeBaseError(path, row, "drug_class", f"duplicate class '{drug_class}'")
        interactions[drug_class] = Interaction(
            drug_class,
            _choice(path, row, record, "severity", ("info", "warning")),
            _number(path, row, record, "before_magnesium_h", 0, 48),
            _number(path, row, record, "after_magnesium_h", 0, 48),
            _texts(path, row, record, "text"),
            _source(path, row, record, citations),
        )
    for drug_class in vocab.INTERACTION_CLASSES:
        if drug_class not in interactions:
            raise KnowledgeBaseError(path, None, "drug_class", f"the contract's class '{drug_class}' is missing")
    return interactions


def normalize_medicine_name(name: str) -> str:
    """Case- and space-insensitive key for a medicine name."""
    return " ".join(name.lower().split())


def _load_medicines(path: Path, citations) -> tuple[dict[str, Medicine], dict[str, str]]:
    classes: dict[str, list[str]] = {}
    ingredients: dict[str, list[str]] = {}
    rxcui_to_ingredient: dict[str, str] = {}
    for row, record in _read_csv(path, ("name", "drug_class", "kind", "ingredient", "rxcui", "rxcui_source")):
        name = normalize_medicine_name(record["name"])
        if not name:
            raise KnowledgeBaseError(path, row, "name", "value is required")
        drug_class = _choice(path, row, record, "drug_class", vocab.INTERACTION_CLASSES)
        _choice(path, row, record, "kind", ("generic", "brand"))
        ingredient = normalize_medicine_name(record["ingredient"])
        if not ingredient:
            raise KnowledgeBaseError(path, row, "ingredient", "value is required")
        if drug_class in classes.get(name, []):
            raise KnowledgeBaseError(path, row, "name", f"'{name}' is already mapped to '{drug_class}'")
        classes.setdefault(name, []).append(drug_class)
        ingredients.setdefault(name, []).append(ingredient)
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
    medicines = {
        name: Medicine(name, tuple(classes[name]), tuple(dict.fromkeys(ingredients[name]))) for name in classes
    }
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


def _load_kidney_bands(path: Path, citations, form_ids) -> tuple[KidneyBand, ...]:
    bands = []
    required = ("band", "egfr_min", "egfr_max", "caveat", "action", "excluded_forms", "source")
    for row, record in _read_csv(path, required):
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
        bands.append(
            KidneyBand(record["band"], low, high, caveat, action, excluded, _source(path, row, record, citations))
        )
    if bands[0].egfr_min != 0 or bands[-1].egfr_max <= 250:
        raise KnowledgeBaseError(path, None, "egfr_min", "bands must cover eGFR 0..250")
    moderate = [band for band in bands if band.caveat == "kidney_impairment_moderate"]
    for form_id in vocab.CONTRACT_MODERATE_KIDNEY_EXCLUDED:
        if not moderate or form_id not in moderate[0].excluded_forms:
            raise KnowledgeBaseError(path, None, "excluded_forms", f"the moderate band must exclude '{form_id}'")
    return tuple(bands)


def _load_gi_rules(path: Path, citations) -> dict[str, GiRule]:
    rules = {}
    for row, record in _read_csv(path, ("condition", "laxative_forms", "caveat", "source")):
        condition = _choice(path, row, record, "condition", vocab.GI_SENSITIVE_CONDITIONS)
        rules[condition] = GiRule(
            condition,
            _choice(path, row, record, "laxative_forms", GI_ACTIONS),
            _choice(path, row, record, "caveat", vocab.FORM_CAVEATS),
            _source(path, row, record, citations),
        )
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
    }
    for (section, key), kind in expected.items():
        value = rules.get(section, {}).get(key)
        if not isinstance(value, (int, float) if kind is float else kind) or isinstance(value, bool):
            raise KnowledgeBaseError(path, None, f"{section}.{key}", f"a {kind.__name__} is required")
    for section, key in (("thresholds", "low_absorption_source"), ("age_groups", "source")):
        if rules[section].get(key) not in citations:
            raise KnowledgeBaseError(path, None, f"{section}.{key}", "must name a source id in data/citations.csv")
    return rules


REQUIRED_TEXTS = ("disclaimer",)


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
    attribute_names = SCORED_ATTRIBUTES + tuple(f"evidence_{goal}" for goal in vocab.GOALS)
    upper, start, rda_rows = _load_intake_limits(folder / "intake_limits.csv", citations)
    rules = _load_rules(folder / "rules.toml", citations)
    kidney_bands = _load_kidney_bands(folder / "kidney_bands.csv", citations, form_ids)
    if rules["kidney"]["dialysis_band"] not in {band.band for band in kidney_bands}:
        raise KnowledgeBaseError(folder / "rules.toml", None, "kidney.dialysis_band", "names no kidney band")
    return KnowledgeBase(
        supplement=manifest["supplement"],
        name=manifest["name"],
        version=manifest["knowledge_base_version"],
        forms=forms,
        citations=citations,
        caveats=_load_caveats(folder / "caveats.csv", citations),
        interactions=_load_interactions(folder / "interactions.csv", citations),
        medicines=medicines,
        rxcui_to_ingredient=rxcui_to_ingredient,
        weights=_load_weights(folder / "weights.csv", citations, FEATURE_NAMES, attribute_names),
        kidney_bands=kidney_bands,
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
