"""Turn the medicine strings people type (generic or brand, English or German, any case, with
or without a strength or dose form, combinations such as "dolutegravir/lamivudine", or
``rxcui:NNNN``) into the ingredients and interaction classes of data/medicines.csv.

A name is looked up in the dictionary as typed, then without its strength and dose words,
then part by part when it names a combination, then by its first word ("pantoprazol
hexal", "omeprazol-ratiopharm"). A near miss ("doxycyline") is never taken for the name it
resembles: ``suggest`` offers the close names, and the caller echoes the string as
unrecognised."""

from __future__ import annotations

import difflib
import re
from typing import NamedTuple

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import Interaction, KnowledgeBase, Medicine
from formwise.models.knowledge.medicine_rows import normalize_medicine_name

# Words that describe a strength, a dose form or a schedule, not the medicine itself (English
# and German, as they appear on prescriptions and packs).
_DOSE_WORD = re.compile(
    r"^(\d[\d.,/-]*\s*(mg|mcg|µg|ug|g|ml|iu|ie|%|mmol|mikrogramm|microgram|micrograms)?(/\w+)?|"
    r"mg|mcg|µg|ug|g|ml|iu|ie|mmol|mikrogramm|microgram|micrograms|"
    r"tablets?|tabs?|tbl|tabl|tabletten|filmtabletten|brausetabletten|kautabletten|"
    r"capsules?|caps?|kapseln|hartkapseln|weichkapseln|drops|tropfen|suspension|solution|lösung|"
    r"oral|daily|once|twice|nightly|morning|evening|täglich|morgens|abends|"
    r"er|xr|sr|dr|od|bd|bid|tid|qd|qds|retard|msr|magensaftresistent|magensaftresistente|x)$"
)
_RXCUI = re.compile(r"^rxcui\s*:\s*(\d+)$")
# What joins the ingredients of a combination as people write it.
_COMBINATION = re.compile(r"\s*(?:/|\+|,|&|\band\b|\bund\b|\bwith\b|\bmit\b)\s*")
SUGGESTION_CUTOFF = 0.8  # difflib ratio; "doxycyline" vs "doxycycline" is 0.95
MAX_SUGGESTIONS = 3


class ResolvedName(NamedTuple):
    """A typed name's interacting components (ids into MedicineIndex.components), and
    whether every part of it was recognised (a combination may be only partly known)."""

    components: tuple[int, ...]
    complete: bool


