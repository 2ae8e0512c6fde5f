"""Turn a ScoredBatch into the contract's answer objects (plain dicts, ready for JSON).

Only presentation happens here: every decision was made by the engine's arrays. With
``explain`` an answer also shows where each score comes from (an additive breakdown), the
evidence grade and citation behind each reason, and the dose in tablets or capsules; with a
medicine schedule it carries the timing plan of models/engine/timing.py."""

from __future__ import annotations

import functools
import math
from pathlib import Path

from formwise.data import DATA_DIR
from formwise.models.engine.features import ProfileBatch
from formwise.models.engine.kernel import (
    AGE,
    CAUTION,
    CAVEAT_BITS,
    ELEMENTAL_MAX,
    ELEMENTAL_MIN,
    ELIGIBLE_COUNT,
    ESCALATED_CAVEAT_BITS,
    EXCLUSION_BITS,
    FEATURE_BITS,
    FORM_CAVEAT_BITS,
    INTERACTION_SEVERITY,
    MAX_SEVERITY,
    ORDER,
    SCORE,
)
from formwise.models.engine.scoring import EXCLUSION_BIT, Engine, ScoredBatch
from formwise.models.engine.timing import TimingPlanner
from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import EVIDENCE_GRADES, FEATURE_NAMES, KnowledgeBaseError, hours_value
from formwise.models.knowledge.csv_fields import choice_cell, read_rows

SEVERITY_ORDER = {name: i for i, name in enumerate(vocab.SEVERITIES)}
EXCLUSION_FLAG = {code: int(bit) for code, bit in EXCLUSION_BIT.items()}  # Python ints, cheaper to test
# logistic(0): the score of a form with average attributes when no profile factor applies.
SCORE_BASELINE = 0.5
CONTRIBUTION_PLACES = 6
SCORE_PLACES = 4
EXPLANATION_METHOD = (
    "score = 0.5 + the sum of the contributions. Each weight x attribute term contributes its utility "
    "times the average slope of the logistic curve between utility 0 and the form's total utility, "
    "that is (score before safety rules - 0.5) x term utility / total utility; a change a safety rule "
    "makes after scoring is a contribution of its own."
)
SOURCE_GRADES_PATH = DATA_DIR / "source_grades.csv"


@functools.cache
def load_source_grades(path: Path = SOURCE_GRADES_PATH) -> dict[str, tuple[str, str]]:
    """source id -> (evidence grade A-D, study design): the grade a reason carries when no
    form-specific evidence row grades it (data/source_grades.csv)."""
    grades = {}
    for row, record in read_rows(path, ("source", "grade", "design")):
        if record["source"] in grades:
            raise KnowledgeBaseError(path, row, "source", f"duplicate source '{record['source']}'")
        grades[record["source"]] = (choice_cell(path, row, record, "grade", EVIDENCE_GRADES), record["design"])
    return grades


def apportion(values: list[float], total: float, places: int = CONTRIBUTION_PLACES) -> list[float]:
    """``values`` rounded to ``places`` so that they add up to ``total`` (itself given to
    ``places`` or fewer): the rounding difference goes, one unit at a time, to the largest
    values first."""
    if not values:
        return []
    scale = 10**places
    units = [round(value * scale) for value in values]
    difference = round(total * scale) - sum(units)
    order = sorted(range(len(values)), key=lambda i: -abs(values[i]))
    step = 1 if difference > 0 else -1
    for i in range(abs(difference)):
        units[order[i % len(order)]] += step
    return [unit / scale for unit in units]


def factor_label(feature: str, attribute: str) -> str:
    """The reason's ``factor``: the profile word, or the form attribute for ``always``."""
    if feature == "always":
        return attribute
    return feature.split(":", 1)[1]


