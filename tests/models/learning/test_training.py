"""Judgments are validated on load and cover the contract's vocabulary; pairs, metrics and
cross-validation mean what they say; artifacts are atomic, trusted and versioned; the service
loads the shipped one and falls back to the hand-set weights, with a warning, otherwise."""

from __future__ import annotations

import csv
import io
import logging
import math
import uuid

import numpy as np
import pytest
from sklearn.base import clone

from formwise.models.engine.scoring import HAND_SET, Engine
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import FEATURE_NAMES, KnowledgeBaseError
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.learning.artifact import (
    ACTIVE_ARTIFACT,
    ArtifactError,
    TrainingResult,
    load_artifact,
    save_artifact,
)
from formwise.models.learning.training import (
    MAX_OUTCOME_WEIGHT_SHARE,
    JudgedCases,
    Judgment,
    cross_validate,
    file_sha256,
    fold_indices,
    judgments_path,
    load_judgments,
    ndcg_at_k,
    outcome_pairs,
    pairwise_accuracy,
    ranking_metrics,
    train,
)
from formwise.models.recommender import Recommender

KB = default_knowledge_base()
ENGINE = Engine(KB)
JUDGMENTS = load_judgments(KB)
HEADER = ("id,age,sex,pregnant,breastfeeding,egfr,dialysis,conditions,goals,medications,avoid_forms,"
          "preferred_order,rationale,sources")
GOOD_ROW = "X1,40,female,false,false,95,false,,sleep,,,glycinate;citrate,Sleep evidence,mah2021"


def profile(**fields) -> dict:
    return {"age": 40, "sex": "unspecified", "pregnant": False, "breastfeeding": False, "egfr": 90.0, "dialysis": False,
            "conditions": [], "goals": [], "medications": [],
            "preferences": {"avoid_forms": [], "max_units_per_day": None}} | fields


def judgment(order, **fields) -> Judgment:
    return Judgment("T", 2, profile(**fields), tuple(order), "test", ("mah2021",))


# ---- the shipped judgments ---------------------------------------------------------------


def test_the_shipped_judgments_cover_the_contract():
    assert len(JUDGMENTS) >= 150
    profiles = [j.profile for j in JUDGMENTS]
    assert {c for p in profiles for c in p["conditions"]} == set(vocab.CONDITIONS)
    assert {g for p in profiles for g in p["goals"]} == set(vocab.GOALS)
    classes = {vocab.INTERACTION_CLASSES[position] for p in profiles for name in p["medications"]
               for position in ENGINE.medicines.classes(ENGINE.medicines.resolve(name))}
    assert classes == set(vocab.INTERACTION_CLASSES)
    ages = [p["age"] for p in profiles]
    for low, high in ((0, 0), (1, 3), (4, 8), (9, 17), (18, 64), (65, 120)):
        assert any(low <= age <= high for age in ages), (low, high)
    egfrs = [p["egfr"] for p in profiles]
    assert None in egfrs and any(p["dialysis"] for p in profiles)
    for low, high in ((0, 30), (30, 60), (60, 251)):
        assert any(e is not None and low <= e < high for e in egfrs), (low, high)
    assert any(p["pregnant"] for p in profiles) and any(p["breastfeeding"] for p in profiles)
    assert any(p["preferences"]["avoid_forms"] for p in profiles)
    assert all(j.rationale and set(j.sources) <= set(KB.citations) for j in JUDGMENTS)


