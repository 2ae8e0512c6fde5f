"""``formwise train`` and ``formwise evaluate`` as the README runs them (never over the
shipped artifact: every test writes to its own folder)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from formwise.models.engine.scoring import Engine
from formwise.models.knowledge.base import FEATURE_NAMES
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.learning.artifact import ACTIVE_ARTIFACT, load_artifact
from formwise.models.recommender import Recommender
from formwise.service.cli.main import main

KB = default_knowledge_base()


@pytest.fixture(scope="module")
def evaluation():
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["evaluate", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_evaluate_json_has_the_issue_shape(evaluation):
    assert {"learned", "hand_set", "folds"} <= set(evaluation)
    assert evaluation["folds"] == 5
    for model in ("learned", "hand_set"):
        assert set(evaluation[model]) == {"ndcg_at_3", "pairwise_accuracy"}
        assert all(0.0 <= value <= 1.0 for value in evaluation[model].values())
    assert len(evaluation["per_fold"]) == 5
    assert evaluation["learned"]["ndcg_at_3"] >= evaluation["hand_set"]["ndcg_at_3"]


def test_evaluate_prints_a_readable_comparison(runner, evaluation):
    result = runner.invoke(main, ["evaluate", "--folds", "3", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "3 folds (seed 1)" in result.output
    assert "NDCG@3" in result.output and "pairwise accuracy" in result.output and "hand-set" in result.output


def test_train_writes_an_artifact_the_recommender_loads(runner, tmp_path):
    before = ACTIVE_ARTIFACT.read_bytes()
    output = tmp_path / "ranker.npz"
    result = runner.invoke(main, ["train", "--output", str(output), "--folds", "2"])
    assert result.exit_code == 0, result.output
    artifact = load_artifact(output, trusted_dir=tmp_path)
    assert f"trained {artifact.model_version}" in result.output and f"wrote {output}" in result.output
    assert "NDCG@3" in result.output
    assert Recommender(KB, artifact=output, trusted_dir=tmp_path).model_version == artifact.model_version
    assert ACTIVE_ARTIFACT.read_bytes() == before  # the shipped artifact is untouched


def test_bad_judgments_stop_training_with_the_row_and_field(runner, tmp_path):
    judgments = tmp_path / "judgments.csv"
    judgments.write_text("id,age,sex,pregnant,breastfeeding,egfr,dialysis,conditions,goals,medications,avoid_forms,"
                         "preferred_order,rationale,sources\n"
                         "B1,50,male,false,false,45,false,constipation,,,,oxide,Guideline,aga-acg2023\n")
    result = runner.invoke(main, ["train", "--judgments", str(judgments), "--output", str(tmp_path / "x.npz")])
    assert result.exit_code == 1
    assert "row 2, field 'preferred_order': 'oxide' is excluded" in result.output
    assert not (tmp_path / "x.npz").exists()


def test_train_with_feedback_learns_from_stored_outcomes(runner, tmp_path, database_url):
    from formwise.service.app import create_app
    from formwise.service.store import queries as storage
    from formwise.service.store.database import engine_of

    app = create_app({"TESTING": True, "DATABASE_URL": database_url})
    mint = app.extensions["formwise_answer_ids"].mint
    with app.app_context():
        signer = app.extensions["formwise_answer_ids"]
        before = sum(signer.read(item["recommendation_id"]) is not None for item in storage.list_outcomes())
        # Outcomes that disagree with the judgments (oxide did better), so that their effect shows.
        for _ in range(30):
            storage.record_outcome(mint(["glycinate"]), "glycinate", tolerated=False, helpful=1)
            storage.record_outcome(mint(["oxide"]), "oxide", tolerated=True, helpful=5)
    engine_of(app).dispose()

    plain, with_feedback = tmp_path / "plain" / "ranker.npz", tmp_path / "feedback" / "ranker.npz"
    result = runner.invoke(main, ["train", "--output", str(plain), "--folds", "2"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["train", "--with-feedback", "--output", str(with_feedback), "--folds", "2"],
                           env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert f"{before + 60} outcomes (1 pairs)" in result.output

    learned = load_artifact(with_feedback, trusted_dir=tmp_path)
    baseline = load_artifact(plain, trusted_dir=tmp_path)
    assert learned.metadata["outcome_pairs"] == 1 and learned.model_version != baseline.model_version
    # The population-level row moved the most, away from glycinate over oxide.
    always = FEATURE_NAMES.index("always")
    moved = np.abs(learned.ranker.weights_ - baseline.ranker.weights_).sum(axis=1)
    assert moved.argmax() == always
    attributes = Engine(KB).centred_attributes
    glycinate_over_oxide = attributes[KB.form_ids.index("glycinate")] - attributes[KB.form_ids.index("oxide")]
    preference = [artifact.ranker.weights_[always] @ glycinate_over_oxide for artifact in (baseline, learned)]
    assert preference[1] < preference[0]


def test_with_feedback_and_no_database_is_a_clear_error(runner, tmp_path):
    result = runner.invoke(main, ["train", "--with-feedback", "--output", str(tmp_path / "x.npz")],
                           env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/formwise"})
    assert result.exit_code == 1
    assert "cannot open the service database" in result.output


def test_two_thousand_forged_outcomes_change_nothing_in_training(runner, tmp_path, database_url):
    """Issue 19: rows with ids this service never issued (stored before feedback was
    checked, or written straight into the table) are left out of training: the artifact
    trained with them is the one trained without them."""
    from formwise.service.app import create_app
    from formwise.service.store import queries as storage
    from formwise.service.store.database import engine_of

    app = create_app({"TESTING": True, "DATABASE_URL": database_url})
    with app.app_context():
        stored_before = len(storage.list_outcomes())
    engine_of(app).dispose()
    clean, poisoned = tmp_path / "clean" / "ranker.npz", tmp_path / "poisoned" / "ranker.npz"
    result = runner.invoke(main, ["train", "--with-feedback", "--output", str(clean), "--folds", "2"],
                           env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output

    with app.app_context():
        for _ in range(1000):  # as in the attack: oxide "works", glycinate "fails"
            storage.record_outcome(str(uuid.uuid4()), "oxide", tolerated=True, helpful=5)
            storage.record_outcome(str(uuid.uuid4()), "glycinate", tolerated=False, helpful=1)
    engine_of(app).dispose()
    result = runner.invoke(main, ["train", "--with-feedback", "--output", str(poisoned), "--folds", "2"],
                           env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert f"of {stored_before + 2000} stored outcomes" in result.output

    a, b = load_artifact(clean, trusted_dir=tmp_path), load_artifact(poisoned, trusted_dir=tmp_path)
    assert a.metadata["outcomes"] == b.metadata["outcomes"]
    assert np.array_equal(a.ranker.weights_, b.ranker.weights_)
    assert a.metadata["metrics"] == b.metadata["metrics"]
