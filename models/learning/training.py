"""Teach the ranker: judged cases and reported outcomes become preference pairs, the ranker
learns the engine's weights from them, cross-validation says whether it beats the hand-set
weights, and the result is written as a versioned artifact the service loads at start.

Judgments (``data/supplements/<supplement>/judgments.csv``) are validated like every data
file: the file, row and field are named in each error. A judgment may not contradict the
contract's hard rules (a form the rules exclude for that profile, a laxative form first with
diarrhoea, IBS-D or a sensitive stomach), so the data never teaches what the masks forbid,
and a profile the rules close entirely must say so with an empty order.

Outcomes (``POST /v1/feedback``) carry a form, whether it was tolerated and how much it
helped, and no profile. All they can teach is which forms do better for people in general:
they become preferences on the ``always`` factor only, between forms whose outcomes differ
clearly, and together they weigh at most a quarter as much as the judgments. They are also
confounded (each form was recommended to different people), which is one more reason to keep
them light; see README, "Learning".
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from formwise.data import supplement_dir
from formwise.models.engine.features import batch_from_profiles
from formwise.models.engine.scoring import EXCLUSION_BIT, Engine
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import FEATURE_NAMES, KnowledgeBase, KnowledgeBaseError
from formwise.models.knowledge.csv_fields import choice_cell, number_cell, read_rows
from formwise.models.learning.artifact import ARTIFACT_FORMAT, TrainingResult
from formwise.models.learning.ranker import PairwisePreferenceRanker, pair_rows

JUDGMENT_COLUMNS = ("id", "age", "sex", "pregnant", "breastfeeding", "egfr", "dialysis", "conditions", "goals",
                    "medications", "avoid_forms", "preferred_order", "rationale", "sources")

# Pull towards the hand-set proportions (a sum over about 5,000 judged pairs); chosen on a
# sweep of 0.1..300 where 10..30 gave the best cross-validated NDCG@3 for three fold seeds.
DEFAULT_ALPHA = 30.0
DEFAULT_FOLDS = 5
DEFAULT_SEED = 0
RANK_CUTOFF = 3  # NDCG@3: the three forms an answer shows by default
# Outcomes: a form needs this many before it is compared; a difference counts when it is
# this many standard errors; together outcome pairs weigh at most this share of the judgments.
MIN_OUTCOMES_PER_FORM = 20
OUTCOME_DIFFERENCE_Z = 2.0
MAX_OUTCOME_WEIGHT_SHARE = 0.25


@dataclass(frozen=True)
class Judgment:
    """One judged case: a profile (the API's shape, defaults filled) and the forms a clinician
    would put first, best first. An empty order means the hard rules leave no form."""

    id: str
    row: int
    profile: dict
    preferred_order: tuple[str, ...]
    rationale: str
    sources: tuple[str, ...]


@dataclass
class PreferencePairs:
    """Preference rows for the ranker: ``X`` (pairs x factors*attributes), ``y`` (1: the first
    form is preferred; every other row is mirrored to 0), ``sample_weight``, and for each row
    the judged case it came from (-1 for outcome pairs)."""

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray
    case: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def empty(cls, n_columns: int) -> PreferencePairs:
        return cls(np.zeros((0, n_columns)), np.zeros(0, dtype=int), np.zeros(0), np.zeros(0, dtype=int))

    def __add__(self, other: PreferencePairs) -> PreferencePairs:
        return PreferencePairs(np.vstack([self.X, other.X]), np.concatenate([self.y, other.y]),
                               np.concatenate([self.sample_weight, other.sample_weight]),
                               np.concatenate([self.case, other.case]))

    def subset(self, rows: np.ndarray) -> PreferencePairs:
        return PreferencePairs(self.X[rows], self.y[rows], self.sample_weight[rows], self.case[rows])


# ---------------------------------------------------------------------------------------
# Loading and validating the judgments.


def judgments_path(supplement: str = "magnesium") -> Path:
    return supplement_dir(supplement) / "judgments.csv"


def _flag(path, row, record, name) -> bool:
    return choice_cell(path, row, record, name, ("", "true", "false")) == "true"


def _words(path, row, record, name, allowed) -> list[str]:
    words = [word for word in record[name].split(";") if word]
    for word in words:
        if word not in allowed:
            raise KnowledgeBaseError(path, row, name, f"'{word}' is not one of {', '.join(allowed)}")
    if len(set(words)) != len(words):
        raise KnowledgeBaseError(path, row, name, "a word is listed twice")
    return words


def load_judgments(knowledge_base: KnowledgeBase, path: Path | None = None) -> tuple[Judgment, ...]:
    """Read and validate the judged cases; every error names the file, row and field."""
    path = Path(path) if path is not None else judgments_path(knowledge_base.supplement)
    form_ids = knowledge_base.form_ids
    engine = Engine(knowledge_base)
    judgments, seen = [], set()
    for row, record in read_rows(path, JUDGMENT_COLUMNS):
        case_id = record["id"]
        if not case_id:
            raise KnowledgeBaseError(path, row, "id", "value is required")
        if case_id in seen:
            raise KnowledgeBaseError(path, row, "id", f"duplicate id '{case_id}'")
        seen.add(case_id)
        age = number_cell(path, row, record, "age", 0, 120)
        if age != int(age):
            raise KnowledgeBaseError(path, row, "age", f"{age} is not a whole number of years")
        medications = [name for name in record["medications"].split(";") if name]
        for name in medications:
            if engine.medicines.resolve(name) is None:
                raise KnowledgeBaseError(path, row, "medications", f"'{name}' is not in data/medicines.csv")
        avoid_forms = _words(path, row, record, "avoid_forms", form_ids)
        profile = {
            "age": int(age),
            "sex": choice_cell(path, row, record, "sex", vocab.SEXES),
            "pregnant": _flag(path, row, record, "pregnant"),
            "breastfeeding": _flag(path, row, record, "breastfeeding"),
            "egfr": number_cell(path, row, record, "egfr", 0, 250, optional=True),
            "dialysis": _flag(path, row, record, "dialysis"),
            "conditions": _words(path, row, record, "conditions", vocab.CONDITIONS),
            "goals": _words(path, row, record, "goals", vocab.GOALS),
            "medications": medications,
            "preferences": {"avoid_forms": avoid_forms, "max_units_per_day": None},
        }
        order = tuple(_words(path, row, record, "preferred_order", form_ids))
        if not record["rationale"]:
            raise KnowledgeBaseError(path, row, "rationale", "say why the forms are in this order")
        sources = tuple(source for source in record["sources"].split(";") if source)
        if not sources:
            raise KnowledgeBaseError(path, row, "sources", "at least one source id is required")
        for source in sources:
            if source not in knowledge_base.citations:
                raise KnowledgeBaseError(path, row, "sources",
                                         f"source id '{source}' has no entry in data/citations.csv")
        judgments.append(Judgment(case_id, row, profile, order, record["rationale"], sources))
    _check_against_hard_rules(path, judgments, engine)
    return tuple(judgments)


def _check_against_hard_rules(path: Path, judgments: list[Judgment], engine: Engine) -> None:
    """A judgment may not ask for what the contract's hard rules forbid."""
    batch = batch_from_profiles([j.profile for j in judgments], engine.form_position, engine.medicines)
    scored = engine.score(batch)
    laxative = {form.id for form in engine.kb.forms if form.laxative}
    for i, judgment in enumerate(judgments):
        bits = scored.exclusion_bits[i]
        if not judgment.preferred_order:
            if (bits == 0).any():
                raise KnowledgeBaseError(path, judgment.row, "preferred_order",
                                         "is empty, but the hard rules leave forms to rank for this profile")
            continue
        for form_id in judgment.preferred_order:
            form_bits = bits[engine.form_position[form_id]]
            if form_bits:
                codes = [code for code in vocab.EXCLUSION_CODES if form_bits & EXCLUSION_BIT[code]]
                raise KnowledgeBaseError(path, judgment.row, "preferred_order",
                                         f"'{form_id}' is excluded for this profile by the hard rules "
                                         f"({', '.join(codes)})")
        gi_sensitive = set(judgment.profile["conditions"]) & set(engine.kb.gi_rules)
        if gi_sensitive and judgment.preferred_order[0] in laxative:
            raise KnowledgeBaseError(path, judgment.row, "preferred_order",
                                     f"a laxative form ('{judgment.preferred_order[0]}') may not come first with "
                                     f"{' or '.join(engine.kb.gi_rules)} (safety rule 5)")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------
# Judged cases as arrays, and the preference pairs they imply.


@dataclass
class JudgedCases:
    """The ranked judgments as arrays over the engine's forms."""

    judgments: tuple[Judgment, ...]
    features: np.ndarray  # (n, factors)
    eligible: np.ndarray  # bool (n, forms): not excluded by the hard rules
    relevance: np.ndarray  # (n, forms): len(order) for the first listed form ... 1 for the last, 0 unlisted

    @classmethod
    def build(cls, judgments, engine: Engine) -> JudgedCases:
        """Only judgments with a non-empty order rank anything; the others are left out."""
        ranked = tuple(j for j in judgments if j.preferred_order)
        batch = batch_from_profiles([j.profile for j in ranked], engine.form_position, engine.medicines)
        scored = engine.score(batch)
        relevance = np.zeros((len(ranked), len(engine.form_ids)))
        for i, judgment in enumerate(ranked):
            for position, form_id in enumerate(judgment.preferred_order):
                relevance[i, engine.form_position[form_id]] = len(judgment.preferred_order) - position
        return cls(ranked, scored.features, scored.exclusion_bits == 0, relevance)

    def __len__(self) -> int:
        return len(self.judgments)

    def subset(self, rows) -> JudgedCases:
        rows = np.asarray(rows)
        return JudgedCases(tuple(self.judgments[i] for i in rows), self.features[rows], self.eligible[rows],
                           self.relevance[rows])

    def pair_indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(case, preferred form, other form) for every judged pair: each listed form over
        every later listed form and over every eligible form not listed."""
        cases, winners, losers = [], [], []
        for i in range(len(self)):
            relevance, eligible = self.relevance[i], self.eligible[i]
            better = relevance[:, None] > relevance[None, :]
            winner, loser = np.nonzero(better & eligible[None, :] & eligible[:, None])
            cases.append(np.full(len(winner), i))
            winners.append(winner)
            losers.append(loser)
        return (np.concatenate(cases).astype(int), np.concatenate(winners).astype(int),
                np.concatenate(losers).astype(int))

    def pairs(self, centred_attributes: np.ndarray) -> PreferencePairs:
        case, winner, loser = self.pair_indices()
        return _mirrored_pairs(self.features[case], centred_attributes[winner] - centred_attributes[loser], case)


def _mirrored_pairs(features: np.ndarray, differences: np.ndarray, case: np.ndarray,
                    weight: np.ndarray | None = None) -> PreferencePairs:
    """Every other pair written the other way round (row negated, label 0), so both labels
    occur; the logistic loss is the same either way."""
    X = pair_rows(features, differences)
    y = np.ones(len(X), dtype=int)
    y[1::2] = 0
    X[1::2] *= -1.0
    return PreferencePairs(X, y, np.ones(len(X)) if weight is None else weight, case)


def outcome_score(outcome: dict) -> float | None:
    """0..1 from what is known: tolerated (0 or 1) and helpful ((h - 1) / 4), averaged."""
    parts = []
    if outcome.get("tolerated") is not None:
        parts.append(float(bool(outcome["tolerated"])))
    if outcome.get("helpful") is not None:
        parts.append((int(outcome["helpful"]) - 1) / 4.0)
    return sum(parts) / len(parts) if parts else None


def outcome_pairs(outcomes, engine: Engine, judged_weight: float) -> PreferencePairs:
    """Population-level preferences from outcomes without profiles (see the module docstring).

    The latest report per (recommendation_id, form) counts, scored by :func:`outcome_score`.
    Two forms with at least MIN_OUTCOMES_PER_FORM scored outcomes each make a pair when their
    mean scores differ by at least OUTCOME_DIFFERENCE_Z standard errors; the pair acts on the
    ``always`` factor only, weighted by the smaller count, and all outcome pairs together weigh
    at most MAX_OUTCOME_WEIGHT_SHARE x ``judged_weight``."""
    n_columns = len(FEATURE_NAMES) * len(engine.attribute_names)
    latest = {}
    for position, outcome in enumerate(outcomes):
        latest[(outcome.get("recommendation_id") or position, outcome["form"])] = outcome
    by_form: dict[int, list[float]] = {}
    for outcome in latest.values():
        form, score = engine.form_position.get(outcome["form"]), outcome_score(outcome)
        if form is not None and score is not None:  # a form since removed, or nothing rated
            by_form.setdefault(form, []).append(score)
    summary = {
        form: (len(scores), float(np.mean(scores)), float(np.var(scores, ddof=1)))
        for form, scores in by_form.items()
        if len(scores) >= MIN_OUTCOMES_PER_FORM
    }
    winners, losers, counts = [], [], []
    forms = sorted(summary)
    for i, a in enumerate(forms):
        for b in forms[i + 1:]:
            (n_a, mean_a, var_a), (n_b, mean_b, var_b) = summary[a], summary[b]
            standard_error = np.sqrt(var_a / n_a + var_b / n_b) or 1e-9
            if abs(mean_a - mean_b) / standard_error >= OUTCOME_DIFFERENCE_Z:
                winner, loser = (a, b) if mean_a > mean_b else (b, a)
                winners.append(winner)
                losers.append(loser)
                counts.append(min(n_a, n_b))
    if not winners:
        return PreferencePairs.empty(n_columns)
    always = np.zeros((len(winners), len(FEATURE_NAMES)))
    always[:, FEATURE_NAMES.index("always")] = 1.0
    weight = np.asarray(counts, dtype=np.float64)
    weight *= min(1.0, MAX_OUTCOME_WEIGHT_SHARE * judged_weight / weight.sum())
    differences = engine.centred_attributes[winners] - engine.centred_attributes[losers]
    return _mirrored_pairs(always, differences, np.full(len(winners), -1), weight)


# ---------------------------------------------------------------------------------------
# The ranker, and how well a weight matrix ranks judged cases.


def new_ranker(engine: Engine, alpha: float = DEFAULT_ALPHA) -> PairwisePreferenceRanker:
    """The ranker with the hand-set weights as prior: it re-weighs the weights the data
    already has (each has a sourced reason text) and never flips one's sign."""
    prior = engine.hand_set_weights
    return PairwisePreferenceRanker(prior_weights=prior, support=prior != 0, keep_prior_signs=True,
                                    fit_prior_scale=True, alpha=alpha)


def ranking_scores(weights: np.ndarray, cases: JudgedCases, engine: Engine) -> np.ndarray:
    """The scores an answer would rank by (after every mask), -1 where a form is excluded."""
    scoring = Engine(engine.kb, weights=weights, model_version="evaluation")
    batch = batch_from_profiles([j.profile for j in cases.judgments], scoring.form_position, scoring.medicines)
    scored = scoring.score(batch)
    return np.where(scored.exclusion_bits == 0, scored.scores, -1.0)


def ndcg_at_k(relevance: np.ndarray, scores: np.ndarray, k: int = RANK_CUTOFF) -> float:
    """Mean NDCG@k over cases, with gains equal to the relevance (scikit-learn's definition)."""
    from sklearn.metrics import ndcg_score

    return float(ndcg_score(relevance, scores, k=k))


def pairwise_accuracy(cases: JudgedCases, scores: np.ndarray) -> float:
    """The share of judged pairs scored in the judged order (a tie counts one half)."""
    case, winner, loser = cases.pair_indices()
    difference = scores[case, winner] - scores[case, loser]
    return float(np.mean((difference > 0) + 0.5 * (difference == 0)))


def ranking_metrics(weights: np.ndarray, cases: JudgedCases, engine: Engine) -> dict:
    scores = ranking_scores(weights, cases, engine)
    return {"ndcg_at_3": ndcg_at_k(cases.relevance, scores), "pairwise_accuracy": pairwise_accuracy(cases, scores)}


def fold_indices(n_cases: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold

    if not 2 <= folds <= n_cases:
        raise ValueError(f"folds must be between 2 and the number of ranked cases ({n_cases}), not {folds}")
    return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.arange(n_cases)))