def write_judgments(tmp_path, *rows, header=HEADER):
    path = tmp_path / "judgments.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def row_with(**changes) -> str:
    """GOOD_ROW with some cells changed, written as CSV."""
    record = dict(zip(HEADER.split(","), next(csv.reader([GOOD_ROW])), strict=True)) | changes
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(record.values())
    return buffer.getvalue()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("conditions", "hiccups", "'hiccups' is not one of constipation"),
    ("goals", "sleep;sleep", "a word is listed twice"),
    ("preferred_order", "glycinate;unobtainium", "'unobtainium' is not one of citrate"),
    ("sources", "mah2021;nobody2099", "source id 'nobody2099' has no entry"),
    ("sources", "", "at least one source id"),
    ("rationale", "", "say why"),
    ("medications", "zzq-unknown", "'zzq-unknown' is not in data/medicines.csv"),
    ("age", "130", "130.0 is outside 0..120"),
    ("age", "40.5", "not a whole number"),
    ("pregnant", "yes", "'yes' is not one of"),
    ("egfr", "many", "'many' is not a number"),
])
def test_a_bad_cell_names_the_file_row_and_field(tmp_path, field, value, message):
    with pytest.raises(KnowledgeBaseError) as raised:
        load_judgments(KB, write_judgments(tmp_path, row_with(**{field: value})))
    assert f"judgments.csv, row 2, field '{field}'" in str(raised.value)
    assert message in str(raised.value)


@pytest.mark.parametrize(("changes", "message"), [
    ({"egfr": "20"}, "'glycinate' is excluded for this profile by the hard rules (kidney_impairment_severe)"),
    ({"egfr": "45", "preferred_order": "oxide;citrate"},
     "'oxide' is excluded for this profile by the hard rules (kidney_impairment_moderate)"),
    ({"conditions": "diarrhea", "preferred_order": "citrate"},
     "'citrate' is excluded for this profile by the hard rules (may_worsen_diarrhea)"),
    ({"conditions": "sensitive_stomach", "preferred_order": "citrate;glycinate"}, "may not come first"),
    ({"age": "0"}, "excluded for this profile by the hard rules (infant)"),
    ({"avoid_forms": "glycinate"}, "'glycinate' is excluded for this profile by the hard rules (avoided_by_user)"),
    ({"preferred_order": ""}, "is empty, but the hard rules leave forms to rank"),
])
def test_a_judgment_may_not_contradict_the_hard_rules(tmp_path, changes, message):
    with pytest.raises(KnowledgeBaseError, match="row 2, field 'preferred_order'") as raised:
        load_judgments(KB, write_judgments(tmp_path, row_with(**changes)))
    assert message in str(raised.value)


def test_duplicate_ids_and_missing_columns_are_named(tmp_path):
    with pytest.raises(KnowledgeBaseError, match="row 3, field 'id': duplicate id 'X1'"):
        load_judgments(KB, write_judgments(tmp_path, GOOD_ROW, GOOD_ROW))
    with pytest.raises(KnowledgeBaseError, match="field 'sources': required column is missing"):
        load_judgments(KB, write_judgments(tmp_path, GOOD_ROW.rsplit(",", 1)[0],
                                           header=HEADER.rsplit(",", 1)[0]))


def test_a_closed_profile_needs_an_empty_order(tmp_path):
    (loaded,) = load_judgments(KB, write_judgments(tmp_path, row_with(egfr="20", preferred_order="")))
    assert loaded.preferred_order == () and loaded.profile["egfr"] == 20.0
    assert len(JudgedCases.build((loaded,), ENGINE)) == 0  # nothing to rank, nothing to learn


# ---- pairs and metrics -------------------------------------------------------------------


