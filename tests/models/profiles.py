"""Hypothesis strategies for valid profiles (the API's shape, defaults filled)."""

from __future__ import annotations

from hypothesis import strategies as st

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.loading import default_knowledge_base

FORM_IDS = default_knowledge_base().form_ids
KNOWN_MEDICINES = ("doxycycline", "Synthroid", "omeprazole", "LASIX", "rxcui:10582", "spironolactone", "Dyazide",
                   "digoxin", "ciprofloxacin 500 mg", "gabapentin", "Tivicay", "alendronate",
                   # v1.1: own-label rows, "avoid", magnesium products, German names, combinations, typos
                   "moxifloxacin", "Isentress", "Maalox", "Milk of Magnesia", "Magnesium Verla", "Euthyrox 50 µg",
                   "Pantoprazol", "L-Thyroxin Henning", "Revolade", "Edurant", "dolutegravir/lamivudine",
                   "doxycyline", "Resonium A", "CellCept", "omadacycline")


def sublist(words):
    return st.lists(st.sampled_from(words), unique=True, max_size=min(4, len(words)))


profiles = st.fixed_dictionaries(
    {
        "age": st.integers(0, 120),
        "sex": st.sampled_from(vocab.SEXES),
        "pregnant": st.booleans(),
        "breastfeeding": st.booleans(),
        "egfr": st.one_of(st.none(), st.floats(0, 250, allow_nan=False), st.sampled_from([29.999, 30.0, 59.99, 60.0])),
        "dialysis": st.booleans() | st.just(False),
        "serum_magnesium": st.none() | st.floats(0, 10, allow_nan=False) | st.sampled_from([0.69, 0.70, 1.05, 1.06]),
        "conditions": sublist(vocab.CONDITIONS),
        "goals": sublist(vocab.GOALS),
        "medications": st.lists(st.sampled_from(KNOWN_MEDICINES) | st.text(min_size=1, max_size=12), max_size=3),
        "preferences": st.fixed_dictionaries(
            {"avoid_forms": sublist(FORM_IDS), "max_units_per_day": st.none() | st.integers(1, 12)}
        ),
    }
)