def cross_validate(cases: JudgedCases, engine: Engine, folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED,
                   alpha: float = DEFAULT_ALPHA, extra_pairs: PreferencePairs | None = None) -> dict:
    """NDCG@3 and pairwise accuracy of the learned weights and of the hand-set weights on the
    same held-out cases of each fold (means over folds). ``extra_pairs`` (outcome pairs) join
    every training fold; they are never held out, having no case to rank."""
    per_fold = []
    for train_rows, test_rows in fold_indices(len(cases), folds, seed):
        training = cases.subset(train_rows).pairs(engine.centred_attributes)
        if extra_pairs is not None and len(extra_pairs):
            training = training + extra_pairs
        ranker = new_ranker(engine, alpha).fit(training.X, training.y, training.sample_weight)
        held_out = cases.subset(test_rows)
        per_fold.append({
            "learned": ranking_metrics(ranker.weights_, held_out, engine),
            "hand_set": ranking_metrics(engine.hand_set_weights, held_out, engine),
            "cases": len(held_out),
        })
    summary = {
        model: {metric: float(np.mean([fold[model][metric] for fold in per_fold]))
                for metric in ("ndcg_at_3", "pairwise_accuracy")}
        for model in ("learned", "hand_set")
    }
    return {**summary, "folds": folds, "seed": seed, "cases": len(cases), "per_fold": per_fold}


