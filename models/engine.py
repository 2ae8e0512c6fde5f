"""The scoring engine: one vectorized computation ranks every form for every profile.

utility = features @ weights @ centred_attributes.T   (n x forms)
score   = logistic(utility)

The contract's hard safety rules are applied afterwards, as masks over that matrix, in
:func:`Engine.score`; nothing in the weights (hand-set or learned) can undo them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import vocabulary as vocab
from models.features import FEATURE_NAMES, ProfileBatch, feature_matrix
from models.knowledge import KnowledgeBase
from models.medicines import MedicineIndex

SEVERITY_RANK = {name: i for i, name in enumerate(vocab.SEVERITIES)}
CAVEAT_COLUMN = {code: i for i, code in enumerate(vocab.ANSWER_CAVEATS)}
FORM_CAVEAT_COLUMN = {code: i for i, code in enumerate(vocab.FORM_CAVEATS)}
EXCLUSION_BIT = {code: np.uint8(1 << i) for i, code in enumerate(vocab.EXCLUSION_CODES)}
HAND_SET = "hand-set"


@dataclass
class ScoredBatch:
    """The engine's answer for n profiles, as arrays (forms in knowledge-base order)."""

    scores: np.ndarray  # float64 (n, F), after the safety masks
    utility_terms: np.ndarray | None  # unused placeholder for callers that want raw utility
    exclusion_bits: np.ndarray  # uint8 (n, F); 0 = eligible
    order: np.ndarray  # int (n, F): form positions, best first; eligible ones lead
    eligible_count: np.ndarray  # int (n,)
    caveats: np.ndarray  # bool (n, len(ANSWER_CAVEATS))
    interaction_severity: np.ndarray  # int8 (n,), -1 none, else SEVERITY_RANK
    max_severity: np.ndarray  # int8 (n,)
    form_caveats: np.ndarray  # bool (n, F, len(FORM_CAVEATS))
    caution: np.ndarray  # bool (n, F)
    elemental_min: np.ndarray  # float64 (n, F) mg/day
    elemental_max: np.ndarray  # float64 (n, F) mg/day
    features: np.ndarray  # float64 (n, K)

    @property
    def excluded(self) -> np.ndarray:
        return self.exclusion_bits != 0


