"""Each engine rule on hand-picked profiles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from formwise.models.engine.features import WORD_FEATURES, ProfileBatch
from formwise.models.engine.kernel import ScoredArrays
from formwise.models.engine.scoring import ScoredBatch
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import FEATURE_NAMES
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.recommender import Recommender

KB = default_knowledge_base()
LAXATIVE = {form.id for form in KB.forms if form.laxative}
# Rule 8: Epsom salt is no daily supplement; without constipation_relief it is excluded.
OCCASIONAL = {form.id for form in KB.forms if form.use == "occasional"}
DAILY = [form_id for form_id in KB.form_ids if form_id not in OCCASIONAL]


@pytest.fixture(scope="module")
def rec() -> Recommender:
    """The hand-set weights from data/: these tests check the knowledge base's rules."""
    return Recommender(artifact=None)


def ask(rec, limit=20, **profile):
    return rec.recommend([{"age": 40, "egfr": 90} | profile], limit=limit)[0]


def codes(answer):
    return [c["code"] for c in answer["caveats"]]


def excluded(answer):
    return {e["form"]: [r["code"] for r in e["reasons"]] for e in answer["excluded"]}


def test_healthy_adult_gets_every_form_ranked_and_only_the_clinician_caveat(rec):
    answer = ask(rec)
    assert codes(answer) == ["consult_clinician"]
    assert answer["max_severity"] == "info"
    assert [r["form"] for r in answer["recommendations"]] == sorted(DAILY, key=lambda f: [
        r["form"] for r in answer["recommendations"]].index(f))
    assert excluded(answer) == {form: ["not_for_daily_use"] for form in OCCASIONAL}
    assert answer["model_version"] == "hand-set"
    assert answer["knowledge_base_version"] == KB.version


@pytest.mark.parametrize(("egfr", "dialysis", "code"), [
    (29.9, False, "kidney_impairment_severe"), (0, False, "kidney_impairment_severe"),
    (None, True, "kidney_impairment_severe"), (95, True, "kidney_impairment_severe"),
    (30, False, "kidney_impairment_moderate"), (59.9, False, "kidney_impairment_moderate"),
    (None, False, "kidney_function_unknown"),
])
def test_kidney_bands(rec, egfr, dialysis, code):
    answer = ask(rec, egfr=egfr, dialysis=dialysis)
    assert code in codes(answer)
    if code == "kidney_impairment_severe":
        assert answer["recommendations"] == [] and answer["max_severity"] == "critical"
        assert all(reasons[0] == "kidney_impairment_severe" for reasons in excluded(answer).values())
    elif code == "kidney_impairment_moderate":
        assert set(excluded(answer)) == {"oxide", "hydroxide", "sulfate"}  # rules 2 and 7
        assert excluded(answer)["sulfate"] == ["kidney_impairment_moderate", "not_for_daily_use"]
        assert {r["status"] for r in answer["recommendations"]} == {"caution"}
        assert answer["max_severity"] == "warning"
    else:  # under 65, an unknown eGFR excludes nothing (rule 7 starts at 65)
        assert answer["max_severity"] == "info" and len(answer["recommendations"]) == len(DAILY)


def test_egfr_60_is_normal(rec):
    answer = ask(rec, egfr=60)
    assert not {"kidney_impairment_moderate", "kidney_impairment_severe"} & set(codes(answer))
    assert {r["status"] for r in answer["recommendations"]} == {"suitable"}


def test_infant_is_critical_with_everything_excluded(rec):
    answer = ask(rec, age=0)
    assert "infant" in codes(answer) and answer["recommendations"] == []
    assert set(excluded(answer)) == set(KB.form_ids)
    assert codes(answer)[0] == "infant"  # critical first


