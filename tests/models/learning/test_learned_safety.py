"""Learning cannot break the contract's hard rules: a ranker trained on adversarial
preferences (oxide first at eGFR 20, citrate first with diarrhoea, laxatives first with a
sensitive stomach, the avoided form first, oxide for an infant) really prefers the forbidden
forms, and still every answer obeys every hard rule, whether its weights are used directly or
loaded from an artifact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formwise.models.engine.scoring import Engine
from formwise.models.knowledge.base import FEATURE_NAMES
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.learning.artifact import TrainingResult, save_artifact
from formwise.models.learning.ranker import PairwisePreferenceRanker, pair_rows
from formwise.models.learning.training import new_ranker
from formwise.models.recommender import Recommender
from tests.models.engine.test_safety_properties import check_hard_rules
from tests.models.profiles import profiles

KB = default_knowledge_base()
ENGINE = Engine(KB)
LAXATIVE = [form.id for form in KB.forms if form.laxative]


def profile(**fields) -> dict:
    return {"age": 40, "sex": "unspecified", "pregnant": False, "breastfeeding": False, "egfr": None, "dialysis": False,
            "conditions": [], "goals": [], "medications": [],
            "preferences": {"avoid_forms": [], "max_units_per_day": None}} | fields


# (profile, the forms an adversary wants first): each contradicts a hard rule.
ADVERSARIAL = [
    (profile(age=70, egfr=20.0, goals=["constipation_relief"]), ["oxide", "hydroxide"]),
    (profile(age=62, dialysis=True), ["oxide", "citrate"]),
    (profile(age=50, egfr=45.0, conditions=["constipation"]), ["oxide", "hydroxide"]),
    (profile(age=30, egfr=100.0, conditions=["diarrhea"]), ["citrate", "sulfate"]),
    (profile(age=30, conditions=["ibs_d"]), ["oxide", "citrate"]),
    (profile(age=30, conditions=["sensitive_stomach"]), ["citrate", "oxide", "hydroxide"]),
    (profile(age=40, goals=["sleep"], preferences={"avoid_forms": ["glycinate"], "max_units_per_day": None}),
     ["glycinate"]),
    (profile(age=0), ["oxide"]),
    (profile(age=2, egfr=100.0, conditions=["constipation"]), ["oxide", "sulfate"]),
]


def adversarial_pairs() -> tuple[np.ndarray, np.ndarray]:
    """Each wanted form over every other form, for each profile: no eligibility filter, so
    the data asks for exactly what the rules forbid."""
    recommender = Recommender(KB, artifact=None)
    features = recommender.score(recommender.batch([p for p, _ in ADVERSARIAL])).features
    rows, labels = [], []
    for case, (_, wanted) in enumerate(ADVERSARIAL):
        for rank, form_id in enumerate(wanted):
            winner = KB.form_ids.index(form_id)
            for loser, other in enumerate(KB.form_ids):
                if other in wanted[: rank + 1]:
                    continue
                difference = ENGINE.centred_attributes[winner] - ENGINE.centred_attributes[loser]
                rows.append(pair_rows(features[case : case + 1], difference[None, :])[0])
                labels.append(1)
    X, y = np.array(rows), np.array(labels)
    X[1::2] *= -1.0
    y[1::2] = 0
    return X, y


@pytest.fixture(scope="module", params=["production_recipe", "unconstrained"])
def adversarial_ranker(request) -> PairwisePreferenceRanker:
    X, y = adversarial_pairs()
    if request.param == "production_recipe":
        ranker = new_ranker(ENGINE, alpha=1.0)
    else:  # every weight free, signs may flip: the worst a learned model could do
        ranker = PairwisePreferenceRanker(prior_weights=ENGINE.hand_set_weights, alpha=0.01)
    return ranker.fit(X, y)


@pytest.fixture(scope="module")
def adversarial_weights(adversarial_ranker) -> np.ndarray:
    return adversarial_ranker.weights_


def raw_order(weights: np.ndarray) -> list[list[str]]:
    """Each adversarial profile's forms by utility alone, best first: what an answer would
    show without the safety masks."""
    recommender = Recommender(KB, artifact=None)
    features = recommender.score(recommender.batch([case for case, _ in ADVERSARIAL])).features
    utility = features @ weights @ ENGINE.centred_attributes.T
    return [[KB.form_ids[form] for form in row] for row in np.argsort(-utility, axis=1, kind="stable")]


def test_the_adversarial_training_really_prefers_the_forbidden_forms(adversarial_weights):
    """Without the masks these weights would do harm, so the next tests mean something."""
    learned, hand_set = raw_order(adversarial_weights), raw_order(ENGINE.hand_set_weights)
    for (case, wanted), learned_order, hand_set_order in zip(ADVERSARIAL, learned, hand_set, strict=True):
        assert learned_order.index(wanted[0]) <= min(3, hand_set_order.index(wanted[0])), case
        if set(case["conditions"]) & {"diarrhea", "ibs_d", "sensitive_stomach"}:
            assert learned_order[0] in LAXATIVE, case  # rule 5 would break without its mask
    assert sum(order.index(wanted[0]) < hand_set_order.index(wanted[0])
               for (_, wanted), order, hand_set_order in zip(ADVERSARIAL, learned, hand_set, strict=True)) >= 6


def test_every_adversarial_case_still_obeys_every_hard_rule(adversarial_weights):
    adversarial = Recommender(KB, weights=adversarial_weights, model_version="adversarial")
    for case, _ in ADVERSARIAL:
        answer = adversarial.recommend([case], limit=20)[0]
        check_hard_rules(case, answer)


@settings(max_examples=150, deadline=None)
@given(case=profiles, limit=st.integers(1, 20))
def test_any_profile_obeys_every_hard_rule_under_adversarial_weights(adversarial_weights, case, limit):
    answer = Recommender(KB, weights=adversarial_weights, model_version="adversarial").recommend([case], limit)[0]
    check_hard_rules(case, answer)


def test_an_adversarial_artifact_loaded_by_the_service_path_obeys_every_hard_rule(tmp_path, adversarial_ranker):
    metadata = {"model_version": "adversarial-test", "feature_names": list(FEATURE_NAMES),
                "attribute_names": list(ENGINE.attribute_names), "knowledge_base_version": KB.version}
    path = save_artifact(TrainingResult(adversarial_ranker, metadata), tmp_path / "ranker.npz")
    loaded = Recommender(KB, artifact=path, trusted_dir=tmp_path)
    assert loaded.model_version == "adversarial-test"
    assert np.array_equal(loaded.engine.weights, adversarial_ranker.weights_)
    for case, _ in ADVERSARIAL:
        check_hard_rules(case, loaded.recommend([case], limit=20)[0])
