"""The scoring engine: one computation ranks every form for every profile.

utility = features @ weights @ centred_attributes.T   (n x forms)
score   = logistic(utility)

The product is computed in two exact parts: the profile's words (conditions and goals)
times their rows, plus one precomputed row for everything else about the profile (kidney
band, age, pregnancy, breastfeeding), looked up by a key; the same key selects the
exclusions and caveats those facts trigger. This module builds those tables from data/;
one compiled loop (models/engine/kernel.py) reads them for every profile, so one profile and a
million take the same path.

The contract's hard safety rules are applied after scoring, as masks over the scores, in
that loop; nothing in the weights (hand-set or learned) can undo them.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from formwise.models.engine import kernel
from formwise.models.engine.features import WORD_FEATURES, ProfileBatch, age_factors, feature_matrix
from formwise.models.engine.kernel import ScoringTables, pack_tables, score_profiles
from formwise.models.engine.medicines import MedicineIndex
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import FEATURE_NAMES, KnowledgeBase

log = logging.getLogger("formwise.engine")
_loop_ready = False  # the scoring loop has been compiled or loaded in this process

SEVERITY_RANK = {name: i for i, name in enumerate(vocab.SEVERITIES)}
CAVEAT_COLUMN = {code: i for i, code in enumerate(vocab.ANSWER_CAVEATS)}
FORM_CAVEAT_COLUMN = {code: i for i, code in enumerate(vocab.FORM_CAVEATS)}
EXCLUSION_BIT = {code: np.uint8(1 << i) for i, code in enumerate(vocab.EXCLUSION_CODES)}
HAND_SET = "hand-set"


def _unpack_bits(bits: np.ndarray, width: int) -> np.ndarray:
    """Integer bit sets (any shape) as booleans with one more axis of ``width``: bit i is
    column i."""
    return (bits.astype(np.int64)[..., None] >> np.arange(width)) & 1 == 1


@dataclass
class ScoredBatch:
    """The engine's answer for n profiles, as arrays (forms in knowledge-base order): the
    compiled loop's two arrays (models/engine/kernel.py), and their parts by name. The parts are
    views or are made on first use, so a path pays only for what it reads."""

    per_form: np.ndarray  # float64 (FORM_PLANES, n, F)
    per_profile: np.ndarray  # int64 (n, ORDER + F)
    batch: ProfileBatch = field(repr=False)

    @property
    def scores(self) -> np.ndarray:
        """float64 (n, F), after the safety masks."""
        return self.per_form[kernel.SCORE]

    @functools.cached_property
    def exclusion_bits(self) -> np.ndarray:
        """uint8 (n, F); 0 = eligible; bits as in EXCLUSION_BIT."""
        return self.per_form[kernel.EXCLUSION_BITS].astype(np.uint8)

    @property
    def order(self) -> np.ndarray:
        """int64 (n, F): form positions, best first; eligible ones lead."""
        return self.per_profile[:, kernel.ORDER:]

    @property
    def eligible_count(self) -> np.ndarray:
        """int64 (n,)."""
        return self.per_profile[:, kernel.ELIGIBLE_COUNT]

    @property
    def caveat_bits(self) -> np.ndarray:
        """int64 (n,): the raised answer caveats, bit i = vocab.ANSWER_CAVEATS[i]."""
        return self.per_profile[:, kernel.CAVEAT_BITS]

    @functools.cached_property
    def caveats(self) -> np.ndarray:
        """bool (n, len(ANSWER_CAVEATS))."""
        return _unpack_bits(self.caveat_bits, len(vocab.ANSWER_CAVEATS))

    @property
    def interaction_severity(self) -> np.ndarray:
        """int64 (n,): -1 none, else SEVERITY_RANK."""
        return self.per_profile[:, kernel.INTERACTION_SEVERITY]

    @property
    def escalated_caveat_bits(self) -> np.ndarray:
        """int64 (n,): the raised caveats at their higher severity for the profile's age."""
        return self.per_profile[:, kernel.ESCALATED_CAVEAT_BITS]

    @property
    def max_severity(self) -> np.ndarray:
        """int64 (n,): SEVERITY_RANK of the highest raised caveat."""
        return self.per_profile[:, kernel.MAX_SEVERITY]

    @functools.cached_property
    def form_caveats(self) -> np.ndarray:
        """bool (n, F, len(FORM_CAVEATS))."""
        return _unpack_bits(self.per_form[kernel.FORM_CAVEAT_BITS], len(vocab.FORM_CAVEATS))

    @functools.cached_property
    def caution(self) -> np.ndarray:
        """bool (n, F)."""
        return self.per_form[kernel.CAUTION] != 0

    @property
    def elemental_min(self) -> np.ndarray:
        """float64 (n, F) mg/day."""
        return self.per_form[kernel.ELEMENTAL_MIN]

    @property
    def elemental_max(self) -> np.ndarray:
        """float64 (n, F) mg/day."""
        return self.per_form[kernel.ELEMENTAL_MAX]

    @functools.cached_property
    def kidney_moderate(self) -> np.ndarray:
        """bool (n,)."""
        return self.per_profile[:, kernel.KIDNEY_MODERATE] != 0

    @property
    def feature_bits(self) -> np.ndarray:
        """int64 (n,): the profile factors that apply, bit k = FEATURE_NAMES[k]."""
        return self.per_profile[:, kernel.FEATURE_BITS]

    @functools.cached_property
    def features(self) -> np.ndarray:
        """float64 (n, K): the profile factors the weights act on, 1.0 where one applies.
        Made on first use: training and the test of the tables read the matrix, answers
        read the bits."""
        return _unpack_bits(self.feature_bits, len(FEATURE_NAMES)).astype(np.float64)