def test_pairs_put_each_listed_form_over_later_and_unlisted_eligible_forms():
    cases = JudgedCases.build((judgment(["glycinate", "citrate"], egfr=45.0, goals=["sleep"]),), ENGINE)
    eligible = [form for form in KB.form_ids if form not in ("oxide", "hydroxide", "sulfate")]  # rules 2 and 7
    expected = {("glycinate", "citrate")} | {(listed, other) for listed in ("glycinate", "citrate")
                                              for other in eligible if other not in ("glycinate", "citrate")}
    _, winners, losers = cases.pair_indices()
    assert {(KB.form_ids[w], KB.form_ids[o]) for w, o in zip(winners, losers, strict=True)} == expected
    pairs = cases.pairs(ENGINE.centred_attributes)
    assert len(pairs) == len(expected) and set(pairs.y[::2]) == {1} and set(pairs.y[1::2]) == {0}
    attributes = ENGINE.centred_attributes
    first = np.outer(cases.features[0], attributes[winners[0]] - attributes[losers[0]]).ravel()
    second = np.outer(cases.features[0], attributes[winners[1]] - attributes[losers[1]]).ravel()
    assert np.array_equal(pairs.X[0], first) and np.array_equal(pairs.X[1], -second)
    features = dict(zip(FEATURE_NAMES, cases.features[0], strict=True))
    assert features["profile:kidney_moderate"] == 1 and features["goal:sleep"] == 1


def test_ndcg_at_3_uses_relevance_as_gain():
    relevance = np.array([[3.0, 2.0, 1.0, 0.0, 0.0]])
    ideal = 3 + 2 / math.log2(3) + 1 / 2
    assert ndcg_at_k(relevance, np.array([[0.9, 0.8, 0.7, 0.1, 0.0]])) == pytest.approx(1.0)
    swapped = (2 + 3 / math.log2(3) + 1 / 2) / ideal
    assert ndcg_at_k(relevance, np.array([[0.8, 0.9, 0.7, 0.1, 0.0]])) == pytest.approx(swapped)
    reversed_top = (0 + 0 / math.log2(3) + 1 / 2) / ideal
    assert ndcg_at_k(relevance, np.array([[0.1, 0.2, 0.7, 0.9, 0.8]])) == pytest.approx(reversed_top)


def test_pairwise_accuracy_counts_ties_as_half():
    cases = JudgedCases.build((judgment(["glycinate", "citrate"], egfr=45.0),), ENGINE)
    scores = np.zeros((1, len(KB.form_ids)))
    n_pairs = len(cases.pairs(ENGINE.centred_attributes))
    assert pairwise_accuracy(cases, scores) == 0.5
    scores[0, KB.form_ids.index("glycinate")] = 1.0  # now every glycinate pair is right, the rest tie
    glycinate_pairs = len(KB.form_ids) - 4  # every eligible form but glycinate (oxide, hydroxide, sulfate excluded)
    assert pairwise_accuracy(cases, scores) == pytest.approx((glycinate_pairs + 0.5 * (n_pairs - glycinate_pairs))
                                                             / n_pairs)


@pytest.fixture(scope="module")
def cross_validation():
    return cross_validate(JudgedCases.build(JUDGMENTS, ENGINE), ENGINE, folds=5, seed=0)


def test_learned_and_hand_set_are_scored_on_the_same_folds(cross_validation):
    cases = JudgedCases.build(JUDGMENTS, ENGINE)
    folds = fold_indices(len(cases), 5, 0)
    assert cross_validation["folds"] == 5 and cross_validation["cases"] == len(cases)
    for fold, (_, test_rows) in zip(cross_validation["per_fold"], folds, strict=True):
        assert fold["cases"] == len(test_rows)
        assert fold["hand_set"] == ranking_metrics(ENGINE.hand_set_weights, cases.subset(test_rows), ENGINE)
    for model in ("learned", "hand_set"):
        assert set(cross_validation[model]) == {"ndcg_at_3", "pairwise_accuracy"}
        assert all(0.0 <= value <= 1.0 for value in cross_validation[model].values())


def test_learning_from_the_judgments_beats_the_hand_set_weights_on_held_out_cases(cross_validation):
    assert cross_validation["learned"]["ndcg_at_3"] >= cross_validation["hand_set"]["ndcg_at_3"]
    assert cross_validation["learned"]["pairwise_accuracy"] >= cross_validation["hand_set"]["pairwise_accuracy"]


def test_folds_must_fit_the_cases():
    with pytest.raises(ValueError, match="folds must be between 2"):
        fold_indices(10, 11, 0)


