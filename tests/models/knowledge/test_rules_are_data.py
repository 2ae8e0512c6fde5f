"""Clinical logic lives in data/, the engine only interprets it (issue 20, part 3): no module
of models/ but the vocabulary names a form, a condition or a goal in its code. A rule that
needs one (rule 5's gut conditions, the word-triggered caveats, the share a form ranked below
another keeps) reads it from the knowledge base."""

from __future__ import annotations

import ast

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.loading import default_knowledge_base
from tests.conftest import PROJECT_ROOT

MODELS = PROJECT_ROOT / "models"
# The vocabulary is the contract's list of words; the knowledge base loader checks data
# against it (its messages may name what the contract requires).
WORD_LISTS = {"vocabulary.py"}


def clinical_words() -> set[str]:
    return set(default_knowledge_base().form_ids) | set(vocab.CONDITIONS) | set(vocab.GOALS)


def test_no_module_of_models_names_a_form_condition_or_goal():
    words, found = clinical_words(), []
    for path in sorted(MODELS.rglob("*.py")):
        if path.name in WORD_LISTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words:
                found.append(f"{path.relative_to(MODELS.parent)}:{node.lineno} {node.value!r}")
    assert not found, "clinical words in code (move the rule to data/): " + ", ".join(found)


def test_the_word_triggered_caveats_and_the_gut_rules_come_from_the_data():
    kb = default_knowledge_base()
    triggered = {code: caveat.triggered_by for code, caveat in kb.caveats.items() if caveat.triggered_by}
    assert triggered == {"cramps_evidence_limited": ("leg_cramps", "muscle_spasms", "cramps"),
                         "dose_above_upper_limit_in_studies": ("migraine", "migraine_prevention"),
                         "myasthenia_gravis": ("myasthenia_gravis",), "heart_block": ("heart_block",)}
    assert set(kb.gi_rules) == set(vocab.CONTRACT_GI_SENSITIVE_CONDITIONS)
    assert 0 < kb.rules["ranking"]["below_share"] < 1