class AnswerBuilder:
    """Builds answers for one engine; texts are looked up per locale from the data.

    The parts of an answer that follow from a few of the engine's outputs (a caveat set, a
    form's exclusion bits, a factor set's reasons for a form, an interaction class) are built
    once per value and locale, in bounded memos, and shared by every answer that has them:
    answers repeat the same few. Shared parts are read-only: the lists an answer holds are
    its own, the dicts in them are not. Whoever changes a part copies it first (explain
    copies the reasons it adds evidence to); tests/models/engine/test_answer_sharing.py checks
    that every path leaves the shared parts as they were built."""

    MEMO_SIZE = 4096  # per memo: values seen, bounded; a miss only costs the build

    def __init__(self, engine: Engine):
        self.engine = engine
        self.kb = engine.kb
        self.forms = self.kb.forms
        self.source_grades = load_source_grades()
        self.timing = TimingPlanner(self.kb, engine.medicines)
        # Python floats: arithmetic on NumPy scalars costs several times as much per answer.
        self.elemental_fractions = engine.elemental_fraction.tolist()
        self.max_reasons = self.kb.rules["reasons"]["max_reasons"]
        self.min_contribution = self.kb.rules["reasons"]["min_contribution"]
        self.medicines = engine.medicines
        self.disclaimers = self.kb.texts["disclaimer"]
        # Rule 10: the answer caveats that silence "+" reasons (their bit), each with the bits of
        # the scored attributes it silences; checked only when one of them is raised.
        attribute_bit = {name: 1 << m for m, name in enumerate(engine.attribute_names)}
        self.silencing = [(1 << column, sum(attribute_bit[name] for name in self.kb.caveats[code].limits_evidence))
                          for column, code in enumerate(vocab.ANSWER_CAVEATS) if self.kb.caveats[code].limits_evidence]
        self.silencing_bits = sum(bit for bit, _ in self.silencing)
        self.duplicate_magnesium_bit = 1 << vocab.ANSWER_CAVEATS.index("duplicate_magnesium")
        self._product_class = vocab.INTERACTION_CLASSES.index("magnesium_product")
        self.evening_factors = frozenset(FEATURE_NAMES.index(factor)
                                         for factor in self.kb.rules["timing"]["evening_for"])
        memo = functools.lru_cache(maxsize=self.MEMO_SIZE)
        self._caveat = memo(self._build_caveat)
        self._answer_caveats = memo(self._build_answer_caveats)
        self._form_caveats = memo(self._build_form_caveats)
        self._exclusion = memo(self._build_exclusion)
        self._interaction = memo(self._build_interaction)
        self._explained = memo(self._build_explained)
        self._reason = memo(self._build_reason)

    def answers(self, batch: ProfileBatch, scored: ScoredBatch, limit: int = 3, locale: str = "en",
                explain: bool = False, schedule: dict | None = None, waking_hours: dict | None = None) -> list[dict]:
        return [self.answer(batch, scored, row, limit, locale, explain, schedule, waking_hours)
                for row in range(len(batch))]

    def answer(self, batch: ProfileBatch, scored: ScoredBatch, row: int, limit: int = 3, locale: str = "en",
               explain: bool = False, schedule: dict | None = None, waking_hours: dict | None = None) -> dict:
        """One contract answer. ``schedule`` ({medicine: "HH:MM" or [times]}) adds ``timing``."""
        kb = self.kb
        # One call each for the profile's values and its forms' values; the rest is indexing
        # Python lists, which costs a fraction of indexing NumPy arrays one number at a time.
        profile = scored.per_profile[row].tolist()
        per_form = scored.per_form[:, row].tolist()
        caveat_bits = profile[CAVEAT_BITS]
        silenced = 0
        if caveat_bits & self.silencing_bits:
            for bit, attributes in self.silencing:
                if caveat_bits & bit:
                    silenced |= attributes
        ranked = profile[ORDER: ORDER + min(limit, profile[ELIGIBLE_COUNT])]
        recommendations = [
            self._recommendation(scored, row, per_form, form_index, rank, locale, explain, profile[FEATURE_BITS],
                                 silenced)
            for rank, form_index in enumerate(ranked, 1)
        ]
        recognized = batch.recognized_medications[row] if batch.recognized_medications else ()
        unrecognized = list(batch.unrecognized_medications[row]) if batch.unrecognized_medications else []
        caveats = list(self._answer_caveats(caveat_bits, profile[INTERACTION_SEVERITY],
                                            profile[ESCALATED_CAVEAT_BITS], locale))
        if caveat_bits & self.duplicate_magnesium_bit:
            self._name_magnesium_products(caveats, recognized, int(batch.whole_numbers[row, AGE]), locale)
        answer = {
            "knowledge_base_version": kb.version,
            "model_version": self.engine.model_version,
            "max_severity": vocab.SEVERITIES[profile[MAX_SEVERITY]],
            "recommendations": recommendations,
            "excluded": [self._exclusion(form_index, int(bits), locale)
                         for form_index, bits in enumerate(per_form[EXCLUSION_BITS]) if bits],
            "caveats": caveats,
            "interactions": [{**self._interaction(component, locale), "medication": name}
                             for name, components in recognized for component in components],
            "unrecognized_medications": unrecognized,
            "medication_suggestions": self._suggestions(unrecognized) if unrecognized else [],
            "disclaimer": self.disclaimers.get(locale) or self.disclaimers[vocab.DEFAULT_LOCALE],
        }
        if schedule is not None:
            times = {name: [value] if isinstance(value, str) else list(value) for name, value in schedule.items()}
            evening = any(profile[FEATURE_BITS] >> k & 1 for k in self.evening_factors)
            answer["timing"] = self.timing.plan(list(recognized), times, waking_hours, locale, evening)
        return answer

    def _suggestions(self, unrecognized: list[str]) -> list[dict]:
        """Known names close to each unrecognised one: offered, never taken for it."""
        suggestions = []
        for sent in unrecognized:
            close = self.medicines.suggest(sent)
            if close:
                suggestions.append({"sent": sent, "did_you_mean": list(close)})
        return suggestions

    def _name_magnesium_products(self, caveats: list[dict], recognized, age: int, locale: str) -> None:
        """Rule 9: the duplicate_magnesium caveat names the magnesium-containing medicines and
        the upper limit their magnesium counts toward (a copy: the shared one stays a template)."""
        names = [name for name, components in recognized
                 if any(self.medicines.component_class[c] == self._product_class for c in components)]
        limit = self.kb.upper_limit_by_age[age]
        phrase = self._text("no_upper_limit_phrase", locale) if math.isnan(limit) else \
            self._text("upper_limit_phrase", locale).format(mg=f"{limit:.0f}")
        for position, caveat in enumerate(caveats):
            if caveat["code"] == "duplicate_magnesium":
                text = caveat["text"].format(medicines=", ".join(dict.fromkeys(names)), upper_limit=phrase)
                caveats[position] = {**caveat, "text": text}

    def _text(self, key: str, locale: str) -> str:
        texts = self.kb.texts[key]
        return texts.get(locale) or texts[vocab.DEFAULT_LOCALE]

    # -- shared parts, built once per value (see the class docstring) --------------------

    def _build_caveat(self, code: str, locale: str, severity: str | None = None) -> dict:
        caveat = self.kb.caveats[code]
        built = {"code": code, "severity": severity or caveat.severity, "text": caveat.text(locale)}
        if caveat.source:
            built["source"] = caveat.source
        return built

    def _build_answer_caveats(self, caveat_bits: int, interaction_severity: int, escalated_bits: int,
                              locale: str) -> tuple[dict, ...]:
        """The answer's caveats for its caveat bits, most severe first (contract order within);
        ``escalated_bits`` carry their higher severity for the person's age."""
        caveats = []
        for column, code in enumerate(vocab.ANSWER_CAVEATS):
            if caveat_bits >> column & 1:
                severity = None
                if code == "medication_interaction":
                    severity = vocab.SEVERITIES[interaction_severity]
                elif escalated_bits >> column & 1:
                    severity = self.kb.caveats[code].escalated_severity
                caveats.append(self._caveat(code, locale, severity))
        caveats.sort(key=lambda item: -SEVERITY_ORDER[item["severity"]])  # stable
        return tuple(caveats)

    def _build_form_caveats(self, caveat_bits: int, locale: str) -> tuple[dict, ...]:
        return tuple(self._caveat(code, locale) for column, code in enumerate(vocab.FORM_CAVEATS)
                     if caveat_bits >> column & 1)

    def _build_exclusion(self, form_index: int, bits: int, locale: str) -> dict:
        """The ``excluded`` item of a form with these exclusion bits."""
        form = self.forms[form_index]
        reasons = [{"code": code, "text": self.kb.caveats[code].text(locale)}
                   for code in vocab.EXCLUSION_CODES if bits & EXCLUSION_FLAG[code]]
        return {"form": form.id, "name": form.name_in(locale), "reasons": reasons}

    def _build_interaction(self, component: int, locale: str) -> dict:
        """An ``interactions`` item of one ingredient and class (its own label's figures where
        they were read, else its class's); each answer puts the typed name in a copy."""
        ingredient, drug_class = self.medicines.components[component]
        interaction = self.medicines.component_interaction[component]
        separation = None
        if interaction.management != "avoid":  # no window makes "avoid" safe
            separation = {"before_magnesium": hours_value(interaction.before_magnesium_h),
                          "after_magnesium": hours_value(interaction.after_magnesium_h)}
        return {
            "medication": None,
            "drug_class": drug_class,
            "ingredient": ingredient,
            "severity": interaction.severity,
            "management": interaction.management,
            "text": interaction.text(locale),
            "separation_hours": separation,
            "source": interaction.source,
        }

    def _build_explained(self, form_index: int, feature_bits: int, silenced: int,
                         locale: str) -> tuple[tuple, tuple[dict, ...]]:
        """A form's reasons for a set of profile factors: the weight terms behind them
        (largest first, formwise.models.engine.scoring.Engine.contribution_terms) and their reason objects.
        Rule 10: a "+" term on a ``silenced`` attribute (bit m for attribute m: evidence the
        answer's own caveat calls limited for this person) is no reason."""
        kept, reasons, said = [], [], set()
        for k, m, value in self.engine.contribution_terms_of_bits(feature_bits, [form_index], None,
                                                                  self.min_contribution)[0]:
            if value > 0 and silenced >> m & 1:
                continue
            reason = self._reason(k, m, value > 0, locale)
            if (reason["effect"], reason["text"]) in said:  # a goal and a condition can say the same
                continue
            said.add((reason["effect"], reason["text"]))
            kept.append((k, m, value))
            reasons.append(reason)
            if len(kept) == self.max_reasons:
                break
        return tuple(kept), tuple(reasons)

    def _recommendation(self, scored: ScoredBatch, row: int, per_form: list[list[float]], form_index: int, rank: int,
                        locale: str, explain: bool, feature_bits: int, silenced: int = 0) -> dict:
        """``per_form`` is the profile's per-form planes as lists (kernel.SCORE ...)."""
        form = self.forms[form_index]
        terms, reasons = self._explained(form_index, feature_bits, silenced, locale)
        elemental_min = per_form[ELEMENTAL_MIN][form_index]
        elemental_max = per_form[ELEMENTAL_MAX][form_index]
        fraction = self.elemental_fractions[form_index]
        recommendation = {
            "rank": rank,
            "form": form.id,
            "name": form.name_in(locale),
            "score": round(per_form[SCORE][form_index], SCORE_PLACES),
            "status": "caution" if per_form[CAUTION][form_index] else "suitable",
            "reasons": [dict(reason) for reason in reasons] if explain else list(reasons),
            "caveats": list(self._form_caveats(int(per_form[FORM_CAVEAT_BITS][form_index]), locale)),
            "dose": {
                "elemental_mg_per_day": {"min": int(elemental_min), "max": int(elemental_max)},
                "compound_mg_per_day": {
                    "min": round(elemental_min / fraction),
                    "max": round(elemental_max / fraction),
                },
            },
        }
        if explain:
            for reason, (k, m, _) in zip(recommendation["reasons"], terms, strict=True):
                weight_row = self.engine.weight_rows.get((k, m))
                reason["attribute"] = self.engine.attribute_names[m]
                reason["evidence"] = self._evidence(form_index, m, weight_row.source if weight_row else None)
            recommendation["dose"]["units_per_day"] = self._units_per_day(form_index, elemental_min, elemental_max)
            recommendation["explanation"] = self._explanation(scored, row, form_index, recommendation["score"])
        return recommendation

    # -- explanations ---------------------------------------------------------------------

    def _explanation(self, scored: ScoredBatch, row: int, form_index: int, reported_score: float) -> dict:
        """The score as baseline + contributions that add up to it exactly (to the places shown)."""
        features_row = scored.features[row]
        utility = float(features_row @ self.engine.feature_to_form[:, form_index])
        before_rules = 1.0 / (1.0 + math.exp(-utility))
        terms = self.engine.contribution_terms(features_row, [form_index])[0]
        total = sum(value for _, _, value in terms)
        shares = [(before_rules - SCORE_BASELINE) * value / total if total else 0.0 for _, _, value in terms]
        items = []
        for (k, m, value), share in zip(terms, shares, strict=True):
            feature, attribute = FEATURE_NAMES[k], self.engine.attribute_names[m]
            weight_row = self.engine.weight_rows.get((k, m))
            items.append({
                "kind": "term",
                "factor": factor_label(feature, attribute),
                "attribute": attribute,
                "weight": float(self.engine.weights[k, m]),
                "attribute_vs_average": round(float(self.engine.centred_attributes[form_index, m]), 4),
                "utility": round(value, CONTRIBUTION_PLACES),
                "score": share,
                "source": weight_row.source if weight_row is not None else None,
            })
        # The one change the engine makes after scoring: safety rule 5 scales laxative forms
        # below the best non-laxative form (models/engine/kernel.py).
        adjustment = float(scored.scores[row, form_index]) - (before_rules if total else SCORE_BASELINE)
        if abs(adjustment) >= 0.5 * 10**-CONTRIBUTION_PLACES:
            items.append({"kind": "safety_rule", "factor": "rank_laxatives_below_others",
                          "attribute": None, "weight": None, "attribute_vs_average": None, "utility": None,
                          "score": adjustment, "source": None})
        for item, value in zip(items, apportion([item["score"] for item in items],
                                                 reported_score - SCORE_BASELINE), strict=True):
            item["score"] = value
        return {"baseline": SCORE_BASELINE, "utility": round(utility, CONTRIBUTION_PLACES),
                "score_before_safety_rules": round(before_rules, CONTRIBUTION_PLACES),
                "method": EXPLANATION_METHOD, "contributions": items}

    def _evidence(self, form_index: int, attribute_column: int, weight_source: str | None) -> dict | None:
        """The evidence behind one reason: the form's own evidence row for a goal when there
        is one (its grade and source), else the source of the form's attribute value, else
        the weight's source, graded by data/source_grades.csv."""
        form = self.forms[form_index]
        attribute = self.engine.attribute_names[attribute_column]
        grade = None
        if attribute.startswith("evidence_"):
            evidence = form.evidence.get(attribute.removeprefix("evidence_"))
            source, grade = (evidence.source, evidence.grade) if evidence else (weight_source, None)
        else:
            source = form.attributes[attribute].source if attribute in form.attributes else weight_source
        if source is None:
            return None
        design = self.source_grades.get(source, (None, None))
        citation = self.kb.citations[source]
        return {"grade": grade or design[0], "design": design[1], "source": source, "title": citation.title,
                "year": citation.year, "url": citation.url}

    def _units_per_day(self, form_index: int, elemental_min: float, elemental_max: float) -> list[dict]:
        """The daily dose in the form's typical unit (tablet, capsule or 5 mL) from the data:
        at least enough units for the lower dose, never more than the upper one allows."""
        form = self.forms[form_index]
        unit = form.attributes["unit_elemental_mg"]
        most = math.floor(elemental_max / unit.value + 1e-9)
        fewest = min(math.ceil(elemental_min / unit.value - 1e-9), most)
        return [{"unit_elemental_mg": unit.value,
                 "unit_compound_mg": round(unit.value / self.engine.elemental_fraction[form_index]),
                 "min": fewest, "max": most, "fits_dose": most >= 1, "note": unit.note, "source": unit.source}]

    def _build_reason(self, k: int, m: int, positive: bool, locale: str) -> dict:
        feature, attribute = FEATURE_NAMES[k], self.engine.attribute_names[m]
        weight_row = self.engine.weight_rows.get((k, m))
        if weight_row is not None:
            texts = weight_row.reason_plus if positive else weight_row.reason_minus
            text = texts.get(locale) or texts[vocab.DEFAULT_LOCALE]
        else:  # a learned weight with no hand-written text
            text = f"{attribute.replace('_', ' ')} ({'better' if positive else 'worse'} than most forms)"
        return {"factor": factor_label(feature, attribute), "effect": "+" if positive else "-", "text": text}