# ---- outcomes ----------------------------------------------------------------------------


def outcomes_for(form: str, n: int, tolerated, helpful) -> list[dict]:
    return [{"recommendation_id": str(uuid.uuid4()), "form": form, "tolerated": tolerated, "helpful": helpful}
            for _ in range(n)]


def test_outcomes_teach_population_preferences_on_the_always_factor_only():
    outcomes = (outcomes_for("glycinate", 30, True, 5) + outcomes_for("glycinate", 10, None, 5)
                + outcomes_for("oxide", 30, False, 1) + outcomes_for("citrate", 5, True, 5)  # too few to compare
                + outcomes_for("malate", 30, True, None) + outcomes_for("malate", 5, None, None))  # nothing rated
    pairs = outcome_pairs(outcomes, ENGINE, judged_weight=1000.0)
    attributes = ENGINE.centred_attributes
    position = KB.form_ids.index
    expected = {(position("glycinate"), position("oxide")), (position("malate"), position("oxide"))}
    rows = pairs.X.reshape(len(pairs), len(FEATURE_NAMES), -1)
    assert np.count_nonzero(rows[:, 1:, :]) == 0  # only the always factor
    signed = np.where(pairs.y[:, None] == 1, rows[:, 0, :], -rows[:, 0, :])
    found = {(w, o) for w, o in expected for row in signed if np.allclose(row, attributes[w] - attributes[o])}
    assert found == expected and len(pairs) == 2
    assert set(pairs.case) == {-1}


def test_outcome_pairs_weigh_at_most_a_quarter_of_the_judgments_and_count_each_report_once():
    heavy = outcomes_for("glycinate", 400, True, 5) + outcomes_for("oxide", 400, False, 1)
    pairs = outcome_pairs(heavy, ENGINE, judged_weight=100.0)
    assert pairs.sample_weight.sum() == pytest.approx(MAX_OUTCOME_WEIGHT_SHARE * 100.0)
    repeated = [outcomes_for("glycinate", 1, True, 5)[0]] * 50 + outcomes_for("oxide", 30, False, 1)
    assert len(outcome_pairs(repeated, ENGINE, judged_weight=100.0)) == 0  # one glycinate report, not fifty


# ---- training and artifacts ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    return train(KB, JUDGMENTS, folds=2)


def test_training_describes_its_artifact(trained):
    import sklearn

    metadata = trained.metadata
    assert metadata["sklearn_version"] == sklearn.__version__
    assert metadata["judgments_sha256"] == file_sha256(judgments_path())
    assert len(metadata["training_data_sha256"]) == 64
    assert trained.model_version == f"pairwise-{metadata['training_data_sha256'][:12]}"
    assert metadata["metrics"]["folds"] == 2 and set(metadata["metrics"]["learned"]) == {"ndcg_at_3",
                                                                                         "pairwise_accuracy"}
    assert metadata["judged_cases"] == len(JUDGMENTS) and metadata["outcome_pairs"] == 0
    assert not np.array_equal(trained.ranker.weights_, ENGINE.hand_set_weights)
    again = train(KB, JUDGMENTS, folds=2)
    assert again.model_version == trained.model_version
    assert np.array_equal(again.ranker.weights_, trained.ranker.weights_)


