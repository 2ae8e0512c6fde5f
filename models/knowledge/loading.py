"""Load and validate one supplement's knowledge base from ``data/``: one loader per file
(the medicine files' loaders are in ``medicine_rows``, the cell readers in ``csv_fields``).

Every clinical number carries a source id that must resolve to a citation. Any malformed
file stops start-up with a :class:`KnowledgeBaseError` naming the file, row and field, so a
bad edit to the data can never reach an answer.
"""

from __future__ import annotations

import math
import re
import tomllib
from functools import cache
from pathlib import Path

import numpy as np

from formwise.data import DATA_DIR, supplement_dir
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import (
    EVIDENCE_GRADES,
    FEATURE_NAMES,
    FORM_ATTRIBUTES,
    FORM_USES,
    GI_ACTIONS,
    KIDNEY_ACTIONS,
    SCORED_ATTRIBUTES,
    UNIT_KINDS,
    UNKNOWN_KIDNEY_BAND,
    Caveat,
    Citation,
    Evidence,
    Form,
    GiRule,
    KidneyBand,
    KnowledgeBase,
    KnowledgeBaseError,
    Medicine,
    SourcedValue,
    Weight,
)
from formwise.models.knowledge.csv_fields import choice_cell, number_cell, read_rows, source_cell, text_cells
from formwise.models.knowledge.medicine_rows import (
    load_ingredient_interactions,
    load_interactions,
    load_medicines,
    normalize_medicine_name,
)

# ---------------------------------------------------------------------------------------
# One loader per file.


def load_citations(path: Path) -> dict[str, Citation]:
    citations = {}
    for row, record in read_rows(path, ("id", "title", "authors", "year", "url", "note")):
        for name in ("id", "title", "url"):
            if not record[name]:
                raise KnowledgeBaseError(path, row, name, "value is required")
        if record["id"] in citations:
            raise KnowledgeBaseError(path, row, "id", f"duplicate id '{record['id']}'")
        if not record["url"].startswith(("https://", "http://", "urn:")):
            raise KnowledgeBaseError(path, row, "url", "must be an http(s) URL or a urn")
        year = int(number_cell(path, row, record, "year", 1900, 2100))
        citations[record["id"]] = Citation(
            record["id"], record["title"], record["authors"], year, record["url"], record["note"]
        )
    return citations