class MedicineIndex:
    """Resolve names once and remember the answer: batch files repeat the same few names, and
    on the hot path a name costs one dictionary lookup."""

    CACHE_SIZE = 100_000

    def __init__(self, knowledge_base: KnowledgeBase):
        self._medicines = knowledge_base.medicines
        self._rxcui = knowledge_base.rxcui_to_ingredient
        class_position = {name: i for i, name in enumerate(vocab.INTERACTION_CLASSES)}
        pairs = sorted({pair for medicine in self._medicines.values() for pair in medicine.components})
        # Every (ingredient, class) pair any name maps to, with the interaction that applies
        # to it: the ingredient's own label where it was read, else its class's defaults.
        self.components: tuple[tuple[str, str], ...] = tuple(pairs)
        self.component_class: tuple[int, ...] = tuple(class_position[drug_class] for _, drug_class in pairs)
        self.component_interaction: tuple[Interaction, ...] = tuple(
            knowledge_base.interaction_for(ingredient, drug_class) for ingredient, drug_class in pairs)
        self._component_id = {pair: i for i, pair in enumerate(pairs)}
        self._names = sorted(self._medicines)
        self._cache: dict[str, ResolvedName | None] = {}
        self._suggestions: dict[str, tuple[str, ...]] = {}

    def resolve(self, raw_name: str) -> ResolvedName | None:
        """The components of a recognised medicine (or recognised part of one), or None."""
        try:
            return self._cache[raw_name]
        except KeyError:
            pass
        resolved = self._resolve(raw_name)
        if len(self._cache) < self.CACHE_SIZE:
            self._cache[raw_name] = resolved
        return resolved

    def classes(self, resolved: ResolvedName) -> tuple[int, ...]:
        """Positions in vocab.INTERACTION_CLASSES of a resolved name, each once."""
        return tuple(dict.fromkeys(self.component_class[c] for c in resolved.components))

    def lookup(self, raw_name: str) -> Medicine | None:
        """The knowledge base's Medicine for a typed name that names one whole medicine
        (no combination of separately typed parts), or None."""
        name = normalize_medicine_name(raw_name)
        rxcui = _RXCUI.match(name)
        if rxcui:
            ingredient = self._rxcui.get(rxcui.group(1))
            return self._medicines.get(ingredient) if ingredient else None
        if len([part for part in _COMBINATION.split(_without_dose_words(name)) if part]) > 1:
            return self._exact(name)
        return self._single(name)

    def suggest(self, raw_name: str) -> tuple[str, ...]:
        """Known names close to an unrecognised one (or to its unrecognised parts): offered,
        never taken."""
        try:
            return self._suggestions[raw_name]
        except KeyError:
            pass
        name = _without_dose_words(normalize_medicine_name(raw_name))
        parts = [part for part in _COMBINATION.split(name) if part] or [name]
        found: list[str] = []
        for part in parts:
            if self._single(part) is None:
                found.extend(difflib.get_close_matches(part, self._names, MAX_SUGGESTIONS, SUGGESTION_CUTOFF))
        suggestions = tuple(dict.fromkeys(found))[:MAX_SUGGESTIONS]
        if len(self._suggestions) < self.CACHE_SIZE:
            self._suggestions[raw_name] = suggestions
        return suggestions

    # -- the lookup steps ---------------------------------------------------------------

    def _resolve(self, raw_name: str) -> ResolvedName | None:
        name = normalize_medicine_name(raw_name)
        rxcui = _RXCUI.match(name)
        if rxcui:
            medicine = self.lookup(name)
            return None if medicine is None else ResolvedName(self._ids(medicine), True)
        medicine = self._exact(name)
        if medicine is not None:
            return ResolvedName(self._ids(medicine), True)
        parts = [part for part in _COMBINATION.split(_without_dose_words(name)) if part]
        if len(parts) < 2:
            medicine = self._single(name)
            return None if medicine is None else ResolvedName(self._ids(medicine), True)
        found = [self._single(part) for part in parts]
        components = tuple(dict.fromkeys(c for medicine in found if medicine for c in self._ids(medicine)))
        if not components:
            return None
        return ResolvedName(components, all(found))

    def _exact(self, name: str) -> Medicine | None:
        """A normalised name as listed, or as listed once its dose words are gone."""
        medicine = self._medicines.get(name)
        return medicine if medicine is not None else self._medicines.get(_without_dose_words(name))

    def _single(self, name: str) -> Medicine | None:
        """One medicine's normalised name: as listed, then by its first word, or the first
        word's part before a manufacturer's suffix ("omeprazol-ratiopharm")."""
        medicine = self._exact(name)
        stripped = _without_dose_words(name)
        if medicine is not None or not stripped:
            return medicine
        first = stripped.split()[0]
        if first in self._medicines:
            return self._medicines[first]
        pieces = first.split("-")
        for end in range(len(pieces) - 1, 0, -1):
            medicine = self._medicines.get("-".join(pieces[:end]))
            if medicine is not None:
                return medicine
        return None

    def _ids(self, medicine: Medicine) -> tuple[int, ...]:
        return tuple(self._component_id[pair] for pair in medicine.components)


def _without_dose_words(name: str) -> str:
    words = name.replace("(", " ").replace(")", " ").split()
    return " ".join(word for word in words if not _DOSE_WORD.match(word))