@pytest.mark.parametrize(("age", "limit"), [(1, 65), (3, 65), (4, 110), (8, 110), (9, 350), (40, 350), (120, 350)])
def test_dose_is_capped_by_the_age_upper_limit(rec, age, limit):
    answer = ask(rec, age=age)
    assert {r["dose"]["elemental_mg_per_day"]["max"] for r in answer["recommendations"]} == {limit}
    assert ("child_dose_limit" in codes(answer)) == (age <= 8)


def test_compound_dose_follows_the_elemental_fraction(rec):
    answer = ask(rec)
    for recommendation in answer["recommendations"]:
        form = next(f for f in KB.forms if f.id == recommendation["form"])
        fraction = form.attributes["elemental_fraction"].value
        dose = recommendation["dose"]
        assert dose["compound_mg_per_day"]["max"] == round(dose["elemental_mg_per_day"]["max"] / fraction)


def test_max_units_per_day_lowers_the_dose_and_flags_the_burden(rec):
    answer = ask(rec, preferences={"avoid_forms": [], "max_units_per_day": 1})
    threonate = next(r for r in answer["recommendations"] if r["form"] == "l_threonate")
    assert threonate["dose"]["elemental_mg_per_day"]["max"] == 48
    assert "high_unit_burden" in [c["code"] for c in threonate["caveats"]]
    oxide = next(r for r in answer["recommendations"] if r["form"] == "oxide")
    assert oxide["dose"]["elemental_mg_per_day"]["max"] == 241
    assert "high_unit_burden" not in [c["code"] for c in oxide["caveats"]]


def test_avoided_forms_are_excluded(rec):
    answer = ask(rec, goals=["sleep"], preferences={"avoid_forms": ["glycinate", "oxide"], "max_units_per_day": None})
    assert excluded(answer) == {"glycinate": ["avoided_by_user"], "oxide": ["avoided_by_user"],
                                "sulfate": ["not_for_daily_use"]}


@pytest.mark.parametrize("condition", ["diarrhea", "ibs_d"])
def test_diarrhoea_excludes_laxative_forms(rec, condition):
    answer = ask(rec, conditions=[condition])
    assert set(excluded(answer)) == LAXATIVE
    assert all("may_worsen_diarrhea" in reasons for reasons in excluded(answer).values())


def test_sensitive_stomach_ranks_laxatives_below_every_non_laxative(rec):
    answer = ask(rec, conditions=["sensitive_stomach", "constipation"], goals=["constipation_relief"])
    ranked = [r["form"] for r in answer["recommendations"]]
    assert ranked[0] not in LAXATIVE
    first_laxative = min(ranked.index(form) for form in LAXATIVE)
    assert all(form not in LAXATIVE for form in ranked[:first_laxative])
    for recommendation in answer["recommendations"]:
        if recommendation["form"] in LAXATIVE:
            assert "may_worsen_diarrhea" in [c["code"] for c in recommendation["caveats"]]
            assert recommendation["status"] == "caution"


def test_sensitive_stomach_with_only_laxatives_left_excludes_them(rec):
    non_laxative = [form for form in KB.form_ids if form not in LAXATIVE]
    answer = ask(rec, conditions=["sensitive_stomach"],
                 preferences={"avoid_forms": non_laxative, "max_units_per_day": None})
    assert answer["recommendations"] == []
    assert all(excluded(answer)[form] == ["may_worsen_diarrhea"] for form in LAXATIVE - OCCASIONAL)
    assert all(excluded(answer)[form] == ["not_for_daily_use"] for form in OCCASIONAL)


@pytest.mark.parametrize(("profile", "code"), [
    ({"pregnant": True}, "pregnancy"), ({"breastfeeding": True}, "breastfeeding"),
    ({"conditions": ["leg_cramps"]}, "cramps_evidence_limited"),
    ({"conditions": ["muscle_spasms"]}, "cramps_evidence_limited"), ({"goals": ["cramps"]}, "cramps_evidence_limited"),
    ({"conditions": ["migraine"]}, "dose_above_upper_limit_in_studies"),
    ({"goals": ["migraine_prevention"]}, "dose_above_upper_limit_in_studies"),
    ({"conditions": ["myasthenia_gravis"]}, "myasthenia_gravis"), ({"conditions": ["heart_block"]}, "heart_block"),
])
def test_profile_caveats(rec, profile, code):
    answer = ask(rec, **profile)
    assert code in codes(answer)
    severity = next(c["severity"] for c in answer["caveats"] if c["code"] == code)
    assert severity == KB.caveats[code].severity