def _load_forms(folder: Path, citations) -> tuple[Form, ...]:
    path = folder / "forms.csv"
    headers: dict[str, dict] = {}
    for row, record in read_rows(path, ("id", "name", "salt", "ingredient", "formula", "hydrate", "laxative", "use",
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
        laxative = choice_cell(path, row, record, "laxative", ("true", "false")) == "true"
        if form_id in vocab.CONTRACT_LAXATIVE_FORMS and not laxative:
            raise KnowledgeBaseError(path, row, "laxative", f"the contract counts '{form_id}' as a laxative form")
        use = choice_cell(path, row, record, "use", FORM_USES)
        if form_id in vocab.CONTRACT_OCCASIONAL_FORMS and use != "occasional":
            raise KnowledgeBaseError(path, row, "use", f"the contract says '{form_id}' is not for daily use")
        if use == "occasional" and not laxative:
            raise KnowledgeBaseError(path, row, "use", "an occasional-use form must be a laxative form (rule 8)")
        unit_kind = choice_cell(path, row, record, "unit_kind", UNIT_KINDS)
        unit_size = number_cell(path, row, record, "unit_size", 0.1, 100.0)
        if unit_kind in ("tablet", "capsule") and unit_size != 1:
            raise KnowledgeBaseError(path, row, "unit_size", "a tablet or capsule is one unit")
        headers[form_id] = dict(record, laxative=laxative, use=use, unit_kind=unit_kind, unit_size=unit_size,
                                source=source_cell(path, row, record, citations))
    for required in vocab.REQUIRED_FORMS:
        if required not in headers:
            raise KnowledgeBaseError(path, None, "id", f"the contract's form '{required}' is missing")

    attributes: dict[str, dict[str, SourcedValue]] = {form_id: {} for form_id in headers}
    path = folder / "form_attributes.csv"
    for row, record in read_rows(path, ("form", "attribute", "value", "source", "note")):
        form_id = choice_cell(path, row, record, "form", tuple(headers))
        name = choice_cell(path, row, record, "attribute", tuple(FORM_ATTRIBUTES))
        if name in attributes[form_id]:
            raise KnowledgeBaseError(path, row, "attribute", f"'{name}' given twice for '{form_id}'")
        low, high = FORM_ATTRIBUTES[name]
        value = number_cell(path, row, record, "value", low, high)
        attributes[form_id][name] = SourcedValue(value, source_cell(path, row, record, citations), record["note"])
    for form_id, values in attributes.items():
        for name in FORM_ATTRIBUTES:
            if name not in values:
                raise KnowledgeBaseError(path, None, "attribute", f"form '{form_id}' has no '{name}'")

    evidence: dict[str, dict[str, Evidence]] = {form_id: {} for form_id in headers}
    path = folder / "evidence.csv"
    for row, record in read_rows(path, ("form", "goal", "strength", "grade", "source", "note")):
        form_id = choice_cell(path, row, record, "form", tuple(headers))
        goal = choice_cell(path, row, record, "goal", vocab.GOALS)
        if goal in evidence[form_id]:
            raise KnowledgeBaseError(path, row, "goal", f"'{goal}' given twice for '{form_id}'")
        evidence[form_id][goal] = Evidence(
            number_cell(path, row, record, "strength", 0.0, 1.0),
            choice_cell(path, row, record, "grade", EVIDENCE_GRADES),
            source_cell(path, row, record, citations),
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
    for row, record in read_rows(path, ("code", "scope", "severity", "text_en", "source")):
        code = choice_cell(path, row, record, "code", tuple(dict.fromkeys(known)))
        if code in caveats:
            raise KnowledgeBaseError(path, row, "code", f"duplicate code '{code}'")
        severity = choice_cell(path, row, record, "severity", vocab.SEVERITIES)
        escalated, from_age = "", None
        if record.get("escalated_severity"):
            escalated = choice_cell(path, row, record, "escalated_severity", vocab.SEVERITIES)
            if vocab.SEVERITIES.index(escalated) <= vocab.SEVERITIES.index(severity):
                raise KnowledgeBaseError(path, row, "escalated_severity", f"must be above '{severity}'")
            from_age = int(number_cell(path, row, record, "escalated_from_age", 0, 120))
        elif record.get("escalated_from_age"):
            raise KnowledgeBaseError(path, row, "escalated_severity", "an age is given but no severity")
        limits = tuple(item for item in record.get("limits_evidence", "").split(";") if item)
        for attribute in limits:
            if attribute not in attribute_names:
                raise KnowledgeBaseError(path, row, "limits_evidence", f"'{attribute}' is not a scored attribute")
        scope = choice_cell(path, row, record, "scope", ("answer", "form", "exclusion"))
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
            text_cells(path, row, record, "text"),
            source_cell(path, row, record, citations, optional=record["scope"] == "exclusion"),
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


def _load_weights(path: Path, citations, feature_names, attribute_names) -> tuple[Weight, ...]:
    weights = []
    seen = set()
    required = ("factor", "attribute", "weight", "reason_plus_en", "reason_minus_en", "source")
    for row, record in read_rows(path, required):
        factor = choice_cell(path, row, record, "factor", feature_names)
        attribute = choice_cell(path, row, record, "attribute", attribute_names)
        if (factor, attribute) in seen:
            raise KnowledgeBaseError(path, row, "attribute", f"'{factor}' x '{attribute}' given twice")
        seen.add((factor, attribute))
        weights.append(
            Weight(
                factor,
                attribute,
                number_cell(path, row, record, "weight", -10.0, 10.0),
                text_cells(path, row, record, "reason_plus"),
                text_cells(path, row, record, "reason_minus"),
                source_cell(path, row, record, citations),
            )
        )
    return tuple(weights)


def _load_kidney_bands(path: Path, citations, form_ids) -> tuple[tuple[KidneyBand, ...], KidneyBand]:
    """The bands by eGFR (contiguous, 0..250) and the band of an unknown eGFR (``unknown``,
    no eGFR range), each with its caveat and the forms it excludes from which age."""
    bands, unknown = [], None
    required = ("band", "egfr_min", "egfr_max", "caveat", "action", "excluded_forms", "excluded_from_age", "source")
    for row, record in read_rows(path, required):
        is_unknown = record["band"] == UNKNOWN_KIDNEY_BAND
        if is_unknown:
            if record["egfr_min"] or record["egfr_max"]:
                raise KnowledgeBaseError(path, row, "egfr_min", "the unknown band has no eGFR range")
            if unknown is not None:
                raise KnowledgeBaseError(path, row, "band", "the unknown band is given twice")
            low = high = math.nan
        else:
            low = number_cell(path, row, record, "egfr_min", 0, 251)
            high = number_cell(path, row, record, "egfr_max", 0, 251)
            if high <= low:
                raise KnowledgeBaseError(path, row, "egfr_max", "must be above egfr_min")
            if bands and low != bands[-1].egfr_max:
                raise KnowledgeBaseError(path, row, "egfr_min", "bands must be contiguous and in ascending order")
        action = choice_cell(path, row, record, "action", KIDNEY_ACTIONS)
        caveat = record["caveat"]
        if caveat and caveat not in vocab.ANSWER_CAVEATS:
            raise KnowledgeBaseError(path, row, "caveat", f"'{caveat}' is not a contract caveat code")
        excluded = tuple(item for item in record["excluded_forms"].split(";") if item)
        for form_id in excluded:
            if form_id not in form_ids:
                raise KnowledgeBaseError(path, row, "excluded_forms", f"unknown form '{form_id}'")
        if excluded and caveat not in vocab.EXCLUSION_CODES:
            raise KnowledgeBaseError(path, row, "caveat", f"'{caveat}' cannot name an exclusion")
        from_age = int(number_cell(path, row, record, "excluded_from_age", 0, 120, optional=True) or 0)
        band = KidneyBand(record["band"], low, high, caveat, action, excluded,
                          source_cell(path, row, record, citations), from_age)
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
    for row, record in read_rows(path, ("condition", "laxative_forms", "caveat", "source")):
        condition = choice_cell(path, row, record, "condition", vocab.CONDITIONS)
        rules[condition] = GiRule(
            condition,
            choice_cell(path, row, record, "laxative_forms", GI_ACTIONS),
            choice_cell(path, row, record, "caveat", vocab.FORM_CAVEATS),
            source_cell(path, row, record, citations),
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
    for row, record in read_rows(path, (*required, "source")):
        low = int(number_cell(path, row, record, "age_min", 0, 120))
        high = int(number_cell(path, row, record, "age_max", low, 120))
        limit = number_cell(path, row, record, "supplemental_upper_limit_mg", 0, 2000, optional=True)
        start_dose = number_cell(path, row, record, "start_dose_mg", 0, 2000, optional=limit is None)
        if limit is not None and start_dose > limit:
            raise KnowledgeBaseError(path, row, "start_dose_mg", "must not exceed the upper limit")
        if covered[low : high + 1].any():
            raise KnowledgeBaseError(path, row, "age_min", "age ranges overlap")
        covered[low : high + 1] = True
        upper[low : high + 1] = np.nan if limit is None else limit
        start[low : high + 1] = np.nan if start_dose is None else start_dose
        source_cell(path, row, record, citations)
        rows.append(
            {
                "age_min": low,
                "age_max": high,
                "rda_male_mg": number_cell(path, row, record, "rda_male_mg", 0, 2000),
                "rda_female_mg": number_cell(path, row, record, "rda_female_mg", 0, 2000),
                "rda_pregnancy_mg": number_cell(path, row, record, "rda_pregnancy_mg", 0, 2000, optional=True),
                "rda_lactation_mg": number_cell(path, row, record, "rda_lactation_mg", 0, 2000, optional=True),
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
    for row, record in read_rows(path, ("key", "text_en")):
        if record["key"] in texts:
            raise KnowledgeBaseError(path, row, "key", f"duplicate key '{record['key']}'")
        texts[record["key"]] = text_cells(path, row, record, "text")
    for key in REQUIRED_TEXTS:
        if key not in texts:
            raise KnowledgeBaseError(path, None, "key", f"no text for '{key}'")
    return texts


def load_knowledge_base(supplement: str = "magnesium", folder: Path | None = None) -> KnowledgeBase:
    """Read, validate and cross-check one supplement's files (``folder`` overrides the
    packaged data, for tests and for operators who keep their own copy)."""
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

    citations = load_citations(shared / "citations.csv")
    forms = _load_forms(folder, citations)
    form_ids = tuple(form.id for form in forms)
    medicines, rxcui_to_ingredient = load_medicines(shared / "medicines.csv", citations)
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
    interactions = load_interactions(folder / "interactions.csv", citations)
    ingredient_interactions = load_ingredient_interactions(folder / "ingredient_interactions.csv", citations,
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