def test_an_artifact_round_trips_and_is_what_the_recommender_uses(tmp_path, trained):
    path = save_artifact(trained, tmp_path / "ranker.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["ranker.npz"]
    loaded = load_artifact(path, trusted_dir=tmp_path)
    assert loaded.metadata == trained.metadata
    assert np.array_equal(loaded.ranker.weights_, trained.ranker.weights_)
    recommender = Recommender(KB, artifact=path, trusted_dir=tmp_path)
    assert recommender.model_version == trained.model_version
    assert np.array_equal(recommender.engine.weights, trained.ranker.weights_)
    answer = recommender.recommend([profile(goals=["sleep"])])[0]
    assert answer["model_version"] == trained.model_version


def test_a_failed_write_leaves_the_previous_artifact_whole(tmp_path, trained):
    path = save_artifact(trained, tmp_path / "ranker.npz")
    before = path.read_bytes()
    ranker = clone(trained.ranker)
    ranker.weights_ = trained.ranker.weights_
    ranker.cannot_be_saved_ = (step for step in range(3))  # skops cannot serialise a generator
    with pytest.raises(TypeError):
        save_artifact(TrainingResult(ranker, trained.metadata), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ranker.npz"]


def test_artifacts_are_read_only_from_the_trusted_folder_and_with_trusted_types(tmp_path, trained):
    from fractions import Fraction

    import skops.io

    outside = save_artifact(trained, tmp_path / "elsewhere" / "ranker.npz")
    with pytest.raises(ArtifactError, match="outside the trusted artifact folder"):
        load_artifact(outside, trusted_dir=tmp_path / "trusted")
    arrays = dict(np.load(save_artifact(trained, tmp_path / "good.npz")))

    def write(name, **changes):
        np.savez(tmp_path / name, **(arrays | changes))
        return tmp_path / name

    foreign = write("foreign.npz", estimator_skops=np.frombuffer(skops.io.dumps(Fraction(1, 3)), dtype=np.uint8))
    with pytest.raises(ArtifactError, match=r"not trusted: \['fractions.Fraction'\]"):
        load_artifact(foreign, trusted_dir=tmp_path)
    with pytest.raises(ArtifactError, match="weights differ from its estimator's"):
        load_artifact(write("tampered.npz", weights=arrays["weights"] * 2), trusted_dir=tmp_path)
    with pytest.raises(ArtifactError, match="is format 99, not 2"):
        load_artifact(write("other.npz", artifact_format=np.array(99)), trusted_dir=tmp_path)
    pickled = write("pickled.npz", metadata=np.array([{"model_version": "x"}], dtype=object))
    with pytest.raises(ArtifactError, match="cannot be read: ValueError: Object arrays cannot be loaded"):
        load_artifact(pickled, trusted_dir=tmp_path)  # NumPy's reader refuses pickles
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ArtifactError, match="cannot be read"):
        load_artifact(garbage, trusted_dir=tmp_path)


@pytest.mark.parametrize("problem", ["missing", "other_attributes", "garbage"])
def test_the_recommender_falls_back_to_the_hand_set_weights_with_a_warning(tmp_path, trained, caplog, problem):
    path = tmp_path / "ranker.npz"
    if problem == "other_attributes":
        changed = TrainingResult(trained.ranker, trained.metadata | {"attribute_names": ["absorption"]})
        save_artifact(changed, path)
    elif problem == "garbage":
        path.write_bytes(b"PK\x03\x04 truncated")
    with caplog.at_level(logging.WARNING, logger="formwise.model"):
        recommender = Recommender(KB, artifact=path, trusted_dir=tmp_path)
    assert recommender.model_version == HAND_SET
    assert np.array_equal(recommender.engine.weights, ENGINE.hand_set_weights)
    assert recommender.recommend([profile()])[0]["model_version"] == HAND_SET
    assert "scoring with the hand-set weights" in caplog.text


def test_the_service_loads_the_shipped_artifact_trained_on_the_shipped_judgments():
    shipped = load_artifact(ACTIVE_ARTIFACT)
    assert Recommender().model_version == shipped.model_version != HAND_SET
    assert shipped.metadata["judgments_sha256"] == file_sha256(judgments_path()), "retrain: formwise train"
    metrics = shipped.metadata["metrics"]
    assert metrics["learned"]["ndcg_at_3"] >= metrics["hand_set"]["ndcg_at_3"]
    assert ACTIVE_ARTIFACT.stat().st_size < 64 * 1024