def training_data_sha256(pairs: PreferencePairs, ranker: PairwisePreferenceRanker) -> str:
    """A hash of exactly what the ranker was fitted on, and with which settings."""
    digest = hashlib.sha256()
    for array in (pairs.X, pairs.y, pairs.sample_weight):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    digest.update(repr((ranker.alpha, ranker.keep_prior_signs, ranker.max_iter, ranker.tol)).encode())
    digest.update(np.ascontiguousarray(ranker.prior_weights, dtype=np.float64).tobytes())
    return digest.hexdigest()


def train(knowledge_base: KnowledgeBase, judgments: tuple[Judgment, ...], outcomes=None,
          alpha: float = DEFAULT_ALPHA, folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED,
          judgments_file: Path | None = None) -> TrainingResult:
    """Fit on every judgment (and outcome), cross-validate the same recipe, and describe the
    result for the artifact."""
    import sklearn

    engine = Engine(knowledge_base)
    cases = JudgedCases.build(judgments, engine)
    pairs = cases.pairs(engine.centred_attributes)
    feedback = outcome_pairs(outcomes, engine, float(pairs.sample_weight.sum())) if outcomes else None
    training = pairs + feedback if feedback is not None and len(feedback) else pairs
    ranker = new_ranker(engine, alpha)
    started = time.perf_counter()
    ranker.fit(training.X, training.y, training.sample_weight)
    fit_seconds = time.perf_counter() - started
    metrics = cross_validate(cases, engine, folds, seed, alpha, feedback)
    data_hash = training_data_sha256(training, ranker)
    metadata = {
        "model_version": f"pairwise-{data_hash[:12]}",
        "artifact_format": ARTIFACT_FORMAT,
        "sklearn_version": sklearn.__version__,
        "training_data_sha256": data_hash,
        "judgments_sha256": file_sha256(judgments_file or judgments_path(knowledge_base.supplement)),
        "knowledge_base_version": knowledge_base.version,
        "feature_names": list(FEATURE_NAMES),
        "attribute_names": list(engine.attribute_names),
        "alpha": alpha,
        "judged_cases": len(judgments),
        "ranked_cases": len(cases),
        "judged_pairs": len(pairs),
        "outcomes": len(outcomes or ()),
        "outcome_pairs": 0 if feedback is None else len(feedback),
        "fit_seconds": round(fit_seconds, 4),
        "metrics": {key: metrics[key] for key in ("learned", "hand_set", "folds", "seed", "cases")},
    }
    return TrainingResult(ranker, metadata)
