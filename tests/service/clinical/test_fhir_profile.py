"""data/codes/ and RxNorm: the code tables load and validate, every RxCUI resolves, and FHIR
details (partial birth dates, statuses, medication references) are read as documented."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from formwise.data import DATA_DIR
from formwise.models.engine.medicines import MedicineIndex
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import KnowledgeBaseError
from formwise.models.knowledge.codes import RXNORM_SYSTEM, default_clinical_codes, load_clinical_codes
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.service.clinical.fhir_profile import (
    FhirProfileReader,
    InvalidFhirData,
    MissingFhirData,
    age_from_birth_date,
)

KB = default_knowledge_base()
MEDICINES = MedicineIndex(KB)
CODES = default_clinical_codes()
TODAY = dt.date(2026, 6, 15)


def test_the_code_tables_cover_the_issue_and_resolve_their_sources():
    assert set(CODES.loinc_codes("egfr")) >= {"33914-3", "48642-3", "48643-1", "62238-1", "98979-8", "98980-6",
                                             "77147-7", "76633-7", "50044-7", "88293-6"}
    assert set(CODES.loinc_codes("serum_magnesium")) == {"19123-9", "2601-3", "21377-7"}
    for code in (*CODES.loinc.values(), *CODES.snomed.values()):
        assert code.source in KB.citations and code.url.startswith("https://")
    meanings = {code.meaning for code in CODES.snomed.values()}
    assert {"pregnant", "breastfeeding", "dialysis", "migraine", "heart_block"} <= meanings
    assert meanings <= set(vocab.CONDITIONS) | {"pregnant", "breastfeeding", "dialysis"}


@pytest.mark.parametrize(("file_name", "old", "new", "field"), [
    ("loinc.csv", "98979-8,egfr", "98979-8,kidney", "role"),
    ("loinc.csv", "19123-9,serum_magnesium", "19123-9X,serum_magnesium", "code"),
    ("snomed_conditions.csv", ",migraine,", ",headache,", "maps_to"),
    ("snomed_conditions.csv", "conceptId1=37796009,snomed-ct", "conceptId1=37796009,nowhere", "source"),
])
def test_a_malformed_code_row_names_the_file_row_and_field(tmp_path, file_name, old, new, field):
    folder = tmp_path / "codes"
    shutil.copytree(DATA_DIR / "codes", folder)
    path = folder / file_name
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(KnowledgeBaseError) as error:
        load_clinical_codes(folder, DATA_DIR / "citations.csv")
    assert error.value.field_name == field and file_name in str(error.value) and "row" in str(error.value)


def uncoded_ingredients_listed_in_the_data_readme() -> set[str]:
    """data/README.md lists the ingredients whose RxCUI no source read this far gives."""
    text = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    section = text.split("Ingredients without an RxCUI", 1)[1].split("\n\n", 2)[1]
    return {item.strip().strip("`") for item in section.replace("\n", " ").split(",") if item.strip()}


def test_every_ingredient_rxcui_resolves_to_its_medicine():
    ingredients = {i for medicine in KB.medicines.values() for i in medicine.ingredients}
    coded = set(KB.rxcui_to_ingredient.values())
    assert ingredients - coded == uncoded_ingredients_listed_in_the_data_readme(), "the README names the uncoded"
    assert len(KB.rxcui_to_ingredient) == len(coded), "and one RxCUI each"
    reader = FhirProfileReader(CODES, MEDICINES)
    for rxcui, ingredient in KB.rxcui_to_ingredient.items():
        assert MEDICINES.lookup(f"rxcui:{rxcui}") is KB.medicines[ingredient]
        statement = {"resourceType": "MedicationStatement", "status": "active",
                     "medicationCodeableConcept": {"coding": [{"system": RXNORM_SYSTEM, "code": rxcui}]}}
        reading = reader.read({"resourceType": "Patient", "birthDate": "1970-01-01"}, [statement], TODAY)
        assert MEDICINES.resolve(reading.profile["medications"][0]) is not None


@pytest.mark.parametrize(("birth_date", "age"), [
    ("1976-06-15", 50), ("1976-06-16", 49), ("1976", 49), ("1976-05", 50), ("1976-06", 49), ("1800-01-01", 120),
])
def test_partial_birth_dates_give_the_youngest_possible_age(birth_date, age):
    assert age_from_birth_date(birth_date, TODAY) == age


@pytest.mark.parametrize(("birth_date", "error"), [
    (None, MissingFhirData), ("15.06.1976", MissingFhirData), ("2027-01-01", InvalidFhirData),
    ("1976-13", InvalidFhirData), ("1976-02-30", InvalidFhirData),
])
def test_unusable_birth_dates_are_refused(birth_date, error):
    with pytest.raises(error):
        age_from_birth_date(birth_date, TODAY)


def test_a_medication_reference_is_followed_to_its_medication():
    reader = FhirProfileReader(CODES, MEDICINES)
    contained = {"resourceType": "MedicationRequest", "status": "active",
                 "contained": [{"resourceType": "Medication", "id": "m1",
                                "code": {"coding": [{"system": RXNORM_SYSTEM, "code": "10582"}]}}],
                 "medicationReference": {"reference": "#m1"}}
    listed = {"resourceType": "MedicationRequest", "status": "on-hold",
              "medicationReference": {"reference": "Medication/m2", "display": "Lasix 40"}}
    medication = {"resourceType": "Medication", "id": "m2", "code": {"text": "furosemide 40 mg tablet"}}
    reading = reader.read({"resourceType": "Patient", "birthDate": "1950-01-01", "gender": "other"},
                          [{"resourceType": "Bundle", "entry": [{"resource": r} for r in (contained, listed,
                                                                                           medication)]}], TODAY)
    assert reading.profile["sex"] == "unspecified"
    assert [MEDICINES.lookup(name).name for name in reading.profile["medications"]] == ["levothyroxine",
                                                                                         "furosemide"]


def test_kidney_units_and_product_tables_resolve_their_sources():
    assert {"431857002", "46177005", "443143006", "443596009", "700379002"} <= set(CODES.kidney)
    for kidney in CODES.kidney.values():
        assert kidney.source in KB.citations
    # KDIGO 2012 GFR categories: G3b 30-44, G4 15-29, G5 <15
    assert (CODES.kidney["700379002"].egfr_below, CODES.kidney["431857002"].egfr_below,
            CODES.kidney["433146000"].egfr_below) == (45, 30, 15)
    assert CODES.units[("egfr", "ml/s/{1.73_m2}")] == 60
    assert abs(CODES.units[("serum_magnesium", "mg/dl")] * 2.43 - 1) < 1e-5
    for name in CODES.products.values():  # the salt each product is
        resolved = MEDICINES.resolve(name)
        assert resolved is not None and any(MEDICINES.components[c][1] == "magnesium_product"
                                            for c in resolved.components), name


def test_every_magnesium_salt_of_the_forms_is_a_magnesium_product():
    for form in KB.forms:
        resolved = MEDICINES.resolve(form.ingredient)
        assert resolved is not None and {MEDICINES.components[c][1] for c in resolved.components} == {
            "magnesium_product"}, form.id
