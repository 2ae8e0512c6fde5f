"""A scikit-learn estimator that learns the engine's utility weights from pairwise preferences.

The hand-set weights in ``data/`` are a clinician's prior; judged cases and reported outcomes
say where they put forms in the wrong order. The learned model keeps the engine's shape, so
learning changes numbers only, never the safety masks the engine applies after scoring::

    utility(profile, form) = features @ W @ centred_attributes[form]

"Form a is preferred to form b for this profile" is a logistic model on the difference of the
two utilities, which is linear in W::

    utility_a - utility_b = sum(W * outer(features, attributes_a - attributes_b))

so one preference is one row ``x = outer(features, attributes_a - attributes_b).ravel()``
labelled 1 (the mirrored row ``-x`` labelled 0 says the same). The fit is L2-regularised
towards the prior weights: without data the answer is the prior, and the more judgments there
are the further the data may move it. Entries outside ``support`` never move, and with
``keep_prior_signs`` a weight may grow or shrink but never flip, so the reason text written for
each weight ("better absorbed than most forms") stays true of the learned model.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
from threadpoolctl import threadpool_limits


def pair_rows(features: np.ndarray, attribute_differences: np.ndarray) -> np.ndarray:
    """One training row per preference: outer(features_i, attribute_differences_i), flattened
    in the order of ``W.ravel()`` (features x attributes)."""
    features = np.asarray(features, dtype=np.float64)
    attribute_differences = np.asarray(attribute_differences, dtype=np.float64)
    return np.einsum("nk,nm->nkm", features, attribute_differences).reshape(len(features), -1)


class PairwisePreferenceRanker(ClassifierMixin, BaseEstimator):
    """Logistic regression on pair rows (see the module docstring), without an intercept:
    swapping the two forms of a pair must swap the prediction, so there is nothing for an
    intercept to learn.

    Parameters
    ----------
    prior_weights : array of shape (n_factors, n_attributes), default=None
        The weights the fit is pulled towards and starts from (the hand-set ones). ``None``
        is a zero prior over however many columns ``X`` has.
    support : bool array of the prior's shape, default=None
        Entries that may be learned; the others keep the prior's value. ``None``: all.
    keep_prior_signs : bool, default=False
        Keep each learned weight on the same side of zero as its prior (zero priors are free).
    fit_prior_scale : bool, default=False
        Fit ``W = scale * (prior + delta)`` with an unpenalised ``scale`` and penalise only
        ``delta``: consistent judgments then raise the model's confidence (``scale``) without
        pulling the weights' proportions away from the prior. ``weights_`` stays on the
        prior's scale, so the engine's scores keep the meaning the hand-set weights gave them.
    alpha : float, default=1.0
        Strength of the pull towards the prior (an L2 penalty on ``W - prior``). The data term
        is a sum over pairs, so more pairs outweigh the same prior more.
    max_iter : int, default=1000
        Iterations of L-BFGS-B.
    tol : float, default=1e-10
        Gradient tolerance of L-BFGS-B.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The labels; ``classes_[1]`` means "the first form of the pair is preferred".
    coef_ : ndarray of shape (n_features_in_,)
        The pair model's coefficients: ``scale_ * weights_``, flattened.
    weights_ : ndarray
        The learned utility weights in the prior's shape (factors x attributes) and scale,
        or ``(1, n_features_in_)`` without a prior.
    scale_ : float
        The fitted scale (1.0 unless ``fit_prior_scale``).
    n_iter_ : int
        Iterations the optimiser ran.
    n_features_in_ : int
        Columns of ``X`` seen in ``fit``.
    """

    def __init__(self, prior_weights=None, support=None, keep_prior_signs=False, fit_prior_scale=False, alpha=1.0,
                 max_iter=1000, tol=1e-10):
        self.prior_weights = prior_weights
        self.support = support
        self.keep_prior_signs = keep_prior_signs
        self.fit_prior_scale = fit_prior_scale
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # a pair is preferred or not
        tags.input_tags.sparse = False
        return tags

    # -- fitting ----------------------------------------------------------------------------

    def _check_params(self, n_features: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        """The prior (flat), the learnable mask (flat) and the weights' shape."""
        if not isinstance(self.alpha, numbers.Real) or isinstance(self.alpha, bool) or not self.alpha > 0:
            raise ValueError(f"alpha must be a positive number, got {self.alpha!r}")
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if self.prior_weights is None:
            shape, prior = (1, n_features), np.zeros(n_features)
        else:
            prior_weights = np.asarray(self.prior_weights, dtype=np.float64)
            if prior_weights.ndim != 2 or prior_weights.size != n_features:
                raise ValueError(f"prior_weights has shape {prior_weights.shape}; X needs {n_features} entries "
                                 "(factors x attributes)")
            if not np.isfinite(prior_weights).all():
                raise ValueError("prior_weights must be finite")
            shape, prior = prior_weights.shape, prior_weights.ravel()
        if self.support is None:
            learnable = np.ones(n_features, dtype=bool)
        else:
            support = np.asarray(self.support, dtype=bool)
            if support.size != n_features:
                raise ValueError(f"support has {support.size} entries; X has {n_features} columns")
            learnable = support.ravel()
        if self.fit_prior_scale and not prior.any():
            raise ValueError("fit_prior_scale needs non-zero prior_weights")
        return prior, learnable, shape

    def fit(self, X, y, sample_weight=None):
        """Learn the weights from preference rows ``X`` and labels ``y`` (two classes)."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) != 2:
            raise ValueError("Only binary classification is supported: a pair's first form is preferred or not; "
                             f"got {len(self.classes_)} class(es)")
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        prior, learnable, shape = self._check_params(X.shape[1])

        sign = np.where(encoded == 1, 1.0, -1.0)
        signed_rows = X[:, learnable] * sign[:, None]  # z_i x_i on the learnable columns
        prior_margin = (X @ prior) * sign  # z_i (prior . x_i)
        alpha, n_scale = float(self.alpha), int(bool(self.fit_prior_scale))

        def loss_and_gradient(theta):
            # w = scale * (prior + delta); margin_i = z_i (w . x_i); only delta is penalised.
            scale = theta[0] if n_scale else 1.0
            delta = theta[n_scale:]
            direction_margin = prior_margin + signed_rows @ delta
            margin = scale * direction_margin
            loss = -(sample_weight @ log_expit(margin)) + 0.5 * alpha * (delta @ delta)
            residual = sample_weight * expit(-margin)
            gradient = -scale * (signed_rows.T @ residual) + alpha * delta
            if n_scale:
                gradient = np.concatenate([[-(residual @ direction_margin)], gradient])
            return loss, gradient

        prior_free = prior[learnable]
        if self.keep_prior_signs:
            bounds = [(-p, None) if p > 0 else (None, -p) if p < 0 else (None, None) for p in prior_free]
        else:
            bounds = [(None, None)] * len(prior_free)
        start = np.zeros(len(prior_free))
        if n_scale:
            bounds, start = [(1e-6, None), *bounds], np.concatenate([[1.0], start])
        # The matrices are small: BLAS threads only wait on each other (4x slower on 2 busy cores).
        with threadpool_limits(limits=1, user_api="blas"):
            result = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds,
                              options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 1e-15})
        if not result.success:
            warnings.warn(f"L-BFGS-B did not converge: {result.message}", ConvergenceWarning, stacklevel=2)
        weights = prior.copy()
        weights[learnable] += result.x[n_scale:]
        self.scale_ = float(result.x[0]) if n_scale else 1.0
        self.weights_ = weights.reshape(shape)
        self.coef_ = self.scale_ * weights
        self.n_iter_ = int(result.nit)
        return self

    # -- predicting -------------------------------------------------------------------------

    def decision_function(self, X) -> np.ndarray:
        """The utility difference of each pair (first form minus second)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_

    def predict_proba(self, X) -> np.ndarray:
        probability = expit(self.decision_function(X))
        return np.column_stack([1.0 - probability, probability])

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    # ``score`` is ClassifierMixin's accuracy: the share of pairs put in the judged order.

    def utility(self, features, centred_attributes) -> np.ndarray:
        """profiles x forms utilities, as the engine computes them (before its safety masks)."""
        check_is_fitted(self)
        return np.asarray(features, dtype=np.float64) @ self.weights_ @ np.asarray(centred_attributes).T
