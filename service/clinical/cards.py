"""The CDS Hooks card for one answer, written for the clinician: the decision first in the
summary, the detail in Markdown without second person or raw codes, suggestions that
replace or remove a draft magnesium order the patient should not have, links (the evidence
of the top form, the patient's handout) and a small coded set of override reasons.

Every word comes from data/locales/ui.csv (English and German); numbers follow the
locale. The engine's answer decides; this module only words it."""

from __future__ import annotations

import copy
import re
import uuid

from formwise.models.knowledge.base import KnowledgeBase, duration_words
from formwise.models.knowledge.codes import PROFILE_FLAGS
from formwise.models.knowledge.ui_texts import ui_text
from formwise.service.api.locale_format import format_date, format_number
from formwise.service.clinical.fhir_profile import FhirReading

SUMMARY_MAX_CHARACTERS = 139  # the specification: fewer than 140
RANKED_IN_CARD = 3
OVERRIDE_REASON_SYSTEM = "urn:formwise:cds-override-reason"
OVERRIDE_REASON_CODES = ("supervised-monitoring", "benefit-outweighs-risk", "record-out-of-date",
                         "patient-declined", "not-relevant")
# Characters that could turn text into markup mid-line (every line starts with our own marker).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|~])")


def markdown_text(value) -> str:
    """Text from the patient record or the request, escaped so that it stays text in Markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


def shortened(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX_CHARACTERS else text[: SUMMARY_MAX_CHARACTERS - 1].rstrip() + "…"


class CardWriter:
    """Writes cards for one knowledge base in one locale."""

    def __init__(self, knowledge_base: KnowledgeBase, locale: str, base_url: str, max_observation_age_days: int):
        self.kb = knowledge_base
        self.locale = locale
        self.base_url = base_url.rstrip("/") + "/"
        self.max_age_days = max_observation_age_days
        self.forms = {form.id: form for form in knowledge_base.forms}

    def text(self, key: str, **values) -> str:
        return ui_text(key, self.locale, **values)

    def number(self, value: float) -> str:
        return format_number(value, self.locale)

    def date(self, iso_date: str | None) -> str:
        return format_date(iso_date, self.locale) or self.text("cds.unknown_date")

    # -- the card -----------------------------------------------------------------------

    def card(self, answer: dict, reading: FhirReading, handout_url: str | None) -> dict:
        """``answer`` is the engine's answer with every eligible form ranked (limit 20)."""
        ordered = reading.ordered[0] if reading.ordered else None
        verdict = self._verdict(answer, ordered) if ordered else None
        card = {
            "uuid": str(uuid.uuid4()),
            "summary": shortened(self._summary(answer, ordered, verdict)),
            "indicator": self._indicator(answer, verdict),
            "detail": self._detail(answer, reading, ordered, verdict),
            "source": {"label": self.text("cds.source_label"), "url": self.base_url + "docs"},
            "overrideReasons": [{"system": OVERRIDE_REASON_SYSTEM, "code": code,
                                 "display": self.text(f"cds.override.{code}")} for code in OVERRIDE_REASON_CODES],
            "links": self._links(answer, handout_url),
        }
        suggestions = self._suggestions(answer, ordered, verdict)
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = "at-most-one"
        return card

    def _verdict(self, answer: dict, ordered: dict) -> dict:
        """Whether the ordered form is excluded for this patient (and why), or allowed."""
        form = ordered["form"]
        name = self.forms[form].name_in(self.locale) if form in self.forms else ordered["label"]
        excluded = {item["form"]: [reason["code"] for reason in item["reasons"]] for item in answer["excluded"]}
        if form is None:  # a salt no form of the knowledge base is: reported, not judged
            return {"name": name, "excluded": False, "unranked": True, "recommendation": None}
        if form in excluded:
            return {"name": name, "excluded": True, "why": [self.text(f"cds.why.{code}") for code in excluded[form]]}
        recommendation = next((item for item in answer["recommendations"] if item["form"] == form), None)
        return {"name": name, "excluded": False, "recommendation": recommendation}

    def _indicator(self, answer: dict, verdict: dict | None) -> str:
        if verdict and verdict["excluded"]:
            return "critical" if answer["max_severity"] == "critical" else "warning"
        return answer["max_severity"]

    def _summary(self, answer: dict, ordered: dict | None, verdict: dict | None) -> str:
        top = answer["recommendations"][:RANKED_IN_CARD]
        if verdict is not None and not verdict.get("unranked"):
            if verdict["excluded"]:
                reason = verdict["why"][0]
                if top:
                    return self.text("cds.summary_order_excluded", form=verdict["name"], reason=reason,
                                     alternative=top[0]["name"])
                return self.text("cds.summary_order_excluded_none", form=verdict["name"], reason=reason)
            recommendation = verdict["recommendation"]
            warnings = [caveat for caveat in answer["caveats"] if caveat["severity"] != "info"]
            if (recommendation and recommendation["status"] == "caution") or warnings:
                reason = self._short_caveat(warnings[0]["code"]) if warnings else self.text("cds.status_caution")
                return self.text("cds.summary_order_caution", form=verdict["name"], reason=reason)
            return self.text("cds.summary_order_suitable", form=verdict["name"])
        if not top:
            critical = [caveat["code"] for caveat in answer["caveats"] if caveat["severity"] == "critical"]
            return self.text("cds.summary_none", reason=self.text(f"cds.why.{critical[0]}") if critical
                             else self.text("cds.none"))
        forms = ", ".join(item["name"] for item in top)
        warnings = any(caveat["severity"] != "info" for caveat in answer["caveats"])
        return self.text("cds.summary_warnings" if warnings else "cds.summary_ranked", forms=forms)

    def _short_caveat(self, code: str) -> str:
        """A caveat's clinician text, up to its first colon: what it is about."""
        return self.text(f"cds.caveat.{code}", medicines="").split(":")[0]

    # -- detail -------------------------------------------------------------------------

    def _detail(self, answer: dict, reading: FhirReading, ordered: dict | None, verdict: dict | None) -> str:
        lines: list[str] = []
        if verdict is not None:
            if verdict.get("unranked"):
                ordered_text = self.text("cds.ordered_unranked", form=verdict["name"])
            elif verdict["excluded"]:
                ordered_text = self.text("cds.ordered_excluded", form=verdict["name"],
                                         reasons="; ".join(verdict["why"]))
            else:
                status = (verdict["recommendation"] or {}).get("status", "caution")
                ordered_text = self.text("cds.ordered_allowed", form=verdict["name"],
                                         status=self.text(f"cds.status_{status}"))
            lines += [f"**{self.text('cds.ordered_heading')}**: " + markdown_text(ordered_text), ""]
        top = answer["recommendations"][:RANKED_IN_CARD]
        if top:
            lines.append(f"**{self.text('cds.ranked_heading')}**\n")
            for item in top:
                status = self.text(f"cds.status_{item['status']}")
                lines.append(f"{item['rank']}. **{markdown_text(item['name'])}** ({status}): "
                             + markdown_text(self._dose(item)) + ".")
                for reason in item["reasons"]:
                    lines.append(f"    - {reason['effect']} {markdown_text(reason['text'])}")
                if item["caveats"]:
                    lines.append("    - " + markdown_text(", ".join(self.text(f"cds.form_caveat.{caveat['code']}")
                                                                    for caveat in item["caveats"])))
            lines.append("")
        if answer["excluded"]:
            excluded = "; ".join(f"{item.get('name') or item['form']} ("
                                 + ", ".join(self.text(f"cds.why.{reason['code']}") for reason in item["reasons"]) + ")"
                                 for item in answer["excluded"])
            lines += [f"**{self.text('cds.excluded_heading')}**: {markdown_text(excluded)}", ""]
        lines.append(f"**{self.text('cds.caveats_heading')}**\n")
        products = ", ".join(dict.fromkeys(reading.medication_labels.get(i["medication"], i["medication"])
                                           for i in answer["interactions"] if i["drug_class"] == "magnesium_product"))
        for caveat in answer["caveats"]:
            lines.append(f"- **{self.text('cds.severity_' + caveat['severity'])}**: "
                         + markdown_text(self.text(f"cds.caveat.{caveat['code']}", medicines=products)))
        lines.append("")
        if answer["interactions"]:
            lines.append(f"**{self.text('cds.interactions_heading')}**\n")
            for interaction in answer["interactions"]:
                lines.append("- " + self._interaction(interaction, reading))
            lines.append("")
        lines += self._data_used(answer, reading)
        lines += ["", f"_{markdown_text(self.text('cds.caveat.consult_clinician'))}_"]
        return "\n".join(lines)

    def _dose(self, item: dict) -> str:
        dose = item["dose"]
        return self.text("cds.dose", min=self.number(dose["elemental_mg_per_day"]["min"]),
                         max=self.number(dose["elemental_mg_per_day"]["max"]),
                         compound_min=self.number(dose["compound_mg_per_day"]["min"]),
                         compound_max=self.number(dose["compound_mg_per_day"]["max"]))

    def _interaction(self, interaction: dict, reading: FhirReading) -> str:
        medication = reading.medication_labels.get(interaction["medication"], interaction["medication"])
        values = {"medication": medication, "ingredient": interaction["ingredient"], "source": ""}
        management = interaction["management"]
        if management == "avoid":
            text = self.text("cds.interaction_avoid", **values)
        elif management == "monitor":
            text = self.text(f"cds.interaction_monitor.{interaction['drug_class']}", **values)
        else:
            hours = interaction["separation_hours"]
            words = {"before": duration_words(hours["before_magnesium"], self.locale),
                     "after": duration_words(hours["after_magnesium"], self.locale)}
            key = "cds.interaction_separate" if hours["before_magnesium"] else "cds.interaction_separate_after"
            text = self.text(key, **values, **words)
        # The source as a link: its title is in the language of the label it names.
        citation = self.kb.citations.get(interaction["source"])
        link = f" ([{self.text('cds.source_link')}]({citation.url}))" if citation and citation.url.startswith(
            "https://") else ""
        return markdown_text(text.rstrip()) + link

    def _data_used(self, answer: dict, reading: FhirReading) -> list[str]:
        profile = reading.profile
        lines = [f"**{self.text('cds.data_heading')}**\n",
                 "- " + markdown_text(self.text("cds.patient", age=profile["age"],
                                                sex=self.text(f"cds.sex_{profile['sex']}")))]
        if reading.egfr_from_condition:
            source = reading.egfr_from_condition
            lines.append("- " + markdown_text(self.text(
                "cds.egfr_from_condition", display=self._kidney_text(source), below=self.number(source["egfr_below"]),
                date=self.date((reading.egfr or {}).get("date") or source["date"]))))
        elif reading.egfr is not None:
            lines.append("- " + markdown_text(self._measurement("cds.egfr", reading.egfr)))
        else:
            lines.append("- " + markdown_text(self.text("cds.egfr_missing")))
        if reading.serum_magnesium is not None:
            lines.append("- " + markdown_text(self._measurement("cds.serum_magnesium", reading.serum_magnesium)))
        else:
            lines.append("- " + markdown_text(self.text("cds.serum_magnesium_missing")))
        for item in reading.ignored:
            lines.append("- " + markdown_text(self.text(
                f"cds.ignored_{item['reason']}", display=self.text(f"cds.role.{item['role']}"),
                days=self.max_age_days, value=f"{item['comparator'] or ''}{self.number(item['value'])}",
                unit=self.text(f"cds.unit.{item['role']}") if item["unit"] is None else item["unit"] or "?",
                date=self.date(item["date"]))))
        if reading.kidney_conditions:
            kidney = ", ".join(f"{self._kidney_text(item)} ({self.date(item['date'])})"
                               for item in reading.kidney_conditions)
            lines.append("- " + markdown_text(self.text("cds.kidney_conditions", conditions=kidney)))
        words = dict.fromkeys(self.text(f"cds.flag.{item['maps_to']}") if item["maps_to"] in PROFILE_FLAGS
                              else self.text(f"widget.condition.{item['maps_to']}") for item in reading.conditions)
        lines.append("- " + markdown_text(self.text("cds.conditions",
                                                    conditions=", ".join(words) or self.text("cds.none"))))
        medications = ", ".join(reading.medication_labels[name] for name in reading.medications)
        lines.append("- " + markdown_text(self.text("cds.medications",
                                                    medications=medications or self.text("cds.none"))))
        if answer["unrecognized_medications"]:
            lines.append("- " + markdown_text(self.text("cds.unrecognized",
                                                        medications=", ".join(answer["unrecognized_medications"]))))
        return lines

    def _measurement(self, key: str, observation: dict) -> str:
        value = f"{observation['comparator'] or ''}{self.number(round(observation['converted'], 2))}"
        return self.text(key, value=value, date=self.date(observation["date"]))

    def _kidney_text(self, item: dict) -> str:
        """A kidney code as what it means (its SNOMED display is English)."""
        below = item["egfr_below"]
        return self.text(f"cds.kidney.{item['status']}", below=self.number(below) if below is not None else "")

    # -- suggestions and links ------------------------------------------------------------

    def _suggestions(self, answer: dict, ordered: dict | None, verdict: dict | None) -> list[dict]:
        """For a draft order the patient should not have: replace it with the top suitable form
        at a dose within the limit (recommended), or remove it."""
        if not verdict or not verdict["excluded"]:
            return []
        suggestions = []
        reference = ordered["reference"]
        if answer["recommendations"]:
            top = answer["recommendations"][0]
            dose = top["dose"]
            values = {"form": top["name"], "min": self.number(dose["elemental_mg_per_day"]["min"]),
                      "max": self.number(dose["elemental_mg_per_day"]["max"])}
            resource = copy.deepcopy(ordered["resource"])
            resource["medicationCodeableConcept"] = self._form_concept(top)
            resource.pop("medicationReference", None)
            resource["dosageInstruction"] = [{"text": self.text(
                "cds.dosage_text", **values,
                compound_min=self.number(dose["compound_mg_per_day"]["min"]),
                compound_max=self.number(dose["compound_mg_per_day"]["max"]))}]
            suggestions.append({"label": self.text("cds.suggest_replace", **values), "uuid": str(uuid.uuid4()),
                                "isRecommended": True,
                                "actions": [{"type": "update", "description": self.text("cds.suggest_replace_action",
                                                                                         **values),
                                             "resource": resource}]})
        suggestions.append({"label": self.text("cds.suggest_remove", form=verdict["name"]), "uuid": str(uuid.uuid4()),
                            "actions": [{"type": "delete", "resourceId": reference,
                                         "description": self.text("cds.suggest_remove_action",
                                                                  form=verdict["name"])}]})
        return suggestions

    def _form_concept(self, recommendation: dict) -> dict:
        """The form as a medication concept: its RxNorm ingredient code where the knowledge
        base has one, and its name as text."""
        form = self.forms[recommendation["form"]]
        concept = {"text": recommendation["name"]}
        rxcui = next((code for code, ingredient in self.kb.rxcui_to_ingredient.items()
                      if ingredient == form.ingredient), None)
        if rxcui:
            concept["coding"] = [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxcui,
                                  "display": form.ingredient}]
        return concept

    def _links(self, answer: dict, handout_url: str | None) -> list[dict]:
        links = []
        if answer["recommendations"]:
            top = answer["recommendations"][0]
            links.append({"label": self.text("cds.link_evidence", form=top["name"]), "type": "absolute",
                          "url": f"{self.base_url}v1/forms/{top['form']}"})
        if handout_url:
            links.append({"label": self.text("cds.link_handout"), "type": "absolute", "url": handout_url})
        return links