def _check_bit_set_widths() -> None:
    """The loop keeps caveats and factors as bit sets: answer caveats and factors in an int64,
    form caveats in a float64 plane (exact up to 2**53). A vocabulary that outgrows them must
    fail here, not wrap around in the loop."""
    for what, count, most in (("answer caveats", len(vocab.ANSWER_CAVEATS), 62),
                              ("profile factors", len(FEATURE_NAMES), 62),
                              ("form caveats", len(vocab.FORM_CAVEATS), 52),
                              ("exclusion codes", len(vocab.EXCLUSION_CODES), 8)):
        if count > most:
            raise ValueError(f"{count} {what} do not fit the scoring loop's bit sets (at most {most})")


@functools.cache
def _one_blas_thread() -> None:
    """The engine's products are thin (profiles x 28 factors x 13 forms): BLAS threads only
    add start-up cost and fight the service's other workers for the cores. Measured on the
    2-core machine: 1,000,000 profiles scored in 1.7 s with one thread, 2.2 s with two."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


class Engine:
    """Holds the knowledge base as arrays, precomputed once; scores batches of profiles."""

    def __init__(self, knowledge_base: KnowledgeBase, weights: np.ndarray | None = None,
                 model_version: str = HAND_SET):
        _one_blas_thread()
        _check_bit_set_widths()
        self.kb = knowledge_base
        self.model_version = model_version
        self.medicines = MedicineIndex(knowledge_base)
        self.form_ids = knowledge_base.form_ids
        self.form_position = {form_id: i for i, form_id in enumerate(self.form_ids)}
        self.attribute_names = knowledge_base.scored_attributes
        attributes = knowledge_base.attribute_matrix()
        # Centred per attribute, so a contribution says "better or worse than most forms".
        self.centred_attributes = attributes - attributes.mean(axis=0)
        self.hand_set_weights = self._weights_from_data()
        self.weights = self.hand_set_weights if weights is None else np.asarray(weights, dtype=np.float64)
        if self.weights.shape != self.hand_set_weights.shape:
            raise ValueError(f"weights must have shape {self.hand_set_weights.shape}, not {self.weights.shape}")
        # features -> per-form utility in one matrix: (K x M) @ (M x F). Quantised to
        # multiples of 2**-20 so that any summation order (BLAS picks one per batch size)
        # gives bit-identical utilities: one profile alone and inside a batch of a million
        # get the same scores and the same tie-breaks.
        self.feature_to_form = np.round((self.weights @ self.centred_attributes.T) * 2**20) / 2**20
        # For explanations (contribution_terms): per feature its nonzero (attribute, weight)
        # pairs, and per form its centred attributes, as Python numbers; and per form and
        # feature the terms of a feature equal to 1 (all of them today) as sort keys.
        self._nonzero_weights = [[(m, weight) for m, weight in enumerate(row) if weight != 0.0]
                                 for row in self.weights.tolist()]
        self._centred_rows = self.centred_attributes.tolist()
        self._unit_terms = [[self._sortable_terms(k, 1.0, form) for k in range(len(FEATURE_NAMES))]
                            for form in range(len(self.form_ids))]
        self._prepare_safety_arrays()
        self._compile_loops()

    # -- set-up --------------------------------------------------------------------------

    def _weights_from_data(self) -> np.ndarray:
        weights = np.zeros((len(FEATURE_NAMES), len(self.attribute_names)))
        feature_row = {name: i for i, name in enumerate(FEATURE_NAMES)}
        attribute_column = {name: i for i, name in enumerate(self.attribute_names)}
        self.weight_rows = {}
        for row in self.kb.weights:
            k, m = feature_row[row.factor], attribute_column[row.attribute]
            weights[k, m] = row.weight
            self.weight_rows[(k, m)] = row
        return weights

    def _prepare_safety_arrays(self) -> None:
        """Turn the rules in data/ into lookup tables, so that scoring is a handful of
        array operations whatever the batch size."""
        kb = self.kb
        forms = kb.forms
        n_forms, n_answer_caveats = len(forms), len(vocab.ANSWER_CAVEATS)
        self.laxative = np.array([form.laxative for form in forms])
        self.absorption = kb.form_array("absorption")
        self.elemental_fraction = kb.form_array("elemental_fraction")
        self.unit_elemental_mg = kb.form_array("unit_elemental_mg")

        # Kidney bands: rows 0..B-1 are the data's bands, row B is "eGFR unknown". A band's
        # exclusions apply from its excluded_from_age (rule 7: unknown eGFR from 65).
        bands = (*kb.kidney_bands, kb.kidney_unknown_band)
        self.band_upper_edges = np.array([band.egfr_max for band in kb.kidney_bands])
        self.dialysis_band = [band.band for band in bands].index(kb.rules["kidney"]["dialysis_band"])
        self.unknown_band = len(kb.kidney_bands)
        self.band_exclusion_bits = np.zeros((len(bands), n_forms), dtype=np.uint8)
        self.band_excluded_from_age = np.array([band.excluded_from_age for band in bands])
        self.band_caveats = np.zeros((len(bands), n_answer_caveats), dtype=bool)
        self.band_is_moderate = np.zeros(len(bands), dtype=bool)
        for b, band in enumerate(bands):
            if band.action == "exclude_all":
                self.band_exclusion_bits[b, :] |= EXCLUSION_BIT[band.caveat or "kidney_impairment_severe"]
            for form_id in band.excluded_forms:
                self.band_exclusion_bits[b, self.form_position[form_id]] |= EXCLUSION_BIT[band.caveat]
            if band.caveat:
                self.band_caveats[b, CAVEAT_COLUMN[band.caveat]] = True
            self.band_is_moderate[b] = band.caveat == "kidney_impairment_moderate"

        # Caveats and exclusions triggered by profile words (conditions, then goals).
        words = (*vocab.CONDITIONS, *vocab.GOALS)
        self.word_caveats = np.zeros((len(words), n_answer_caveats), dtype=np.float32)
        for code in vocab.ANSWER_CAVEATS:  # caveats.csv's triggered_by
            for word in kb.caveats[code].triggered_by:
                self.word_caveats[words.index(word), CAVEAT_COLUMN[code]] = 1.0
        self.word_caveat_bits = self.word_caveats.astype(np.int64) @ (1 << np.arange(n_answer_caveats, dtype=np.int64))
        # Per word, two GI triggers: "laxatives excluded" and "GI-sensitive" (rule 5).
        gi_columns = np.zeros((len(words), 2), dtype=np.float32)
        for condition, rule in kb.gi_rules.items():  # every condition with a rule is GI-sensitive
            gi_columns[words.index(condition), 0] = rule.laxative_forms == "exclude"
            gi_columns[words.index(condition), 1] = 1.0
        self.word_triggers = gi_columns.astype(np.float64)
        self.laxative_exclusion_bits = np.where(self.laxative, EXCLUSION_BIT["may_worsen_diarrhea"], 0).astype(
            np.uint8)

        answer_caveats = [kb.caveats[code] for code in vocab.ANSWER_CAVEATS]
        self.caveat_severity = np.array([SEVERITY_RANK[c.severity] for c in answer_caveats], dtype=np.int8)
        self.caveat_escalated_severity = np.array(
            [SEVERITY_RANK[c.escalated_severity] if c.escalated_severity else -1 for c in answer_caveats],
            dtype=np.int8)
        self.caveat_escalated_from_age = np.array([c.escalated_from_age or 0 for c in answer_caveats])
        # Rule 1: a critical caveat excludes every form, under its own code.
        self.caveat_exclusion_bits = np.zeros(n_answer_caveats, dtype=np.int64)
        for column, caveat in enumerate(answer_caveats):
            if "critical" in (caveat.severity, caveat.escalated_severity):
                if caveat.code not in EXCLUSION_BIT:
                    raise ValueError(f"caveat '{caveat.code}' can be critical but is no exclusion code (rule 1)")
                self.caveat_exclusion_bits[column] = EXCLUSION_BIT[caveat.code]
        self.form_caveat_warning = np.array([kb.caveats[code].severity != "info" for code in vocab.FORM_CAVEATS])
        interactions = [kb.interactions[c] for c in vocab.INTERACTION_CLASSES]
        self.class_severity = np.array([SEVERITY_RANK[i.severity] for i in interactions], dtype=np.int8)
        self.class_caveat_column = np.array([CAVEAT_COLUMN[i.caveat] if i.caveat else -1 for i in interactions])
        serum = kb.rules["serum_magnesium"]
        self.serum_thresholds = np.array([serum["high_above_mmol_l"], serum["low_below_mmol_l"]], dtype=np.float64)
        # Rule 8: forms that are not daily supplements, allowed only with a goal from an age.
        self.occasional = np.array([form.use == "occasional" for form in forms])
        occasional_rule = kb.rules["occasional_use"]
        self.occasional_goal_word = len(vocab.CONDITIONS) + vocab.GOALS.index(occasional_rule["goal"])
        self.occasional_min_age = occasional_rule["min_age"]
        # Per-form caveats that depend only on the form.
        self.static_form_caveats = np.zeros((n_forms, len(vocab.FORM_CAVEATS)), dtype=bool)
        self.static_form_caveats[:, FORM_CAVEAT_COLUMN["laxative_effect"]] = self.laxative
        self.static_form_caveats[:, FORM_CAVEAT_COLUMN["low_absorption"]] = (
            self.absorption < kb.rules["thresholds"]["low_absorption_below"]
        )
        self.static_form_caveats[:, FORM_CAVEAT_COLUMN["occasional_use_only"]] = self.occasional
        self.static_caution = (self.static_form_caveats & self.form_caveat_warning).any(axis=1)
        # Per age (0..120): units needed for the starting dose, per form (NaN: no dose, no burden).
        units_for_start_by_age = np.ceil(kb.start_dose_by_age[:, None] / self.unit_elemental_mg)
        # (age, units a day allowed) -> forms whose starting dose needs more units than that.
        most_units = max(12, kb.rules["thresholds"]["default_max_units_per_day"])
        # max_units_per_day as given (0: not set) -> the units a day allowed.
        self.allowed_units_by_setting = np.arange(most_units + 1)
        self.allowed_units_by_setting[0] = kb.rules["thresholds"]["default_max_units_per_day"]
        # Per age: the dose range before any max_units_per_day (upper limit floored; NaN for
        # infants, who have none and are excluded anyway).
        self.elemental_max_by_age = np.repeat(np.floor(kb.upper_limit_by_age)[:, None], n_forms, axis=1)
        self.elemental_min_by_age = np.minimum(kb.start_dose_by_age[:, None], self.elemental_max_by_age)
        self.burden_by_age_and_units = units_for_start_by_age[:, None, :] > np.arange(most_units + 1)[None, :, None]
        # Answer caveats set per profile from its medicines (the others come from tables).
        self.interaction_column = CAVEAT_COLUMN["medication_interaction"]
        self.unrecognized_column = CAVEAT_COLUMN["medication_unrecognized"]
        self._prepare_profile_key_tables()

    def _prepare_profile_key_tables(self) -> None:
        """Everything that depends only on the kidney band, the age and the pregnancy and
        breastfeeding flags, per profile key ``((band * ages + age) * 2 + pregnant) * 2 +
        breastfeeding``: the utility of the non-word features, the exclusion bits, the
        answer caveats and the caution flags. Utilities stay exact multiples of 2**-20, so
        they equal the full product bit for bit."""
        kb, rules = self.kb, self.kb.rules
        ages_rule = rules["age_groups"]
        self.ages = len(kb.upper_limit_by_age)
        n_bands = len(self.band_is_moderate)
        band, age, pregnant, breastfeeding = (axis.ravel() for axis in np.meshgrid(
            np.arange(n_bands), np.arange(self.ages), [False, True], [False, True], indexing="ij"))
        keys = ProfileBatch.empty(len(band), len(self.form_ids), keep_names=False)
        keys.age[:], keys.pregnant[:], keys.breastfeeding[:] = age, pregnant, breastfeeding
        kidney_moderate = self.band_is_moderate[band]
        self.key_kidney_moderate = kidney_moderate
        self.key_utility = feature_matrix(keys, kidney_moderate, rules) @ self.feature_to_form  # words all 0

        infant = age < ages_rule["infant_below"]
        band_applies = age >= self.band_excluded_from_age[band]
        too_young_for_occasional = (age < self.occasional_min_age)[:, None] & self.occasional[None, :]
        self.key_exclusion_bits = (
            np.where(band_applies[:, None], self.band_exclusion_bits[band], 0).astype(np.uint8)
            | np.where(infant, EXCLUSION_BIT["infant"], 0).astype(np.uint8)[:, None]
            | np.where(too_young_for_occasional, EXCLUSION_BIT["not_for_daily_use"], 0).astype(np.uint8))
        caveats = self.band_caveats[band].copy()
        caveats[:, CAVEAT_COLUMN["consult_clinician"]] = True
        caveats[:, CAVEAT_COLUMN["infant"]] = infant
        caveats[:, CAVEAT_COLUMN["child_dose_limit"]] = ~infant & (age <= ages_rule["child_up_to"])
        caveats[:, CAVEAT_COLUMN["pregnancy"]] = pregnant
        caveats[:, CAVEAT_COLUMN["breastfeeding"]] = breastfeeding
        self.key_caveats = caveats
        self.key_caution = kidney_moderate[:, None] | self.static_caution
        # One product for the words: their utility rows, then their GI triggers.
        self.word_products = np.concatenate([self.feature_to_form[WORD_FEATURES], self.word_triggers], axis=1)
        self.key_caveat_bits = self.key_caveats.astype(np.int64) @ (1 << np.arange(self.key_caveats.shape[1],
                                                                                      dtype=np.int64))
        self.tables = self._scoring_tables()
        self.packed_tables = pack_tables(self.tables)  # as formwise.models.engine.kernel.score_profiles takes them

    def _compile_loops(self) -> None:
        """Compile the scoring loop of models/engine/kernel.py (or load it from numba's cache) now, at
        start-up: under gunicorn that is once in the master before it forks, instead of in
        every worker's first request. (The feature loop ran already, for the key tables.)
        The first time in a process it says so in the log, and how long it took: a first
        start on a machine compiles for several seconds with nothing else to show."""
        global _loop_ready
        if _loop_ready:
            self.score(ProfileBatch.empty(0, len(self.form_ids), keep_names=False))
            return
        log.info("preparing the scoring loop: compiled on the first start on a machine (up to a minute), "
                 "loaded from numba's cache after (%s)", kernel.score_profiles.stats.cache_path)
        started = time.perf_counter()
        self.score(ProfileBatch.empty(0, len(self.form_ids), keep_names=False))
        compiled = bool(sum(kernel.score_profiles.stats.cache_misses.values()))
        log.info("scoring loop %s in %.1f s", "compiled and cached" if compiled else "loaded from the cache",
                 time.perf_counter() - started)
        _loop_ready = True

    def _scoring_tables(self) -> ScoringTables:
        """The tables above, as the compiled scoring loop reads them."""
        return ScoringTables(
            band_upper_edges=self.band_upper_edges.astype(np.float64),
            dialysis_band=int(self.dialysis_band),
            ages=int(self.ages),
            key_utility=np.ascontiguousarray(self.key_utility),
            word_products=np.ascontiguousarray(self.word_products),
            key_exclusion_bits=np.ascontiguousarray(self.key_exclusion_bits),
            key_caveat_bits=np.ascontiguousarray(self.key_caveat_bits),
            word_caveat_bits=np.ascontiguousarray(self.word_caveat_bits),
            key_caution=np.ascontiguousarray(self.key_caution),
            key_kidney_moderate=np.ascontiguousarray(self.key_kidney_moderate),
            laxative=self.laxative.astype(bool),
            avoided_bit=int(EXCLUSION_BIT["avoided_by_user"]),
            gi_exclusion_bits=self.laxative_exclusion_bits,
            worsens_diarrhea_bit=int(EXCLUSION_BIT["may_worsen_diarrhea"]),
            class_severity=self.class_severity,
            class_caveat_column=self.class_caveat_column.astype(np.int64),
            caveat_severity=self.caveat_severity,
            caveat_escalated_severity=self.caveat_escalated_severity,
            caveat_escalated_from_age=self.caveat_escalated_from_age.astype(np.int64),
            caveat_exclusion_bits=self.caveat_exclusion_bits,
            interaction_column=self.interaction_column,
            unrecognized_column=self.unrecognized_column,
            serum_thresholds=self.serum_thresholds,
            serum_high_column=CAVEAT_COLUMN["serum_magnesium_high"],
            serum_low_column=CAVEAT_COLUMN["serum_magnesium_low"],
            occasional=self.occasional.astype(bool),
            occasional_goal_word=int(self.occasional_goal_word),
            not_for_daily_use_bit=int(EXCLUSION_BIT["not_for_daily_use"]),
            elemental_max_by_age=np.ascontiguousarray(self.elemental_max_by_age),
            elemental_min_by_age=np.ascontiguousarray(self.elemental_min_by_age),
            start_dose_by_age=self.kb.start_dose_by_age.astype(np.float64),
            unit_elemental_mg=self.unit_elemental_mg.astype(np.float64),
            allowed_units_by_setting=self.allowed_units_by_setting.astype(np.int64),
            burden_by_age_and_units=np.ascontiguousarray(self.burden_by_age_and_units),
            static_form_caveat_bits=self.static_form_caveats.astype(np.int64) @ (1 << np.arange(
                len(vocab.FORM_CAVEATS), dtype=np.int64)),
            worsens_diarrhea_column=FORM_CAVEAT_COLUMN["may_worsen_diarrhea"],
            high_unit_burden_column=FORM_CAVEAT_COLUMN["high_unit_burden"],
            worsens_diarrhea_warns=bool(self.form_caveat_warning[FORM_CAVEAT_COLUMN["may_worsen_diarrhea"]]),
            high_unit_burden_warns=bool(self.form_caveat_warning[FORM_CAVEAT_COLUMN["high_unit_burden"]]),
            age_factors=age_factors(self.kb.rules),
            below_share=np.array([float(self.kb.rules["ranking"]["below_share"])]),
        )

    # -- scoring -------------------------------------------------------------------------

    def score(self, batch: ProfileBatch) -> ScoredBatch:
        """Scores, masks, caveats and doses for every profile and form, in one compiled pass
        (models/engine/kernel.py) over the tables built above."""
        arrays = score_profiles(batch.whole_numbers, batch.measurements, batch.flags, *self.packed_tables)
        return ScoredBatch(*arrays, batch=batch)

    # -- explanations ---------------------------------------------------------------------

    def contribution_terms(self, features_row: np.ndarray, forms, limit: int | None = None,
                           min_abs: float = 0.0) -> list[list[tuple[int, int, float]]]:
        """Per form of one profile: (feature, attribute, utility contribution) for the active
        weight terms, largest magnitude first (ties: feature, then attribute order); at most
        ``limit`` terms per form, each at least ``min_abs`` in magnitude.

        Plain Python over the nonzero weights of the profile's active features: a profile has
        a handful of those, and an answer explains three forms, so this is cheaper than any
        array call; the products are the same IEEE operations, in the same order, as
        ``(feature x weight) x centred attribute`` in NumPy. Features equal to 1 (every
        feature the engine builds) take their terms from a table made at start-up."""
        active = [(k, value) for k, value in enumerate(np.asarray(features_row).tolist()) if value != 0.0]
        return self._terms(active, forms, limit, min_abs)

    def contribution_terms_of_bits(self, feature_bits: int, forms, limit: int | None = None,
                                   min_abs: float = 0.0) -> list[list[tuple[int, int, float]]]:
        """contribution_terms for a profile's ScoredBatch.feature_bits (what answers use; they
        keep the result per bit set and form, models/engine/answers.py)."""
        active = [(k, 1.0) for k in range(len(FEATURE_NAMES)) if feature_bits >> k & 1]
        return self._terms(active, forms, limit, min_abs)

    def _terms(self, active: list[tuple[int, float]], forms, limit: int | None,
               min_abs: float) -> list[list[tuple[int, int, float]]]:
        explained = []
        for form in forms:
            unit_terms = self._unit_terms[form]
            terms = [term for k, value in active
                     for term in (unit_terms[k] if value == 1.0 else self._sortable_terms(k, value, form))
                     if -term[0] >= min_abs]
            terms.sort()  # largest magnitude first; ties keep feature, then attribute order
            explained.append([(k, m, contribution) for _, k, m, contribution in terms[:limit]])
        return explained

    def _sortable_terms(self, k: int, value: float, form: int) -> list[tuple[float, int, int, float]]:
        """``(-|contribution|, feature, attribute, contribution)`` of feature ``k`` at ``value``
        for one form, zeros left out: sorting these tuples is the explanation order."""
        centred = self._centred_rows[form]
        terms = [(k, m, (value * weight) * centred[m]) for m, weight in self._nonzero_weights[k]]
        return [(-abs(contribution), k, m, contribution) for k, m, contribution in terms if contribution != 0.0]
