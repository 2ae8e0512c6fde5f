"""Checks one answer against a vignette's expected properties (../shared/vignettes)."""

from __future__ import annotations


def check_vignette(vignette: dict, answer: dict) -> None:
    expect = vignette["expect"]
    ranked = [r["form"] for r in answer["recommendations"]]
    codes = {c["code"] for c in answer["caveats"]}
    excluded = {e["form"] for e in answer["excluded"]}
    label = f"{vignette['id']} ({vignette.get('note', '')})"
    if "top1_in" in expect:
        assert ranked and ranked[0] in expect["top1_in"], (label, ranked)
    if "caveats_include" in expect:
        assert set(expect["caveats_include"]) <= codes, (label, codes)
    if "max_severity" in expect:
        assert answer["max_severity"] == expect["max_severity"], (label, answer["max_severity"])
    if "top_k_excludes" in expect:
        k, forms = expect["top_k_excludes"]["k"], set(expect["top_k_excludes"]["forms"])
        assert not set(ranked[:k]) & forms, (label, ranked[:k])
    if expect.get("excluded_all"):
        assert ranked == [] and len(excluded) >= 10, (label, ranked)
    if "excluded_includes" in expect:
        assert set(expect["excluded_includes"]) <= excluded, (label, excluded)
    if "status_all" in expect:
        assert ranked and all(r["status"] == expect["status_all"] for r in answer["recommendations"]), label
    if "dose_max_le" in expect:
        assert ranked, label
        for recommendation in answer["recommendations"]:
            assert recommendation["dose"]["elemental_mg_per_day"]["max"] <= expect["dose_max_le"], label
    if "interaction_classes_include" in expect:
        classes = {i["drug_class"] for i in answer["interactions"]}
        assert set(expect["interaction_classes_include"]) <= classes, (label, classes)
    if "unrecognized_include" in expect:
        assert set(expect["unrecognized_include"]) <= set(answer["unrecognized_medications"]), label
    known = {"top1_in", "caveats_include", "max_severity", "top_k_excludes", "excluded_all", "excluded_includes",
             "status_all", "dose_max_le", "interaction_classes_include", "unrecognized_include"}
    assert set(expect) <= known, f"{label}: unknown expectation {set(expect) - known}"
