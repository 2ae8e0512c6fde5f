"""Turn the medicine strings people type (generic, brand, any case, with or without a
strength, or ``rxcui:NNNN``) into the contract's interaction classes."""

from __future__ import annotations

import re

from models import vocabulary as vocab
from models.knowledge import KnowledgeBase, normalize_medicine_name

# Words that describe a strength or a dose form, not the medicine itself.
_DOSE_WORD = re.compile(
    r"^(\d[\d.,/]*\s*(mg|mcg|µg|ug|g|ml|iu|%)?|mg|mcg|µg|ug|g|ml|iu|tablets?|tabs?|capsules?|caps?|"
    r"oral|daily|once|twice|er|xr|sr|dr|od|bd|bid|tid|qd)$"
)
_RXCUI = re.compile(r"^rxcui\s*:\s*(\d+)$")


class MedicineIndex:
    """Resolve names once and remember the answer: batch files repeat the same few names."""

    def __init__(self, knowledge_base: KnowledgeBase):
        self._medicines = knowledge_base.medicines
        self._rxcui = knowledge_base.rxcui_to_ingredient
        self._class_position = {name: i for i, name in enumerate(vocab.INTERACTION_CLASSES)}
        self._cache: dict[str, tuple[int, ...] | None] = {}

    def resolve(self, raw_name: str) -> tuple[int, ...] | None:
        """Positions in INTERACTION_CLASSES for a recognised medicine, or None."""
        try:
            return self._cache[raw_name]
        except KeyError:
            pass
        medicine = self.lookup(raw_name)
        classes = None if medicine is None else tuple(self._class_position[c] for c in medicine.drug_classes)
        if len(self._cache) < 100_000:
            self._cache[raw_name] = classes
        return classes

    def lookup(self, raw_name: str):
        """The knowledge base's Medicine for a typed name, or None."""
        name = normalize_medicine_name(raw_name)
        rxcui = _RXCUI.match(name)
        if rxcui:
            ingredient = self._rxcui.get(rxcui.group(1))
            return self._medicines.get(ingredient) if ingredient else None
        if name in self._medicines:
            return self._medicines[name]
        words = [word for word in name.replace("(", " ").replace(")", " ").split() if not _DOSE_WORD.match(word)]
        stripped = " ".join(words)
        if stripped in self._medicines:
            return self._medicines[stripped]
        # "omeprazole magnesium", "doxycycline monohydrate": the first word names it.
        if words and words[0] in self._medicines:
            return self._medicines[words[0]]
        return None
