"""The contract's hard safety rules as properties over random profiles, with the
hand-set weights and with random (even adversarial) weights: no weight can break them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formwise.models.engine.features import feature_matrix
from formwise.models.engine.scoring import EXCLUSION_BIT
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.recommender import Recommender
from tests.contract_rules import check_contract
from tests.models.profiles import profiles

KB = default_knowledge_base()
HAND_SET = Recommender(KB, artifact=None)
ACTIVE = Recommender(KB)  # the shipped learned model when its artifact loads
SHAPE = HAND_SET.engine.weights.shape
LAXATIVE = {form.id for form in KB.forms if form.laxative}


def random_recommender(seed: int) -> Recommender:
    rng = np.random.default_rng(seed)
    return Recommender(KB, weights=rng.normal(0, 5, SHAPE), model_version=f"random-{seed}")


RECOMMENDERS = [HAND_SET, ACTIVE] + [random_recommender(seed) for seed in range(3)]


def check_hard_rules(profile: dict, answer: dict) -> None:
    check_contract(profile, answer, KB.form_ids, LAXATIVE)


@pytest.mark.parametrize("recommender", RECOMMENDERS, ids=lambda r: r.model_version)
@settings(max_examples=300, deadline=None)
@given(profile=profiles, limit=st.integers(1, 20))
def test_hard_rules_hold_for_any_profile_and_any_weights(recommender, profile, limit):
    answer = recommender.recommend([profile], limit=limit, explain=limit % 2 == 0)[0]
    check_hard_rules(profile, answer)
    eligible = len(KB.form_ids) - len(answer["excluded"])
    assert len(answer["recommendations"]) == min(limit, eligible)


@settings(max_examples=100, deadline=None)
@given(profile=profiles)
def test_rule_6_same_request_same_answer(profile):
    first = HAND_SET.recommend([profile], limit=20)[0]
    again = Recommender(KB, artifact=None).recommend([profile], limit=20)[0]
    assert first == again


@settings(max_examples=50, deadline=None)
@given(batch=st.lists(profiles, min_size=1, max_size=30))
def test_a_batch_answers_each_profile_as_if_alone(batch):
    together = HAND_SET.recommend(batch, limit=5)
    alone = [HAND_SET.recommend([profile], limit=5)[0] for profile in batch]
    assert together == alone


def test_safety_holds_even_when_weights_push_hard_for_the_forbidden_form():
    """Adversarial: weights that make oxide and the laxatives win by a mile."""
    engine = HAND_SET.engine
    weights = np.zeros(SHAPE)
    laxative_column = engine.attribute_names.index("laxative_strength")
    weights[:, laxative_column] = 50.0
    adversarial = Recommender(KB, weights=weights, model_version="adversarial")
    cases = [
        {"age": 70, "egfr": 20, "goals": ["constipation_relief"]},
        {"age": 50, "egfr": 45, "conditions": ["constipation"]},
        {"age": 30, "egfr": 100, "conditions": ["diarrhea"]},
        {"age": 30, "egfr": 100, "conditions": ["sensitive_stomach"]},
        {"age": 30, "conditions": ["ibs_d"], "preferences": {"avoid_forms": ["glycinate"]}},
        {"age": 2, "egfr": 100, "conditions": ["constipation"]},
        {"age": 0},
    ]
    for case in cases:
        profile = {"sex": "unspecified", "pregnant": False, "breastfeeding": False, "egfr": None, "dialysis": False,
                   "conditions": [], "goals": [], "medications": [],
                   "preferences": {"avoid_forms": [], "max_units_per_day": None}} | case
        check_hard_rules(profile, adversarial.recommend([profile], limit=20)[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(profiles, min_size=1, max_size=40))
def test_the_scoring_loop_records_the_factors_the_feature_matrix_has(batch_profiles):
    """The loop records each profile's factors as bits (what answers explain from); they
    must be the feature matrix built on its own, and explain the same terms."""
    engine = RECOMMENDERS[0].engine
    batch = RECOMMENDERS[0].batch(batch_profiles)
    scored = engine.score(batch)
    built = feature_matrix(batch, scored.kidney_moderate, KB.rules)
    assert np.array_equal(scored.features, built)
    forms = range(len(engine.form_ids))
    for row, bits in enumerate(scored.feature_bits.tolist()):
        assert engine.contribution_terms_of_bits(bits, forms, 4, 0.05) == engine.contribution_terms(
            built[row], forms, 4, 0.05)


@settings(max_examples=60, deadline=None)
@given(st.lists(profiles, min_size=1, max_size=40), st.sampled_from(range(len(RECOMMENDERS))))
def test_the_key_tables_give_exactly_the_full_product(batch_profiles, which):
    """The engine adds the words' product to a looked-up row per profile key instead of
    multiplying the whole feature matrix: the utilities must agree bit for bit, and the key
    tables' exclusions, caveats and caution must be those of the profile's band and age."""
    engine = RECOMMENDERS[which].engine
    batch = RECOMMENDERS[which].batch(batch_profiles)
    scored = engine.score(batch)
    band = np.where(batch.dialysis, engine.dialysis_band,
                    np.searchsorted(engine.band_upper_edges, batch.egfr, side="right"))  # NaN: the last row
    key = ((band * engine.ages + batch.age) * 2 + batch.pregnant) * 2 + batch.breastfeeding
    words = np.concatenate([batch.conditions, batch.goals], axis=1, dtype=np.float64)
    from_tables = words @ engine.word_products[:, : len(engine.form_ids)] + engine.key_utility[key]
    assert np.array_equal(from_tables, scored.features @ engine.feature_to_form)

    assert np.array_equal(scored.kidney_moderate, engine.key_kidney_moderate[key])
    infant = batch.age < KB.rules["age_groups"]["infant_below"]
    band_applies = batch.age >= engine.band_excluded_from_age[band]  # rule 7: the unknown band from 65
    too_young = (batch.age < KB.rules["occasional_use"]["min_age"])[:, None] & engine.occasional  # rule 8
    expected_bits = (np.where(band_applies[:, None], engine.band_exclusion_bits[band], 0).astype(np.uint8)
                     | np.where(infant, EXCLUSION_BIT["infant"], 0).astype(np.uint8)[:, None]
                     | np.where(too_young, EXCLUSION_BIT["not_for_daily_use"], 0).astype(np.uint8))
    assert np.array_equal(engine.key_exclusion_bits[key], expected_bits)
    assert np.array_equal(engine.key_kidney_moderate[key], engine.band_is_moderate[band])
    caveats = engine.key_caveats[key]
    for code, expected in (("consult_clinician", np.ones(len(batch), bool)), ("infant", infant),
                           ("pregnancy", batch.pregnant), ("breastfeeding", batch.breastfeeding)):
        assert np.array_equal(caveats[:, vocab.ANSWER_CAVEATS.index(code)], expected), code


@settings(max_examples=60, deadline=None)
@given(st.lists(profiles, min_size=1, max_size=40), st.sampled_from(range(len(RECOMMENDERS))))
def test_the_compiled_loop_scores_and_ranks_as_the_formula_says(batch_profiles, which):
    """models/engine/kernel.py against the formula written with NumPy: scores are the logistic of the
    full product (to within the last bit of exp), except the laxative forms rule 5 scales down
    for a sensitive gut and the occasional-use forms rule 8 scales below the other laxatives;
    eligible forms lead, best first, ties in knowledge-base order."""
    engine = RECOMMENDERS[which].engine
    batch = RECOMMENDERS[which].batch(batch_profiles)
    scored = engine.score(batch)
    expected = 1.0 / (1.0 + np.exp(-(scored.features @ engine.feature_to_form)))
    sensitive_columns = [vocab.CONDITIONS.index(c) for c in vocab.CONTRACT_GI_SENSITIVE_CONDITIONS]
    sensitive = batch.conditions[:, sensitive_columns].any(axis=1)
    differs = ~np.isclose(scored.scores, expected, rtol=1e-15, atol=0)
    assert not (differs & ~((sensitive[:, None] & engine.laxative) | engine.occasional)).any()
    assert (scored.scores[differs] < expected[differs]).all()

    eligible = scored.exclusion_bits == 0
    assert np.array_equal(scored.eligible_count, eligible.sum(axis=1))
    for row in range(len(batch)):
        ranked = sorted(np.flatnonzero(eligible[row]), key=lambda form: -scored.scores[row, form])
        rest = np.flatnonzero(~eligible[row]).tolist()
        assert scored.order[row].tolist() == ranked + rest
