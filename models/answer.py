"""Turn a ScoredBatch into the contract's answer objects (plain dicts, ready for JSON).

Only presentation happens here: every decision was made by the engine's arrays."""

from __future__ import annotations

import numpy as np

from models import vocabulary as vocab
from models.engine import EXCLUSION_BIT, Engine, ScoredBatch
from models.features import FEATURE_NAMES, ProfileBatch

SEVERITY_ORDER = {name: i for i, name in enumerate(vocab.SEVERITIES)}


def factor_label(feature: str, attribute: str) -> str:
    """The reason's ``factor``: the profile word, or the form attribute for ``always``."""
    if feature == "always":
        return attribute
    return feature.split(":", 1)[1]


class AnswerBuilder:
    """Builds answers for one engine; texts are looked up per locale from the data."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.kb = engine.kb
        self.forms = self.kb.forms

    def _caveat(self, code: str, locale: str, severity: str | None = None) -> dict:
        caveat = self.kb.caveats[code]
        item = {"code": code, "severity": severity or caveat.severity, "text": caveat.text(locale)}
        if caveat.source:
            item["source"] = caveat.source
        return item

    def answers(self, batch: ProfileBatch, scored: ScoredBatch, limit: int = 3, locale: str = "en",
                explain: bool = False) -> list[dict]:
        return [self.answer(batch, scored, row, limit, locale, explain) for row in range(len(batch))]

    def answer(self, batch: ProfileBatch, scored: ScoredBatch, row: int, limit: int = 3, locale: str = "en",
               explain: bool = False) -> dict:
        kb = self.kb
        ranked = [int(form) for form in scored.order[row, : min(limit, int(scored.eligible_count[row]))]]
        settings = self.kb.rules["reasons"]
        terms = self.engine.contribution_terms(
            scored.features[row], ranked, settings["max_reasons"], settings["min_contribution"]) if ranked else []
        recommendations = [
            self._recommendation(scored, row, form_index, rank, locale, explain, terms[rank - 1])
            for rank, form_index in enumerate(ranked, 1)
        ]

        excluded = []
        for form_index in np.flatnonzero(scored.exclusion_bits[row]):
            bits = scored.exclusion_bits[row, form_index]
            reasons = [
                {"code": code, "text": kb.caveats[code].text(locale)}
                for code in vocab.EXCLUSION_CODES
                if bits & EXCLUSION_BIT[code]
            ]
            form = self.forms[form_index]
            excluded.append({"form": form.id, "name": form.name, "reasons": reasons})

        caveats = []
        for code in vocab.ANSWER_CAVEATS:
            column = vocab.ANSWER_CAVEATS.index(code)
            if scored.caveats[row, column]:
                severity = None
                if code == "medication_interaction":
                    severity = vocab.SEVERITIES[scored.interaction_severity[row]]
                caveats.append(self._caveat(code, locale, severity))
        caveats.sort(key=lambda item: -SEVERITY_ORDER[item["severity"]])  # stable: contract order within

        interactions = []
        for name, classes in batch.recognized_medications[row] if batch.recognized_medications else ():
            for class_position in classes:
                drug_class = vocab.INTERACTION_CLASSES[class_position]
                interaction = kb.interactions[drug_class]
                interactions.append(
                    {
                        "medication": name,
                        "drug_class": drug_class,
                        "severity": interaction.severity,
                        "text": interaction.text(locale),
                        "separation_hours": {
                            "before_magnesium": interaction.before_magnesium_h,
                            "after_magnesium": interaction.after_magnesium_h,
                        },
                        "source": interaction.source,
                    }
                )

        return {
            "knowledge_base_version": kb.version,
            "model_version": self.engine.model_version,
            "max_severity": vocab.SEVERITIES[scored.max_severity[row]],
            "recommendations": recommendations,
            "excluded": excluded,
            "caveats": caveats,
            "interactions": interactions,
            "unrecognized_medications": list(batch.unrecognized_medications[row])
            if batch.unrecognized_medications
            else [],
            "disclaimer": kb.texts["disclaimer"].get(locale) or kb.texts["disclaimer"][vocab.DEFAULT_LOCALE],
        }

    def _recommendation(self, scored: ScoredBatch, row: int, form_index: int, rank: int, locale: str,
                        explain: bool, terms: list[tuple[int, int, float]]) -> dict:
        form = self.forms[form_index]
        form_caveats = [
            self._caveat(code, locale)
            for position, code in enumerate(vocab.FORM_CAVEATS)
            if scored.form_caveats[row, form_index, position]
        ]
        elemental_min = float(scored.elemental_min[row, form_index])
        elemental_max = float(scored.elemental_max[row, form_index])
        fraction = self.engine.elemental_fraction[form_index]
        return {
            "rank": rank,
            "form": form.id,
            "name": form.name,
            "score": round(float(scored.scores[row, form_index]), 4),
            "status": "caution" if scored.caution[row, form_index] else "suitable",
            "reasons": self._reasons(terms, locale),
            "caveats": form_caveats,
            "dose": {
                "elemental_mg_per_day": {"min": int(elemental_min), "max": int(elemental_max)},
                "compound_mg_per_day": {
                    "min": round(elemental_min / fraction),
                    "max": round(elemental_max / fraction),
                },
            },
        }

    def _reasons(self, terms: list[tuple[int, int, float]], locale: str) -> list[dict]:
        reasons = []
        for k, m, value in terms:
            feature, attribute = FEATURE_NAMES[k], self.engine.attribute_names[m]
            weight_row = self.engine.weight_rows.get((k, m))
            positive = value > 0
            if weight_row is not None:
                texts = weight_row.reason_plus if positive else weight_row.reason_minus
                text = texts.get(locale) or texts[vocab.DEFAULT_LOCALE]
            else:  # a learned weight with no hand-written text
                text = f"{attribute.replace('_', ' ')} ({'better' if positive else 'worse'} than most forms)"
            reasons.append({"factor": factor_label(feature, attribute), "effect": "+" if positive else "-",
                            "text": text})
        return reasons
