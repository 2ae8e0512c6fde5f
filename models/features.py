"""Profiles as columns of numpy arrays (a ProfileBatch), and the feature matrix the
weights act on. One profile and a million profiles take the same path."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from models import vocabulary as vocab
from models.kernel import fill_features

# Profile factors the weights in data/ may name (the rows of the weight matrix).
PROFILE_FACTORS = (
    "profile:kidney_moderate",
    "profile:pregnant_or_breastfeeding",
    "profile:child",
    "profile:older_adult",
)
FEATURE_NAMES = (
    "always",
    *(f"condition:{c}" for c in vocab.CONDITIONS),
    *(f"goal:{g}" for g in vocab.GOALS),
    *PROFILE_FACTORS,
)
# The feature columns that are the profile's words (conditions, then goals), 0 or 1.
WORD_FEATURES = slice(1, 1 + len(vocab.CONDITIONS) + len(vocab.GOALS))
CONDITION_COLUMN = {c: i for i, c in enumerate(vocab.CONDITIONS)}
GOAL_COLUMN = {g: i for i, g in enumerate(vocab.GOALS)}
SEX_CODE = {s: i for i, s in enumerate(vocab.SEXES)}


@dataclass
class ProfileBatch:
    """n validated profiles, column by column. Medicines are already resolved to
    interaction classes; the typed names are kept only to echo them back."""

    age: np.ndarray  # int16
    sex: np.ndarray  # int8, index into vocab.SEXES
    pregnant: np.ndarray  # bool
    breastfeeding: np.ndarray  # bool
    egfr: np.ndarray  # float64, NaN when unknown
    dialysis: np.ndarray  # bool
    conditions: np.ndarray  # bool (n, len(CONDITIONS))
    goals: np.ndarray  # bool (n, len(GOALS))
    interaction_classes: np.ndarray  # bool (n, len(INTERACTION_CLASSES))
    has_unrecognized_medication: np.ndarray  # bool
    avoid_forms: np.ndarray  # bool (n, forms)
    max_units_per_day: np.ndarray  # int16, 0 when not set
    # Per profile: [(typed name, class positions)] and the unrecognised names (echo only).
    recognized_medications: list[list[tuple[str, tuple[int, ...]]]] | None = field(default=None)
    unrecognized_medications: list[list[str]] | None = field(default=None)

    def __len__(self) -> int:
        return len(self.age)

    @classmethod
    def empty(cls, n: int, n_forms: int, keep_names: bool = True) -> ProfileBatch:
        return cls(
            age=np.zeros(n, dtype=np.int16),
            sex=np.zeros(n, dtype=np.int8),
            pregnant=np.zeros(n, dtype=bool),
            breastfeeding=np.zeros(n, dtype=bool),
            egfr=np.full(n, np.nan),
            dialysis=np.zeros(n, dtype=bool),
            conditions=np.zeros((n, len(vocab.CONDITIONS)), dtype=bool),
            goals=np.zeros((n, len(vocab.GOALS)), dtype=bool),
            interaction_classes=np.zeros((n, len(vocab.INTERACTION_CLASSES)), dtype=bool),
            has_unrecognized_medication=np.zeros(n, dtype=bool),
            avoid_forms=np.zeros((n, n_forms), dtype=bool),
            max_units_per_day=np.zeros(n, dtype=np.int16),
            recognized_medications=[[] for _ in range(n)] if keep_names else None,
            unrecognized_medications=[[] for _ in range(n)] if keep_names else None,
        )


def batch_from_profiles(profiles: list[dict], form_position: dict[str, int], medicine_index) -> ProfileBatch:
    """Columns from validated profile dicts (the HTTP and JSON Lines path). Fields not
    given take the contract's defaults. ``form_position`` is the engine's form id -> column."""
    batch = ProfileBatch.empty(len(profiles), len(form_position))
    for row, profile in enumerate(profiles):
        batch.age[row] = profile["age"]
        batch.sex[row] = SEX_CODE[profile.get("sex") or "unspecified"]
        batch.pregnant[row] = bool(profile.get("pregnant"))
        batch.breastfeeding[row] = bool(profile.get("breastfeeding"))
        egfr = profile.get("egfr")
        if egfr is not None:
            batch.egfr[row] = egfr
        batch.dialysis[row] = bool(profile.get("dialysis"))
        for condition in profile.get("conditions") or ():
            batch.conditions[row, CONDITION_COLUMN[condition]] = True
        for goal in profile.get("goals") or ():
            batch.goals[row, GOAL_COLUMN[goal]] = True
        recognized, unrecognized = batch.recognized_medications[row], batch.unrecognized_medications[row]
        for name in profile.get("medications") or ():
            classes = medicine_index.resolve(name)
            if classes is None:
                if name not in unrecognized:
                    unrecognized.append(name)
            else:
                recognized.append((name, classes))
                for class_position in classes:  # scalar writes: cheaper than a fancy index for a few
                    batch.interaction_classes[row, class_position] = True
        batch.has_unrecognized_medication[row] = bool(unrecognized)
        preferences = profile.get("preferences") or {}
        for form_id in preferences.get("avoid_forms") or ():
            batch.avoid_forms[row, form_position[form_id]] = True
        batch.max_units_per_day[row] = preferences.get("max_units_per_day") or 0
    return batch


def feature_matrix(batch: ProfileBatch, kidney_moderate: np.ndarray, rules: dict) -> np.ndarray:
    """n x len(FEATURE_NAMES), float64: the profile factors the weights act on (one compiled
    pass, models/kernel.py)."""
    ages = rules["age_groups"]
    # Column-major: a training or explanation step reads one factor across many profiles.
    features = np.empty((len(batch), len(FEATURE_NAMES)), order="F")
    fill_features(batch.conditions, batch.goals, kidney_moderate, batch.pregnant, batch.breastfeeding, batch.age,
                  _age_factors(ages["infant_below"], ages["child_up_to"], ages["older_adult_from"]), features)
    return features


@functools.cache
def _age_factors(infant_below: int, child_up_to: int, older_adult_from: int) -> np.ndarray:
    """Per age 0..120: (child, older adult), looked up rather than compared per profile."""
    age = np.arange(121)
    return np.column_stack([(age >= infant_below) & (age <= child_up_to), age >= older_adult_from]).astype(float)
