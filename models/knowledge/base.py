"""What a knowledge base holds, as frozen records: forms with their sourced attributes and
evidence, caveats, interactions, medicines, weights, kidney bands and GI rules, and the error
that names the file, row and field of a malformed data file. loading builds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from formwise.data import DATA_DIR
from formwise.models.knowledge import vocabulary as vocab

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
# Profile factors the weights in data/ may name (the rows of the weight matrix).
PROFILE_FACTORS = (
    "profile:kidney_moderate",
    "profile:pregnant_or_breastfeeding",
    "profile:child",
    "profile:older_adult",
)
# The rows of the weight matrix (and of weights.csv): a constant, then the profile's words
# and factors. The engine builds the matching feature columns.
FEATURE_NAMES = (
    "always",
    *(f"condition:{c}" for c in vocab.CONDITIONS),
    *(f"goal:{g}" for g in vocab.GOALS),
    *PROFILE_FACTORS,
)
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
