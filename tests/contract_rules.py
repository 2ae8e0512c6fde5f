"""The contract's hard rules (../shared/contract.md, v1 and v1.1) as one check of an answer
against the profile it answers. Written from the contract, not from the service: the model
tests, the HTTP batch test and the 10,000-profile end-to-end run all call it."""

from __future__ import annotations

from formwise.models.knowledge import vocabulary as vocab

SEVERITY = {name: i for i, name in enumerate(vocab.SEVERITIES)}
UPPER_LIMIT = {range(1, 4): 65, range(4, 9): 110, range(9, 121): 350}
LAXATIVE_FORMS = {"citrate", "oxide", "hydroxide", "sulfate"}  # the contract's laxative forms (rule 5)
CRAMP_WORDS = {"leg_cramps", "muscle_spasms", "cramps"}


def upper_limit(age: int) -> int:
    return next(limit for ages, limit in UPPER_LIMIT.items() if age in ages)


def check_contract(profile: dict, answer: dict, form_ids, laxative=LAXATIVE_FORMS) -> None:
    """Every hard rule and v1.1 caveat rule that the profile decides. ``profile`` has the API's
    defaults filled in; ``form_ids`` are the running knowledge base's forms."""
    check_v1(profile, answer, form_ids, laxative)
    check_v11(profile, answer, form_ids)