def test_caveats_are_sorted_most_severe_first(rec):
    answer = ask(rec, egfr=20, pregnant=True, goals=["cramps"])
    severities = [vocab.SEVERITIES.index(c["severity"]) for c in answer["caveats"]]
    assert severities == sorted(severities, reverse=True)


@pytest.mark.parametrize(("name", "drug_class"), [
    ("doxycycline", "tetracycline"), ("Synthroid", "levothyroxine"), ("  LEVOTHYROXINE  ", "levothyroxine"),
    ("rxcui:10582", "levothyroxine"), ("RxCUI: 3640", "tetracycline"), ("ciprofloxacin 500 mg", "fluoroquinolone"),
    ("Omeprazole magnesium", "ppi"), ("Nexium", "ppi"), ("lasix", "loop_diuretic"), ("HCT", "thiazide_diuretic"),
    ("Aldactone", "potassium_sparing_diuretic"), ("Lanoxin", "digoxin"), ("Neurontin", "gabapentin"),
    ("Tivicay", "integrase_inhibitor"), ("Fosamax", "bisphosphonate"),
])
def test_medicines_resolve_by_generic_brand_case_strength_and_rxcui(rec, name, drug_class):
    answer = ask(rec, medications=[name])
    assert [(i["medication"], i["drug_class"]) for i in answer["interactions"]] == [(name, drug_class)]
    assert answer["unrecognized_medications"] == []
    assert "medication_interaction" in codes(answer)


def test_a_combination_product_yields_both_classes(rec):
    answer = ask(rec, medications=["Dyazide"])
    assert {i["drug_class"] for i in answer["interactions"]} == {"potassium_sparing_diuretic", "thiazide_diuretic"}


def test_interaction_severity_is_the_highest_of_the_medicines(rec):
    info_only = ask(rec, medications=["omeprazole"])
    caveat = next(c for c in info_only["caveats"] if c["code"] == "medication_interaction")
    assert caveat["severity"] == "info" and info_only["max_severity"] == "info"
    mixed = ask(rec, medications=["omeprazole", "doxycycline"])
    caveat = next(c for c in mixed["caveats"] if c["code"] == "medication_interaction")
    assert caveat["severity"] == "warning" and mixed["max_severity"] == "warning"


def test_separation_hours_come_from_the_data(rec):
    answer = ask(rec, medications=["doxycycline", "levothyroxine"])
    hours = {i["drug_class"]: i["separation_hours"] for i in answer["interactions"]}
    # A magnesium medicine's SmPC (emc 2678, 4.5): tetracycline and magnesium "separated by 2 to
    # 3 hours or more", the upper end; SYNTHROID: not within 4 hours of antacids.
    assert hours["tetracycline"] == {"before_magnesium": 3, "after_magnesium": 3}
    assert hours["levothyroxine"] == {"before_magnesium": 4, "after_magnesium": 4}
    tetracycline = next(i for i in answer["interactions"] if i["drug_class"] == "tetracycline")
    assert "3 hours before magnesium, or 3 hours after it" in tetracycline["text"]  # the text and the hours agree


def test_unknown_medicines_are_echoed_once_and_flagged(rec):
    answer = ask(rec, medications=["zzq-unknown", "doxycycline", "zzq-unknown", "rxcui:999999999"])
    assert answer["unrecognized_medications"] == ["zzq-unknown", "rxcui:999999999"]
    assert "medication_unrecognized" in codes(answer)
    assert answer["max_severity"] == "warning"


