"""The ranker as a scikit-learn estimator, and as a learner: it recovers known weights from
synthetic preferences, stays at its prior without evidence, and keeps its constraints."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from formwise.models.learning.ranker import PairwisePreferenceRanker, pair_rows

N_FACTORS, N_ATTRIBUTES, N_FORMS = 6, 4, 9


@parametrize_with_checks([PairwisePreferenceRanker()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def synthetic_preferences(true_weights: np.ndarray, n_pairs: int, seed: int):
    """Profiles with a constant factor and random binary factors, random forms; each pair's
    label drawn from the logistic of the true utility difference."""
    rng = np.random.default_rng(seed)
    attributes = rng.uniform(0, 1, (N_FORMS, N_ATTRIBUTES))
    attributes -= attributes.mean(axis=0)
    features = np.column_stack([np.ones(n_pairs), rng.integers(0, 2, (n_pairs, N_FACTORS - 1))]).astype(float)
    first, second = rng.integers(0, N_FORMS, n_pairs), rng.integers(0, N_FORMS, n_pairs)
    X = pair_rows(features, attributes[first] - attributes[second])
    probability = 1 / (1 + np.exp(-(X @ true_weights.ravel())))
    y = (rng.uniform(size=n_pairs) < probability).astype(int)
    return X, y, features, attributes


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_pair_rows_are_the_flattened_outer_product():
    features = np.array([[1.0, 0.0, 1.0]])
    differences = np.array([[0.5, -2.0]])
    assert pair_rows(features, differences).tolist() == [[0.5, -2.0, 0.0, 0.0, 0.5, -2.0]]


def test_learning_recovers_known_weights_from_preferences():
    true_weights = np.random.default_rng(7).normal(0, 2, (N_FACTORS, N_ATTRIBUTES))
    X, y, features, attributes = synthetic_preferences(true_weights, 8_000, seed=1)
    ranker = PairwisePreferenceRanker(prior_weights=np.zeros_like(true_weights), alpha=0.01).fit(X, y)
    assert ranker.weights_.shape == true_weights.shape
    assert cosine(ranker.weights_, true_weights) > 0.98
    assert np.abs(ranker.weights_ - true_weights).max() < 0.5 * np.abs(true_weights).max()
    # The learned utilities order unseen profiles' forms as the true ones do.
    X_new, _, _, _ = synthetic_preferences(true_weights, 2_000, seed=2)
    truth = np.sign(X_new @ true_weights.ravel())
    assert np.mean(np.sign(ranker.decision_function(X_new)) == truth) > 0.95
    learned_utility = ranker.utility(features, attributes)
    assert np.allclose(learned_utility, features @ ranker.weights_ @ attributes.T)


def test_a_prior_with_the_right_proportions_keeps_them_and_learns_the_scale():
    true_weights = np.random.default_rng(3).normal(0, 2, (N_FACTORS, N_ATTRIBUTES))
    X, y, _, _ = synthetic_preferences(true_weights, 8_000, seed=4)
    prior = 0.5 * true_weights
    ranker = PairwisePreferenceRanker(prior_weights=prior, fit_prior_scale=True, alpha=100.0).fit(X, y)
    assert ranker.scale_ == pytest.approx(2.0, rel=0.15)
    assert cosine(ranker.weights_, prior) > 0.99
    assert np.allclose(ranker.coef_, ranker.scale_ * ranker.weights_.ravel())


def test_without_evidence_the_weights_are_the_prior():
    prior = np.random.default_rng(5).normal(0, 1, (N_FACTORS, N_ATTRIBUTES))
    X = np.zeros((10, prior.size))  # pairs of forms with identical attributes say nothing
    y = np.tile([0, 1], 5)
    ranker = PairwisePreferenceRanker(prior_weights=prior).fit(X, y)
    assert np.array_equal(ranker.weights_, prior)


def test_support_and_signs_hold_even_against_contrary_data():
    true_weights = np.random.default_rng(11).normal(0, 2, (N_FACTORS, N_ATTRIBUTES))
    X, y, _, _ = synthetic_preferences(true_weights, 5_000, seed=6)
    prior = true_weights
    support = np.zeros_like(prior, dtype=bool)
    support[:3] = True
    contrary = 1 - y  # every judgment reversed: the data wants every weight's sign flipped
    ranker = PairwisePreferenceRanker(prior_weights=prior, support=support, keep_prior_signs=True,
                                      alpha=0.1).fit(X, contrary)
    assert np.array_equal(ranker.weights_[~support], prior[~support])
    assert np.all(ranker.weights_ * np.sign(prior) >= 0)
    assert not np.allclose(ranker.weights_[support], prior[support])
    free = clone(ranker).set_params(keep_prior_signs=False).fit(X, contrary)
    assert np.any(free.weights_[support] * np.sign(prior[support]) < 0)


def test_score_is_the_share_of_pairs_in_the_judged_order():
    true_weights = np.random.default_rng(8).normal(0, 2, (N_FACTORS, N_ATTRIBUTES))
    X, y, _, _ = synthetic_preferences(true_weights, 1_000, seed=9)
    ranker = PairwisePreferenceRanker(alpha=0.1).fit(X, y)
    assert ranker.score(X, y) == pytest.approx(np.mean(ranker.predict(X) == y))
    assert np.allclose(ranker.predict_proba(X)[:, 1], 1 / (1 + np.exp(-ranker.decision_function(X))))


@pytest.mark.parametrize(("params", "message"), [
    ({"prior_weights": np.zeros((2, 2))}, "prior_weights has shape"),
    ({"support": np.ones(3, dtype=bool)}, "support has 3 entries"),
    ({"fit_prior_scale": True}, "fit_prior_scale needs non-zero prior_weights"),
    ({"alpha": 0.0}, "alpha must be a positive number"),
    ({"max_iter": 0}, "max_iter must be a positive integer"),
])
def test_bad_parameters_are_named(params, message):
    X = np.random.default_rng(0).normal(size=(20, 6))
    y = np.tile([0, 1], 10)
    with pytest.raises(ValueError, match=message):
        PairwisePreferenceRanker(**params).fit(X, y)