def check_v1(profile: dict, answer: dict, form_ids, laxative=LAXATIVE_FORMS) -> None:
    caveats = {c["code"]: c for c in answer["caveats"]}
    recommended = [r["form"] for r in answer["recommendations"]]
    excluded = {e["form"]: {r["code"] for r in e["reasons"]} for e in answer["excluded"]}

    assert "consult_clinician" in caveats
    assert answer["max_severity"] == max((c["severity"] for c in answer["caveats"]), key=SEVERITY.get)
    # Every form exactly once: recommended, excluded, or left out by the limit.
    assert not set(recommended) & set(excluded)
    assert len(recommended) == len(set(recommended))
    assert set(recommended) | set(excluded) <= set(form_ids)

    egfr, dialysis = profile.get("egfr"), profile.get("dialysis", False)
    severe = dialysis or (egfr is not None and egfr < 30)
    # Rule 1: a critical caveat empties the recommendations and excludes every form.
    if any(c["severity"] == "critical" for c in answer["caveats"]):
        assert recommended == []
        assert set(excluded) == set(form_ids)
    if severe:
        assert caveats["kidney_impairment_severe"]["severity"] == "critical"
    if profile["age"] < 1:
        assert "infant" in caveats and recommended == []
    # Rule 2: the moderate band excludes oxide and hydroxide; the rest carry caution.
    if not severe and egfr is not None and 30 <= egfr < 60:
        assert caveats["kidney_impairment_moderate"]["severity"] == "warning"
        assert {"oxide", "hydroxide"} <= set(excluded)
        assert all(r["status"] == "caution" for r in answer["recommendations"])
    # Rule 3: avoided forms are excluded with avoided_by_user.
    for form_id in profile.get("preferences", {}).get("avoid_forms", []):
        assert "avoided_by_user" in excluded[form_id]
    # Rule 4: the dose never exceeds the age's supplemental upper limit.
    for recommendation in answer["recommendations"]:
        dose = recommendation["dose"]["elemental_mg_per_day"]
        assert 0 <= dose["min"] <= dose["max"] <= upper_limit(profile["age"])
    # Rule 5: with diarrhoea, IBS-D or a sensitive stomach no laxative form is first.
    if set(profile.get("conditions", [])) & set(vocab.CONTRACT_GI_SENSITIVE_CONDITIONS) and recommended:
        assert recommended[0] not in laxative
    # Ranks start at 1 and follow descending score.
    assert [r["rank"] for r in answer["recommendations"]] == list(range(1, len(recommended) + 1))
    scores = [r["score"] for r in answer["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)


def check_v11(profile: dict, answer: dict, form_ids) -> None:
    caveats = {c["code"]: c for c in answer["caveats"]}
    recommended = [r["form"] for r in answer["recommendations"]]
    excluded = {e["form"]: {r["code"] for r in e["reasons"]} for e in answer["excluded"]}
    age, egfr, dialysis = profile["age"], profile.get("egfr"), profile.get("dialysis", False)
    has_sulfate = "sulfate" in form_ids

    # kidney_function_unknown: info, a warning from 65; rule 7 from 65 excludes the laxative salts.
    if egfr is None and not dialysis:
        assert caveats["kidney_function_unknown"]["severity"] == ("warning" if age >= 65 else "info")
        if age >= 65:
            for form_id in {"oxide", "hydroxide", "sulfate"} & set(form_ids):
                assert form_id in excluded and form_id not in recommended
                assert "kidney_function_unknown" in excluded[form_id] or excluded[form_id] & {
                    "infant", "kidney_impairment_severe", "serum_magnesium_high"}
    else:
        assert "kidney_function_unknown" not in caveats
    # Rule 7: the moderate band also excludes sulfate.
    if has_sulfate and not dialysis and egfr is not None and 30 <= egfr < 60:
        assert "sulfate" in excluded
    # Rule 8: sulfate only for constipation relief from 12, below every other recommended
    # laxative form, with occasional_use_only.
    if has_sulfate:
        allowed = "constipation_relief" in profile.get("goals", []) and age >= 12
        if not allowed:
            assert "not_for_daily_use" in excluded["sulfate"]
        if "sulfate" in recommended:
            position = recommended.index("sulfate")
            assert all(recommended.index(form) < position for form in recommended
                       if form in LAXATIVE_FORMS and form != "sulfate")
            sulfate = answer["recommendations"][position]
            assert "occasional_use_only" in {c["code"] for c in sulfate["caveats"]}
            assert sulfate["status"] == "caution"
    # Serum magnesium (rule 9): above 1.05 critical, below 0.70 a warning.
    serum = profile.get("serum_magnesium")
    high, low = serum is not None and serum > 1.05, serum is not None and serum < 0.70
    assert ("serum_magnesium_high" in caveats) == high
    assert ("serum_magnesium_low" in caveats) == low
    if high:
        assert caveats["serum_magnesium_high"]["severity"] == "critical" and recommended == []
        assert all("serum_magnesium_high" in reasons for reasons in excluded.values())
    if low:
        assert caveats["serum_magnesium_low"]["severity"] == "warning"
    # A medicine that contains magnesium: monitor, and duplicate_magnesium naming it.
    products = [i for i in answer["interactions"] if i["drug_class"] == "magnesium_product"]
    assert ("duplicate_magnesium" in caveats) == bool(products)
    for interaction in products:
        assert interaction["management"] == "monitor"
        assert interaction["medication"] in caveats["duplicate_magnesium"]["text"]
        assert caveats["duplicate_magnesium"]["severity"] == "warning"
    # Interactions carry ingredient, management and source; "avoid" has no window.
    sent = profile.get("medications", [])
    for interaction in answer["interactions"]:
        assert interaction["medication"] in sent
        assert interaction["ingredient"] and interaction["source"]
        assert interaction["management"] in vocab.MANAGEMENTS
        assert (interaction["separation_hours"] is None) == (interaction["management"] == "avoid")
    # Nothing sent is dropped: each name is an interaction or echoed as unrecognised.
    answered = {i["medication"] for i in answer["interactions"]} | set(answer["unrecognized_medications"])
    assert set(sent) <= answered
    for suggestion in answer["medication_suggestions"]:
        assert suggestion["sent"] in answer["unrecognized_medications"] and suggestion["did_you_mean"]
    # Timing: an "avoid" medicine leaves no time.
    timing = answer.get("timing")
    if timing is not None and any(m["management"] == "avoid" for m in timing["medications"]):
        assert timing["possible"] is False and timing["suggested_times"] == []
    # Rule 10: no "+" reason claims cramp evidence beside cramps_evidence_limited.
    if "cramps_evidence_limited" in caveats:
        for recommendation in answer["recommendations"]:
            for reason in recommendation["reasons"]:
                if reason["effect"] == "+" and reason.get("attribute"):
                    assert reason["attribute"] != "evidence_cramps", (recommendation["form"], reason)
                if reason["effect"] == "+":
                    assert "cramp" not in reason["text"].lower(), (recommendation["form"], reason)
