"""Clinical codes: which LOINC codes count as eGFR or serum magnesium, which SNOMED CT codes
stand for the contract's conditions, pregnancy, breastfeeding and dialysis, which stand for a
stage of chronic kidney disease (and the eGFR that stage implies), and which units the values
may come in (with their factor to the contract's unit). They are facts in ``data/codes/``,
each row with a source id; formwise.service.clinical.fhir_profile reads FHIR resources with
them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from formwise.data import DATA_DIR
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import KnowledgeBaseError
from formwise.models.knowledge.csv_fields import choice_cell, read_rows, source_cell
from formwise.models.knowledge.loading import load_citations

CODES_DIR = DATA_DIR / "codes"
LOINC_SYSTEM = "http://loinc.org"
SNOMED_SYSTEM = "http://snomed.info/sct"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"

UCUM_SYSTEM = "http://unitsofmeasure.org"

LOINC_ROLES = ("egfr", "serum_magnesium")
PROFILE_FLAGS = ("pregnant", "breastfeeding", "dialysis")
# What a kidney code on the problem list says: a stage (with the eGFR it implies), dialysis,
# or a transplanted kidney.
KIDNEY_STATUSES = ("ckd_stage", "dialysis", "transplant")
# The contract's ranges: a value reported beyond one is read as its end.
MEASUREMENT_RANGES = {"egfr": (0.0, 250.0), "serum_magnesium": (0.0, 10.0)}
_LOINC_CODE = re.compile(r"^\d{1,7}-\d$")
_SNOMED_CODE = re.compile(r"^\d{6,18}$")

EGFR_RANGE = MEASUREMENT_RANGES["egfr"]


@dataclass(frozen=True)
class Code:
    code: str
    display: str
    meaning: str  # a LOINC role, or the contract word / profile flag a SNOMED code maps to
    url: str
    source: str


@dataclass(frozen=True)
class KidneyCode:
    code: str
    display: str
    status: str  # KIDNEY_STATUSES
    egfr_below: float | None  # a stage's (or a transplant's) upper eGFR bound: the eGFR is read just under it
    url: str
    source: str


@dataclass(frozen=True)
class ClinicalCodes:
    loinc: dict[str, Code]
    snomed: dict[str, Code]
    kidney: dict[str, KidneyCode] = field(default_factory=dict)
    # (role, unit as normalised by unit_key) -> factor to the contract's unit
    units: dict[tuple[str, str], float] = field(default_factory=dict)
    # RxCUI of a magnesium product (a clinical or branded drug) -> the salt its RxNorm name
    # names: how a draft order coded only by product is recognised
    products: dict[str, str] = field(default_factory=dict)

    def loinc_codes(self, role: str) -> tuple[str, ...]:
        return tuple(code for code, item in self.loinc.items() if item.meaning == role)


def unit_key(unit: str) -> str:
    """A unit as written in a record, compared without case and spaces ("mL/min/1.73 m2")."""
    return "".join(str(unit).lower().split())


def _load_codes(path: Path, citations, pattern: re.Pattern, meaning_column: str, meanings) -> dict[str, Code]:
    codes: dict[str, Code] = {}
    for row, record in read_rows(path, ("code", "display", meaning_column, "url", "source")):
        code = record["code"]
        if not pattern.match(code):
            raise KnowledgeBaseError(path, row, "code", f"'{code}' is not a valid code")
        if code in codes:
            raise KnowledgeBaseError(path, row, "code", f"duplicate code '{code}'")
        if not record["display"]:
            raise KnowledgeBaseError(path, row, "display", "value is required")
        if not record["url"].startswith("https://"):
            raise KnowledgeBaseError(path, row, "url", "must be an https URL")
        codes[code] = Code(code, record["display"], choice_cell(path, row, record, meaning_column, meanings),
                           record["url"], source_cell(path, row, record, citations))
    return codes


def _load_kidney_codes(path: Path, citations, other_snomed: dict[str, Code]) -> dict[str, KidneyCode]:
    codes: dict[str, KidneyCode] = {}
    for row, record in read_rows(path, ("code", "display", "status", "egfr_below", "url", "source")):
        code = record["code"]
        if not _SNOMED_CODE.match(code):
            raise KnowledgeBaseError(path, row, "code", f"'{code}' is not a valid code")
        if code in codes or code in other_snomed:
            raise KnowledgeBaseError(path, row, "code", f"duplicate code '{code}'")
        if not record["display"]:
            raise KnowledgeBaseError(path, row, "display", "value is required")
        status = choice_cell(path, row, record, "status", KIDNEY_STATUSES)
        below = None
        if record["egfr_below"]:
            try:
                below = float(record["egfr_below"])
            except ValueError:
                raise KnowledgeBaseError(path, row, "egfr_below", f"'{record['egfr_below']}' is not a number") from None
            if not 1 <= below <= EGFR_RANGE[1]:
                raise KnowledgeBaseError(path, row, "egfr_below", f"{below} is outside 1..{EGFR_RANGE[1]:g}")
        if (below is None) != (status == "dialysis"):
            raise KnowledgeBaseError(path, row, "egfr_below", "a stage or transplant needs one; dialysis has none")
        codes[code] = KidneyCode(code, record["display"], status, below, record["url"],
                                 source_cell(path, row, record, citations))
    return codes


def _load_units(path: Path, citations) -> dict[tuple[str, str], float]:
    units: dict[tuple[str, str], float] = {}
    for row, record in read_rows(path, ("role", "unit", "factor", "canonical", "source")):
        role = choice_cell(path, row, record, "role", LOINC_ROLES)
        key = (role, unit_key(record["unit"]))
        if key in units:
            raise KnowledgeBaseError(path, row, "unit", f"'{record['unit']}' is given twice for {role}")
        try:
            factor = float(record["factor"])
        except ValueError:
            raise KnowledgeBaseError(path, row, "factor", f"'{record['factor']}' is not a number") from None
        if not factor > 0:
            raise KnowledgeBaseError(path, row, "factor", "must be above 0")
        source_cell(path, row, record, citations)
        units[key] = factor
    for role in LOINC_ROLES:
        if not any(key[0] == role for key in units):
            raise KnowledgeBaseError(path, None, "role", f"no unit for '{role}'")
    return units


def _load_products(path: Path, citations) -> dict[str, str]:
    products: dict[str, str] = {}
    for row, record in read_rows(path, ("rxcui", "name", "ingredient", "source")):
        if not record["rxcui"].isdigit():
            raise KnowledgeBaseError(path, row, "rxcui", f"'{record['rxcui']}' is not a number")
        if record["rxcui"] in products:
            raise KnowledgeBaseError(path, row, "rxcui", f"duplicate RxCUI '{record['rxcui']}'")
        if not record["ingredient"] or record["ingredient"].lower() not in record["name"].lower():
            raise KnowledgeBaseError(path, row, "ingredient", "must be named in the product's name")
        source_cell(path, row, record, citations)
        products[record["rxcui"]] = record["ingredient"].lower()
    return products


def load_clinical_codes(folder: Path = CODES_DIR, citations_path: Path | None = None) -> ClinicalCodes:
    """Read and validate data/codes/; every row's source must resolve in citations.csv."""
    citations = load_citations(citations_path or folder.parent / "citations.csv")
    snomed = _load_codes(folder / "snomed_conditions.csv", citations, _SNOMED_CODE, "maps_to",
                         (*vocab.CONDITIONS, *PROFILE_FLAGS))
    codes = ClinicalCodes(
        loinc=_load_codes(folder / "loinc.csv", citations, _LOINC_CODE, "role", LOINC_ROLES),
        snomed=snomed,
        kidney=_load_kidney_codes(folder / "snomed_kidney.csv", citations, snomed),
        units=_load_units(folder / "units.csv", citations),
        products=_load_products(folder / "rxnorm_magnesium_products.csv", citations),
    )
    for role in LOINC_ROLES:
        if not codes.loinc_codes(role):
            raise KnowledgeBaseError(folder / "loinc.csv", None, "role", f"no code for '{role}'")
    return codes


@cache
def default_clinical_codes() -> ClinicalCodes:
    return load_clinical_codes()






