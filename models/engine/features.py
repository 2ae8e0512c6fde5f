"""Profiles as columns of numpy arrays (a ProfileBatch), and the feature matrix the
weights act on. One profile and a million profiles take the same path."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from formwise.models.engine import kernel
from formwise.models.engine.kernel import fill_features
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import FEATURE_NAMES

# The feature columns that are the profile's words (conditions, then goals), 0 or 1.
WORD_FEATURES = slice(1, 1 + len(vocab.CONDITIONS) + len(vocab.GOALS))
CONDITION_COLUMN = {c: i for i, c in enumerate(vocab.CONDITIONS)}
GOAL_COLUMN = {g: i for i, g in enumerate(vocab.GOALS)}
SEX_CODE = {s: i for i, s in enumerate(vocab.SEXES)}


# Column layout of ProfileBatch.flags: four yes/no fields (kernel.PREGNANT ...), the
# profile's words (conditions, then goals), the interaction classes, then the forms to avoid.
CONDITIONS_START = kernel.WORDS
GOALS_START = CONDITIONS_START + len(vocab.CONDITIONS)
CLASSES_START = GOALS_START + len(vocab.GOALS)
FORMS_START = CLASSES_START + len(vocab.INTERACTION_CLASSES)


@dataclass
class ProfileBatch:
    """n validated profiles as three arrays, so that making a batch and handing it to the
    compiled loop costs three arrays, not twelve. Medicines are already resolved to
    interaction classes; the typed names are kept only to echo them back. The named fields
    (``age``, ``conditions``, ...) are writable views into the arrays."""

    whole_numbers: np.ndarray  # int16 (n, 3): kernel.AGE, kernel.SEX (vocab.SEXES), kernel.MAX_UNITS (0: not set)
    measurements: np.ndarray  # float64 (n, 2): kernel.EGFR, kernel.SERUM_MAGNESIUM (mmol/L); NaN when unknown
    flags: np.ndarray  # bool (n, FORMS_START + forms), laid out as above
    # Per profile: [(typed name, the medicine's component ids (formwise.models.engine.medicines))] and the
    # names not (or only partly) recognised, echoed as sent.
    recognized_medications: list[list[tuple[str, tuple[int, ...]]]] | None = field(default=None)
    unrecognized_medications: list[list[str]] | None = field(default=None)

    def __len__(self) -> int:
        return len(self.measurements)

    @classmethod
    def empty(cls, n: int, n_forms: int, keep_names: bool = True) -> ProfileBatch:
        measurements = np.empty((n, kernel.MEASUREMENTS))
        measurements.fill(np.nan)  # np.full takes two and a half times as long, for one profile
        return cls(
            whole_numbers=np.zeros((n, 3), dtype=np.int16),
            measurements=measurements,
            flags=np.zeros((n, FORMS_START + n_forms), dtype=bool),
            recognized_medications=[[] for _ in range(n)] if keep_names else None,
            unrecognized_medications=[[] for _ in range(n)] if keep_names else None,
        )

    def take(self, rows: np.ndarray) -> ProfileBatch:
        """The profiles at ``rows`` (a boolean mask or positions), arrays only."""
        return ProfileBatch(self.whole_numbers[rows], self.measurements[rows], self.flags[rows])

    age = property(lambda self: self.whole_numbers[:, kernel.AGE], doc="int16 (n,)")
    sex = property(lambda self: self.whole_numbers[:, kernel.SEX], doc="int16 (n,), index into vocab.SEXES")
    max_units_per_day = property(lambda self: self.whole_numbers[:, kernel.MAX_UNITS], doc="int16 (n,), 0: not set")
    egfr = property(lambda self: self.measurements[:, kernel.EGFR], doc="float64 (n,), NaN when unknown")
    serum_magnesium = property(lambda self: self.measurements[:, kernel.SERUM_MAGNESIUM],
                               doc="float64 (n,) mmol/L, NaN when unknown")
    pregnant = property(lambda self: self.flags[:, kernel.PREGNANT], doc="bool (n,)")
    breastfeeding = property(lambda self: self.flags[:, kernel.BREASTFEEDING], doc="bool (n,)")
    dialysis = property(lambda self: self.flags[:, kernel.DIALYSIS], doc="bool (n,)")
    has_unrecognized_medication = property(lambda self: self.flags[:, kernel.UNRECOGNIZED], doc="bool (n,)")
    conditions = property(lambda self: self.flags[:, CONDITIONS_START:GOALS_START], doc="bool (n, CONDITIONS)")
    goals = property(lambda self: self.flags[:, GOALS_START:CLASSES_START], doc="bool (n, GOALS)")
    interaction_classes = property(lambda self: self.flags[:, CLASSES_START:FORMS_START],
                                   doc="bool (n, INTERACTION_CLASSES)")
    avoid_forms = property(lambda self: self.flags[:, FORMS_START:], doc="bool (n, forms)")


def batch_from_profiles(profiles: list[dict], form_position: dict[str, int], medicine_index) -> ProfileBatch:
    """Columns from validated profile dicts (the HTTP and JSON Lines path). Fields not
    given take the contract's defaults. ``form_position`` is the engine's form id -> column."""
    batch = ProfileBatch.empty(len(profiles), len(form_position))
    numbers, measured, flags = batch.whole_numbers, batch.measurements, batch.flags  # written cell by cell
    component_class = medicine_index.component_class
    for row, profile in enumerate(profiles):
        numbers[row, kernel.AGE] = profile["age"]
        numbers[row, kernel.SEX] = SEX_CODE[profile.get("sex") or "unspecified"]
        flags[row, kernel.PREGNANT] = bool(profile.get("pregnant"))
        flags[row, kernel.BREASTFEEDING] = bool(profile.get("breastfeeding"))
        egfr = profile.get("egfr")
        if egfr is not None:
            measured[row, kernel.EGFR] = egfr
        serum_magnesium = profile.get("serum_magnesium")
        if serum_magnesium is not None:
            measured[row, kernel.SERUM_MAGNESIUM] = serum_magnesium
        flags[row, kernel.DIALYSIS] = bool(profile.get("dialysis"))
        for condition in profile.get("conditions") or ():
            flags[row, CONDITIONS_START + CONDITION_COLUMN[condition]] = True
        for goal in profile.get("goals") or ():
            flags[row, GOALS_START + GOAL_COLUMN[goal]] = True
        recognized, unrecognized = batch.recognized_medications[row], batch.unrecognized_medications[row]
        for name in profile.get("medications") or ():
            resolved = medicine_index.resolve(name)
            # A combination with an unknown part is echoed too.
            if (resolved is None or not resolved.complete) and name not in unrecognized:
                unrecognized.append(name)
            if resolved is not None:
                recognized.append((name, resolved.components))
                for component in resolved.components:
                    flags[row, CLASSES_START + component_class[component]] = True
        flags[row, kernel.UNRECOGNIZED] = bool(unrecognized)
        preferences = profile.get("preferences") or {}
        for form_id in preferences.get("avoid_forms") or ():
            flags[row, FORMS_START + form_position[form_id]] = True
        numbers[row, kernel.MAX_UNITS] = preferences.get("max_units_per_day") or 0
    return batch


def feature_matrix(batch: ProfileBatch, kidney_moderate: np.ndarray, rules: dict) -> np.ndarray:
    """n x len(FEATURE_NAMES), float64: the profile factors the weights act on (one compiled
    pass, models/engine/kernel.py). A scored batch has them already (ScoredBatch.features)."""
    features = np.empty((len(batch), len(FEATURE_NAMES)))
    fill_features(batch.whole_numbers, batch.flags, len(vocab.CONDITIONS) + len(vocab.GOALS), kidney_moderate,
                  age_factors(rules), features)
    return features


def age_factors(rules: dict) -> np.ndarray:
    """Per age 0..120: (child, older adult), looked up rather than compared per profile."""
    ages = rules["age_groups"]
    return _age_factors(ages["infant_below"], ages["child_up_to"], ages["older_adult_from"])


@functools.cache
def _age_factors(infant_below: int, child_up_to: int, older_adult_from: int) -> np.ndarray:
    age = np.arange(121)
    return np.column_stack([(age >= infant_below) & (age <= child_up_to), age >= older_adult_from])