class Engine:
    """Holds the knowledge base as arrays, precomputed once; scores batches of profiles."""

    def __init__(self, knowledge_base: KnowledgeBase, weights: np.ndarray | None = None,
                 model_version: str = HAND_SET):
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
        self._prepare_safety_arrays()

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
        kb = self.kb
        forms = kb.forms
        self.laxative = np.array([form.laxative for form in forms])
        self.absorption = kb.form_array("absorption")
        self.elemental_fraction = kb.form_array("elemental_fraction")
        self.unit_elemental_mg = kb.form_array("unit_elemental_mg")
        self.band_upper_edges = np.array([band.egfr_max for band in kb.kidney_bands])
        band_names = [band.band for band in kb.kidney_bands]
        self.dialysis_band = band_names.index(kb.rules["kidney"]["dialysis_band"])
        n_bands, n_forms = len(kb.kidney_bands), len(forms)
        self.band_excludes = np.zeros((n_bands, n_forms), dtype=bool)
        self.band_excludes_all = np.zeros(n_bands, dtype=bool)
        self.band_caveat = np.full(n_bands, -1)
        for b, band in enumerate(kb.kidney_bands):
            self.band_excludes_all[b] = band.action == "exclude_all"
            for form_id in band.excluded_forms:
                self.band_excludes[b, self.form_position[form_id]] = True
            if band.caveat:
                self.band_caveat[b] = CAVEAT_COLUMN[band.caveat]
        self.moderate_band = band_names.index(
            next(band.band for band in kb.kidney_bands if band.caveat == "kidney_impairment_moderate")
        )
        self.caveat_severity = np.array(
            [SEVERITY_RANK[kb.caveats[code].severity] for code in vocab.ANSWER_CAVEATS], dtype=np.int8
        )
        self.form_caveat_warning = np.array(
            [kb.caveats[code].severity != "info" for code in vocab.FORM_CAVEATS]
        )
        self.class_severity = np.array(
            [SEVERITY_RANK[kb.interactions[c].severity] for c in vocab.INTERACTION_CLASSES], dtype=np.int8
        )
        self.gi_exclude_columns = [
            vocab.CONDITIONS.index(condition)
            for condition, rule in kb.gi_rules.items()
            if rule.laxative_forms == "exclude"
        ]
        self.gi_sensitive_columns = [vocab.CONDITIONS.index(c) for c in vocab.GI_SENSITIVE_CONDITIONS]

        def columns(names, vocabulary):
            return [vocabulary.index(name) for name in names]

        self.cramp_conditions = columns(vocab.CRAMP_TRIGGERS["conditions"], vocab.CONDITIONS)
        self.cramp_goals = columns(vocab.CRAMP_TRIGGERS["goals"], vocab.GOALS)
        self.migraine_conditions = columns(vocab.MIGRAINE_TRIGGERS["conditions"], vocab.CONDITIONS)
        self.migraine_goals = columns(vocab.MIGRAINE_TRIGGERS["goals"], vocab.GOALS)

    # -- scoring -------------------------------------------------------------------------

    def kidney_band(self, batch: ProfileBatch) -> np.ndarray:
        """Band index per profile; -1 when eGFR is unknown and there is no dialysis."""
        known = ~np.isnan(batch.egfr)
        band = np.full(len(batch), -1, dtype=np.int64)
        band[known] = np.searchsorted(self.band_upper_edges, batch.egfr[known], side="right")
        band = np.minimum(band, len(self.band_upper_edges) - 1)
        band[batch.dialysis] = self.dialysis_band
        return band

    def score(self, batch: ProfileBatch) -> ScoredBatch:
        """Scores, masks, caveats and doses for every profile and form, vectorized."""
        n, n_forms = len(batch), len(self.form_ids)
        rules = self.kb.rules
        band = self.kidney_band(batch)
        known_band = band >= 0
        safe_band = np.where(known_band, band, 0)
        kidney_moderate = band == self.moderate_band
        features = feature_matrix(batch, kidney_moderate, rules)
        utility = features @ self.feature_to_form
        scores = 1.0 / (1.0 + np.exp(-utility))

        # ---- hard safety rules: masks applied after scoring --------------------------
        bits = np.zeros((n, n_forms), dtype=np.uint8)
        infant = batch.age < rules["age_groups"]["infant_below"]
        kidney_excludes_all = known_band & self.band_excludes_all[safe_band]
        bits[infant] |= EXCLUSION_BIT["infant"]
        bits[kidney_excludes_all] |= EXCLUSION_BIT["kidney_impairment_severe"]
        listed = known_band[:, None] & self.band_excludes[safe_band]
        bits[listed] |= EXCLUSION_BIT["kidney_impairment_moderate"]
        bits[batch.avoid_forms] |= EXCLUSION_BIT["avoided_by_user"]
        if self.gi_exclude_columns:
            gi_exclude = batch.conditions[:, self.gi_exclude_columns].any(axis=1)
            bits[gi_exclude[:, None] & self.laxative[None, :]] |= EXCLUSION_BIT["may_worsen_diarrhea"]
        gi_sensitive = batch.conditions[:, self.gi_sensitive_columns].any(axis=1)
        scores = self._rank_laxatives_last(scores, bits, gi_sensitive)

        eligible = bits == 0
        eligible_count = eligible.sum(axis=1)
        order = np.argsort(np.where(eligible, -scores, np.inf), axis=1, kind="stable")

        # ---- caveats -----------------------------------------------------------------
        caveats = np.zeros((n, len(vocab.ANSWER_CAVEATS)), dtype=bool)
        caveats[:, CAVEAT_COLUMN["consult_clinician"]] = True
        band_caveat = np.where(known_band, self.band_caveat[safe_band], -1)
        for column in np.unique(band_caveat[band_caveat >= 0]):
            caveats[band_caveat == column, column] = True
        caveats[:, CAVEAT_COLUMN["kidney_function_unknown"]] = ~known_band
        caveats[:, CAVEAT_COLUMN["infant"]] = infant
        caveats[:, CAVEAT_COLUMN["child_dose_limit"]] = (~infant) & (batch.age <= rules["age_groups"]["child_up_to"])
        caveats[:, CAVEAT_COLUMN["pregnancy"]] = batch.pregnant
        caveats[:, CAVEAT_COLUMN["breastfeeding"]] = batch.breastfeeding
        caveats[:, CAVEAT_COLUMN["cramps_evidence_limited"]] = (
            batch.conditions[:, self.cramp_conditions].any(axis=1) | batch.goals[:, self.cramp_goals].any(axis=1)
        )
        caveats[:, CAVEAT_COLUMN["dose_above_upper_limit_in_studies"]] = (
            batch.conditions[:, self.migraine_conditions].any(axis=1)
            | batch.goals[:, self.migraine_goals].any(axis=1)
        )
        for condition in ("myasthenia_gravis", "heart_block"):  # caveat code == condition word
            caveats[:, CAVEAT_COLUMN[condition]] = batch.conditions[:, vocab.CONDITIONS.index(condition)]
        interaction_severity = np.where(
            batch.interaction_classes, self.class_severity[None, :], np.int8(-1)
        ).max(axis=1, initial=-1).astype(np.int8)
        caveats[:, CAVEAT_COLUMN["medication_interaction"]] = interaction_severity >= 0
        caveats[:, CAVEAT_COLUMN["medication_unrecognized"]] = batch.has_unrecognized_medication
        severity = np.where(caveats, self.caveat_severity[None, :], np.int8(-1))
        severity[:, CAVEAT_COLUMN["medication_interaction"]] = np.where(
            caveats[:, CAVEAT_COLUMN["medication_interaction"]], interaction_severity, -1
        )
        max_severity = severity.max(axis=1).astype(np.int8)

        # ---- dose, capped by the age's supplemental upper limit ------------------------
        upper_limit = self.kb.upper_limit_by_age[batch.age]
        start_dose = self.kb.start_dose_by_age[batch.age]
        units = batch.max_units_per_day.astype(np.float64)
        unit_cap = np.where(units[:, None] > 0, units[:, None] * self.unit_elemental_mg[None, :], np.inf)
        elemental_max = np.floor(np.minimum(upper_limit[:, None], unit_cap))
        elemental_min = np.minimum(start_dose[:, None], elemental_max)
        allowed_units = np.where(units > 0, units, rules["thresholds"]["default_max_units_per_day"])
        units_for_start = np.ceil(start_dose[:, None] / self.unit_elemental_mg[None, :])

        form_caveats = np.zeros((n, n_forms, len(vocab.FORM_CAVEATS)), dtype=bool)
        form_caveats[:, :, FORM_CAVEAT_COLUMN["laxative_effect"]] = self.laxative[None, :]
        form_caveats[:, :, FORM_CAVEAT_COLUMN["may_worsen_diarrhea"]] = gi_sensitive[:, None] & self.laxative[None, :]
        form_caveats[:, :, FORM_CAVEAT_COLUMN["low_absorption"]] = (
            self.absorption < rules["thresholds"]["low_absorption_below"]
        )[None, :]
        form_caveats[:, :, FORM_CAVEAT_COLUMN["high_unit_burden"]] = units_for_start > allowed_units[:, None]
        caution = kidney_moderate[:, None] | (form_caveats & self.form_caveat_warning).any(axis=2)

        return ScoredBatch(
            scores=scores,
            utility_terms=None,
            exclusion_bits=bits,
            order=order,
            eligible_count=eligible_count,
            caveats=caveats,
            interaction_severity=interaction_severity,
            max_severity=max_severity,
            form_caveats=form_caveats,
            caution=caution,
            elemental_min=elemental_min,
            elemental_max=elemental_max,
            features=features,
        )

    def _rank_laxatives_last(self, scores: np.ndarray, bits: np.ndarray, gi_sensitive: np.ndarray) -> np.ndarray:
        """Safety rule 5: with diarrhoea, IBS-D or a sensitive stomach no laxative form
        is ranked first. Eligible laxative forms are scaled (keeping their order) to score
        below the best eligible non-laxative form; with none, they are excluded."""
        if not gi_sensitive.any():
            return scores
        eligible = bits == 0
        laxative_ok = eligible & self.laxative[None, :] & gi_sensitive[:, None]
        rows = laxative_ok.any(axis=1)
        if not rows.any():
            return scores
        scores = scores.copy()
        best_other = np.where(eligible & ~self.laxative[None, :], scores, -np.inf).max(axis=1)
        best_laxative = np.where(laxative_ok, scores, -np.inf).max(axis=1)
        no_other = rows & np.isneginf(best_other)
        bits[no_other[:, None] & laxative_ok] |= EXCLUSION_BIT["may_worsen_diarrhea"]
        demote = rows & ~no_other
        factor = np.ones(len(scores))
        factor[demote] = np.minimum(1.0, 0.99 * best_other[demote] / best_laxative[demote])
        scores[laxative_ok] *= np.broadcast_to(factor[:, None], scores.shape)[laxative_ok]
        return scores

    # -- explanations ---------------------------------------------------------------------

    def contributions(self, features_row: np.ndarray, form: int) -> list[tuple[int, int, float]]:
        """(feature, attribute, utility contribution) for one profile and form, for the
        active weight terms, largest magnitude first."""
        terms = []
        for k in np.flatnonzero(features_row):
            for m in np.flatnonzero(self.weights[k]):
                value = features_row[k] * self.weights[k, m] * self.centred_attributes[form, m]
                if value != 0.0:
                    terms.append((int(k), int(m), float(value)))
        terms.sort(key=lambda term: (-abs(term[2]), term[0], term[1]))
        return terms
