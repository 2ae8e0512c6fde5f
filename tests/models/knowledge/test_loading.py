"""The knowledge base loads, every source resolves, and a malformed file fails start-up
with the file, row and field named."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from formwise.data import DATA_DIR
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import KnowledgeBaseError
from formwise.models.knowledge.loading import default_knowledge_base, load_knowledge_base


@pytest.fixture()
def data_copy(tmp_path) -> Path:
    """A writable copy of data/ laid out as shipped; returns the magnesium folder."""
    target = tmp_path / "data"
    shutil.copytree(DATA_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return target / "supplements" / "magnesium"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_packaged_knowledge_base_loads_with_the_contract_forms():
    kb = default_knowledge_base()
    assert set(vocab.REQUIRED_FORMS) <= set(kb.form_ids)
    assert kb.version
    assert len(kb.medicines) >= 60


def test_every_source_id_resolves_to_a_citation_with_title_year_and_url():
    kb = default_knowledge_base()
    used = set()
    for form in kb.forms:
        used.add(form.source)
        used.update(value.source for value in form.attributes.values())
        used.update(evidence.source for evidence in form.evidence.values())
    used.update(caveat.source for caveat in kb.caveats.values() if caveat.source)
    used.update(interaction.source for interaction in kb.interactions.values())
    used.update(weight.source for weight in kb.weights)
    used.update(band.source for band in kb.kidney_bands)
    assert used <= set(kb.citations)
    for citation in kb.citations.values():
        assert citation.title and citation.url and 1900 < citation.year <= 2100


def test_every_form_has_every_attribute_with_a_source():
    for form in default_knowledge_base().forms:
        for name in ("elemental_fraction", "absorption", "laxative_strength", "gi_tolerance", "relative_cost",
                     "unit_elemental_mg"):
            assert form.attributes[name].source


def test_medicine_names_cover_every_interaction_class_and_rxcuis_resolve():
    kb = default_knowledge_base()
    classes = {c for medicine in kb.medicines.values() for c in medicine.drug_classes}
    assert classes == set(vocab.INTERACTION_CLASSES)
    for ingredient in kb.rxcui_to_ingredient.values():
        assert ingredient in kb.medicines


def test_every_name_row_names_the_source_that_maps_it():
    kb = default_knowledge_base()
    with (DATA_DIR / "medicines.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert all(row["name_source"] in kb.citations for row in rows)


def test_every_ingredient_has_one_sourced_rxcui_on_its_own_row():
    kb = default_knowledge_base()
    with (DATA_DIR / "medicines.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    coded = [row for row in rows if row["rxcui"]]
    assert len({row["ingredient"] for row in coded}) == len(coded), "at most one RxCUI per ingredient"
    assert all(row["name"] == row["ingredient"] and row["rxcui_source"] in kb.citations for row in coded)
    assert not any(row["rxcui_source"] for row in rows if not row["rxcui"])


def test_upper_limits_match_the_contract():
    kb = default_knowledge_base()
    assert kb.upper_limit_by_age[1] == kb.upper_limit_by_age[3] == 65
    assert kb.upper_limit_by_age[4] == kb.upper_limit_by_age[8] == 110
    assert kb.upper_limit_by_age[9] == kb.upper_limit_by_age[120] == 350


def test_a_copy_loads_from_a_folder(data_copy):
    assert load_knowledge_base(folder=data_copy).form_ids == default_knowledge_base().form_ids


def line_of(file: str, prefix: str) -> int:
    """The line number (1 = header) of the first row of a shared data file starting with ``prefix``."""
    lines = (DATA_DIR / file).read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.startswith(prefix))


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("form_attributes.csv", "citrate,absorption,0.85", "citrate,absorption,high",
         ["form_attributes.csv", "row 15", "field 'value'", "'high' is not a number"]),
        ("form_attributes.csv", "oxide,absorption,0.20", "oxide,absorption,1.7",
         ["form_attributes.csv", "field 'value'", "outside"]),
        ("form_attributes.csv", "oxide,absorption,0.20,firoz2001", "oxide,absorption,0.20,nobody2020",
         ["form_attributes.csv", "field 'source'", "nobody2020"]),
        ("forms.csv", "oxide,Magnesium oxide,Magnesiumoxid,magnesium oxide,magnesium oxide,MgO,anhydrous,true",
         "oxide,Magnesium oxide,Magnesiumoxid,magnesium oxide,magnesium oxide,MgO,anhydrous,false",
         ["forms.csv", "row 4", "field 'laxative'", "contract"]),
        ("forms.csv", "daily,capsule,1,fda-mg-citrate-label", "daily,pill,1,fda-mg-citrate-label",
         ["forms.csv", "row 2", "field 'unit_kind'", "tablet, capsule, liquid, powder"]),
        ("forms.csv", "daily,tablet,1,aga-acg2023", "daily,tablet,2,aga-acg2023",
         ["forms.csv", "row 4", "field 'unit_size'", "one unit"]),
        ("forms.csv", "oxide,Magnesium oxide,Magnesiumoxid,", "oxide,Magnesium oxide,,",
         ["forms.csv", "row 4", "field 'name_de'", "required"]),
        ("evidence.csv", "glycinate,sleep,0.45,D", "glycinate,sleepiness,0.45,D",
         ["evidence.csv", "row 2", "field 'goal'", "sleepiness"]),
        ("evidence.csv", "glycinate,sleep,0.45,D", "glycinate,sleep,0.45,E",
         ["evidence.csv", "row 2", "field 'grade'"]),
        ("weights.csv", "always,absorption,1.0", "always,absorbency,1.0",
         ["weights.csv", "row 2", "field 'attribute'"]),
        ("weights.csv", "always,absorption,1.0", "sometimes,absorption,1.0",
         ["weights.csv", "row 2", "field 'factor'"]),
        ("kidney_bands.csv", "moderate,30,60,kidney_impairment_moderate,exclude_listed,oxide;hydroxide",
         "moderate,30,60,kidney_impairment_moderate,exclude_listed,oxide",
         ["kidney_bands.csv", "excluded_forms", "hydroxide"]),
        ("kidney_bands.csv", "normal,60,251", "normal,65,251", ["kidney_bands.csv", "row 4", "field 'egfr_min'"]),
        ("intake_limits.csv", "4,8,130,130,,,110,40", "4,7,130,130,,,110,40",
         ["intake_limits.csv", "field 'age_min'", "[8]"]),
        ("interactions.csv", "digoxin,warning", "digoxin,critical", ["interactions.csv", "row 12", "field 'severity'"]),
        ("caveats.csv", "infant,answer,critical", "infantile,answer,critical",
         ["caveats.csv", "row 8", "field 'code'"]),
        ("rules.toml", "low_absorption_below = 0.4", "low_absorption_below = \"low\"",
         ["rules.toml", "thresholds.low_absorption_below"]),
        ("rules.toml", "[thresholds]", "[thresholds", ["rules.toml", "not valid TOML"]),
        ("rules.toml", "below_share = 0.99", "below_share = 1.2", ["rules.toml", "ranking.below_share", "between 0"]),
        ("caveats.csv", "heart_block,answer,warning,,,,heart_block,", "heart_block,answer,warning,,,,heartblock,",
         ["caveats.csv", "row 15", "field 'triggered_by'", "'heartblock' is no condition or goal"]),
        ("caveats.csv", "heart_block,answer,warning,,,,heart_block,", "heart_block,form,warning,,,,heart_block,",
         ["caveats.csv", "row 15", "field 'triggered_by'", "only an answer caveat"]),
        ("gi_rules.csv", "sensitive_stomach,rank_below_non_laxative,may_worsen_diarrhea,formwise-editorial\n", "",
         ["gi_rules.csv", "field 'condition'", "safety rule 5 needs a row for 'sensitive_stomach'"]),
        ("manifest.toml", 'knowledge_base_version = "', 'knowledge_base_versio = "',
         ["manifest.toml", "knowledge_base_version"]),
        ("../../medicines.csv", "omeprazole,7646,cpic-drug-table,", "omeprazole,7646,,",
         ["medicines.csv", f"row {line_of('medicines.csv', 'omeprazole,ppi,generic')}", "field 'rxcui_source'",
          "needs a source id"]),
        ("../../medicines.csv", "omeprazole,7646,cpic-drug-table,", "omeprazole,7646,nowhere-2024,",
         ["medicines.csv", f"row {line_of('medicines.csv', 'omeprazole,ppi,generic')}", "field 'rxcui_source'",
          "nowhere-2024"]),
        ("../../medicines.csv", "prilosec,ppi,brand,omeprazole,,,", "prilosec,ppi,brand,omeprazole,,rxnorm-release,",
         ["medicines.csv", f"row {line_of('medicines.csv', 'prilosec,')}", "field 'rxcui_source'", "no rxcui"]),
        ("../../medicines.csv", "prilosec,ppi,brand,omeprazole,,,name-prilosec", "prilosec,ppi,brand,omeprazole,,,",
         ["medicines.csv", f"row {line_of('medicines.csv', 'prilosec,')}", "field 'name_source'"]),
        ("ingredient_interactions.csv", "moxifloxacin,fluoroquinolone,separate,4,8",
         "moxifloxacin,fluoroquinolone,separate,0,0",
         ["ingredient_interactions.csv", "row 3", "field 'management'", "needs hours"]),
        ("ingredient_interactions.csv", "moxifloxacin,fluoroquinolone,separate,4,8",
         "moxifloxacin,fluoroquinolone,avoid,0,0",
         ["ingredient_interactions.csv", "row 3", "field 'text_en'", "its own text"]),
        ("ingredient_interactions.csv", "moxifloxacin,fluoroquinolone", "moxifloxacin,tetracycline",
         ["ingredient_interactions.csv", "row 3", "field 'ingredient'", "not listed"]),
        ("kidney_bands.csv", "unknown,,,kidney_function_unknown,exclude_listed,oxide;hydroxide;sulfate,65",
         "unknown,,,kidney_function_unknown,exclude_listed,oxide;hydroxide;sulfate,70",
         ["kidney_bands.csv", "field 'excluded_forms'", "from age 65"]),
        ("caveats.csv", "kidney_function_unknown,answer,info,warning,65", "kidney_function_unknown,answer,info,,",
         ["caveats.csv", "escalated_severity", "warning from age 65"]),
        ("caveats.csv", "serum_magnesium_high,answer,critical", "serum_magnesium_high,answer,warning",
         ["caveats.csv", "serum_magnesium_high is critical"]),
        ("rules.toml", "high_above_mmol_l = 1.05", "high_above_mmol_l = 1.2",
         ["rules.toml", "serum_magnesium.high_above_mmol_l", "contract"]),
        ("rules.toml", "min_age = 12", "min_age = 10", ["rules.toml", "occasional_use.min_age"]),
        ("forms.csv", "heptahydrate,true,occasional", "heptahydrate,true,daily",
         ["forms.csv", "field 'use'", "sulfate"]),
        ("caveats.csv", "cramps_evidence_limited,answer,info,,,evidence_cramps",
         "cramps_evidence_limited,answer,info,,,cramps",
         ["caveats.csv", "field 'limits_evidence'"]),
    ],
)
def test_malformed_files_name_file_row_and_field(data_copy, file, old, new, expected):
    edit(data_copy / file, old, new)
    with pytest.raises(KnowledgeBaseError) as raised:
        load_knowledge_base(folder=data_copy)
    for fragment in expected:
        assert fragment in str(raised.value)


def test_a_missing_column_is_named(data_copy):
    edit(data_copy / "forms.csv", "id,name,name_de", "ident,name,name_de")
    with pytest.raises(KnowledgeBaseError, match=r"forms.csv, row 1, field 'id': required column"):
        load_knowledge_base(folder=data_copy)


def test_a_missing_contract_form_is_named(data_copy):
    path = data_copy / "forms.csv"
    path.write_text("".join(line for line in path.read_text().splitlines(True) if not line.startswith("taurate,")))
    with pytest.raises(KnowledgeBaseError, match="taurate"):
        load_knowledge_base(folder=data_copy)


def test_a_missing_attribute_is_named(data_copy):
    path = data_copy / "form_attributes.csv"
    lines = path.read_text().splitlines(True)
    path.write_text("".join(line for line in lines if not line.startswith("malate,gi_tolerance")))
    with pytest.raises(KnowledgeBaseError, match="form 'malate' has no 'gi_tolerance'"):
        load_knowledge_base(folder=data_copy)


def test_an_unknown_citation_in_the_shared_medicines_file_is_named(data_copy):
    medicines = data_copy.parent.parent / "medicines.csv"
    edit(medicines, "digoxin,digoxin,generic", "digoxin,cardiac_glycoside,generic")
    with pytest.raises(KnowledgeBaseError, match=r"medicines.csv, row \d+, field 'drug_class'"):
        load_knowledge_base(folder=data_copy)


def test_a_missing_file_is_named(data_copy):
    (data_copy / "gi_rules.csv").unlink()
    with pytest.raises(KnowledgeBaseError, match=r"gi_rules\.csv: file is missing"):
        load_knowledge_base(folder=data_copy)


def test_an_extra_form_is_a_data_change_only(data_copy):
    edit(data_copy / "forms.csv", "orotate,",
         "pidolate,Magnesium pidolate,Magnesiumpidolat,magnesium pidolate,magnesium pidolate,"
         "C10H12MgN2O6,anhydrous,false,daily,tablet,1,formwise-editorial,\norotate,")
    rows = [f"pidolate,{name},{value},formwise-editorial,\n" for name, value in (
        ("elemental_fraction", 0.086), ("absorption", 0.7), ("laxative_strength", 0.3), ("gi_tolerance", 0.6),
        ("relative_cost", 0.6), ("unit_elemental_mg", 100))]
    with (data_copy / "form_attributes.csv").open("a") as handle:
        handle.writelines(rows)
    kb = load_knowledge_base(folder=data_copy)
    assert "pidolate" in kb.form_ids
    from formwise.models.recommender import Recommender

    answer = Recommender(kb).recommend([{"age": 40}], limit=20)[0]
    assert "pidolate" in {r["form"] for r in answer["recommendations"]}