def test_reasons_explain_the_leading_contributions(rec):
    answer = ask(rec, goals=["sleep"])
    top = answer["recommendations"][0]
    assert top["form"] == "glycinate"
    assert {"factor": "sleep", "effect": "+", "text": "Evidence or a plausible mechanism for sleep"} in top["reasons"]
    oxide = next(r for r in answer["recommendations"] if r["form"] == "oxide")
    poorly_absorbed = {"factor": "absorption", "effect": "-", "text": "Poorly absorbed compared with most forms"}
    assert poorly_absorbed in oxide["reasons"]
    assert "low_absorption" in [c["code"] for c in oxide["caveats"]]
    assert all(len(r["reasons"]) <= KB.rules["reasons"]["max_reasons"] for r in answer["recommendations"])


def test_scores_are_the_logistic_of_the_weighted_features(rec):
    profile = {"age": 40, "egfr": 90, "conditions": ["constipation"], "goals": ["sleep"]}
    batch = rec.batch([profile])
    scored = rec.score(batch)
    engine = rec.engine
    utility = scored.features[0] @ engine.weights @ engine.centred_attributes.T
    assert np.allclose(scored.scores[0], 1 / (1 + np.exp(-utility)))
    features = dict(zip(FEATURE_NAMES, scored.features[0], strict=True))
    assert features["always"] == 1 and features["condition:constipation"] == 1 and features["goal:sleep"] == 1


def test_contributions_sum_to_the_utility(rec):
    batch = rec.batch([{"age": 70, "egfr": 45, "conditions": ["insomnia", "constipation"], "goals": ["sleep"]}])
    scored = rec.score(batch)
    terms = rec.engine.contribution_terms(scored.features[0], range(len(KB.form_ids)))
    for form in range(len(KB.form_ids)):
        total = sum(value for _, _, value in terms[form])
        utility = np.log(scored.scores[0, form] / (1 - scored.scores[0, form]))
        assert total == pytest.approx(utility, abs=1e-4)  # utilities are quantised to 2**-20


def test_the_limit_caps_the_recommendations(rec):
    assert len(ask(rec, limit=1)["recommendations"]) == 1
    assert len(ask(rec, limit=3)["recommendations"]) == 3


def test_the_word_feature_columns_are_the_conditions_then_the_goals():
    """The engine reads its word-triggered rules from these columns of the feature matrix."""
    expected = tuple(f"condition:{word}" for word in vocab.CONDITIONS) + tuple(f"goal:{word}" for word in vocab.GOALS)
    assert FEATURE_NAMES[WORD_FEATURES] == expected


def test_the_compiled_loop_returns_the_scored_batch_fields_in_their_order():
    """Engine.score hands the loop's arrays to ScoredBatch by position."""
    scored_fields = [field.name for field in dataclasses.fields(ScoredBatch)]
    assert list(ScoredArrays._fields) == scored_fields[: len(ScoredArrays._fields)]
    assert scored_fields[len(ScoredArrays._fields):] == ["batch"]


def test_an_age_outside_the_tables_is_refused_not_read_out_of_bounds(rec):
    """The compiled loop does not check bounds by itself: it checks the two indexes that come
    from profiles (validated long before, so this is a second line of defence)."""
    batch = rec.batch([{"age": 40}])
    batch.age[0] = 500
    with pytest.raises(IndexError):
        rec.score(batch)
    batch.age[0], batch.max_units_per_day[0] = 40, 999
    with pytest.raises(IndexError):
        rec.score(batch)


def test_a_batch_made_for_other_forms_is_refused_not_read_out_of_bounds(rec):
    """The loop reads the avoided forms from the batch's flags by position: a batch with a
    different number of forms (made for another knowledge base) must not be scored."""
    batch = rec.batch([{"age": 40}])
    narrow = ProfileBatch(batch.whole_numbers, batch.measurements, batch.flags[:, :-1])
    with pytest.raises(ValueError, match="not made for this engine"):
        rec.score(narrow)
