"""The medicine files: interactions by drug class (the defaults), the rows read from a drug's
own label that win over them, and the medicine names (generic and brand, with RxNorm codes)
that map to an ingredient and its classes."""

from __future__ import annotations

from pathlib import Path

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import (
    Interaction,
    KnowledgeBaseError,
    Medicine,
)
from formwise.models.knowledge.csv_fields import choice_cell, number_cell, read_rows, source_cell, text_cells


def _interaction_row(path, row, record, citations, drug_class: str, severity: str, ingredient: str = "",
                     default_texts: dict[str, str] | None = None) -> Interaction:
    """One row of interactions.csv (a class) or ingredient_interactions.csv (an ingredient),
    with the hours that fit its management: a gap for ``separate``, none otherwise."""
    management = choice_cell(path, row, record, "management", vocab.MANAGEMENTS)
    before = number_cell(path, row, record, "before_magnesium_h", 0, 48)
    after = number_cell(path, row, record, "after_magnesium_h", 0, 48)
    if management == "separate" and before == 0 and after == 0:
        raise KnowledgeBaseError(path, row, "management", "'separate' needs hours before or after magnesium")
    if management != "separate" and (before or after):
        raise KnowledgeBaseError(path, row, "management", f"'{management}' takes no hours (they are for 'separate')")
    if default_texts is not None and not record.get("text_en"):
        texts = default_texts
    else:
        texts = text_cells(path, row, record, "text")
    interaction = Interaction(drug_class, severity, management, before, after, texts,
                              source_cell(path, row, record, citations), ingredient, record.get("caveat", ""),
                              record.get("note", ""))
    for locale in texts:
        try:
            interaction.text(locale)
        except (KeyError, IndexError, ValueError) as error:
            raise KnowledgeBaseError(path, row, f"text_{locale}", f"only {{before}} and {{after}} may be filled in "
                                     f"({error!r})") from None
    return interaction


def load_interactions(path: Path, citations) -> dict[str, Interaction]:
    interactions = {}
    required = ("drug_class", "severity", "management", "before_magnesium_h", "after_magnesium_h", "caveat",
                "text_en", "source", "note")
    for row, record in read_rows(path, required):
        drug_class = choice_cell(path, row, record, "drug_class", vocab.INTERACTION_CLASSES)
        if drug_class in interactions:
            raise KnowledgeBaseError(path, row, "drug_class", f"duplicate class '{drug_class}'")
        if record["caveat"]:
            choice_cell(path, row, record, "caveat", vocab.ANSWER_CAVEATS)
        severity = choice_cell(path, row, record, "severity", ("info", "warning"))
        interactions[drug_class] = _interaction_row(path, row, record, citations, drug_class, severity)
    for drug_class in vocab.INTERACTION_CLASSES:
        if drug_class not in interactions:
            raise KnowledgeBaseError(path, None, "drug_class", f"the contract's class '{drug_class}' is missing")
    product = interactions["magnesium_product"]
    if (product.management, product.caveat) != ("monitor", "duplicate_magnesium"):
        raise KnowledgeBaseError(path, None, "management", "the contract's magnesium_product is 'monitor' and raises "
                                 "duplicate_magnesium")
    return interactions


def load_ingredient_interactions(path: Path, citations, classes: dict[str, Interaction],
                                  medicines: dict[str, Medicine]) -> dict[tuple[str, str], Interaction]:
    """What each ingredient's own label says, where it was read; its class gives severity
    and, when the row has none, the texts (with this row's hours filled in)."""
    known = {component for medicine in medicines.values() for component in medicine.components}
    rows = {}
    required = ("ingredient", "drug_class", "management", "before_magnesium_h", "after_magnesium_h", "text_en",
                "source", "note")
    for row, record in read_rows(path, required):
        ingredient = normalize_medicine_name(record["ingredient"])
        drug_class = choice_cell(path, row, record, "drug_class", vocab.INTERACTION_CLASSES)
        if (ingredient, drug_class) not in known:
            raise KnowledgeBaseError(path, row, "ingredient", f"'{ingredient}' is not listed as '{drug_class}' in "
                                     "data/medicines.csv")
        if (ingredient, drug_class) in rows:
            raise KnowledgeBaseError(path, row, "ingredient", f"'{ingredient}' ({drug_class}) is given twice")
        if not record["note"]:
            raise KnowledgeBaseError(path, row, "note", "say where in the source the figures stand")
        default = classes[drug_class]
        if record["management"] != default.management and not record["text_en"]:
            raise KnowledgeBaseError(path, row, "text_en", "a management other than its class's needs its own text")
        rows[(ingredient, drug_class)] = _interaction_row(path, row, record, citations, drug_class, default.severity,
                                                          ingredient, default.texts)
    return rows


def normalize_medicine_name(name: str) -> str:
    """Case- and space-insensitive key for a medicine name."""
    return " ".join(name.lower().split())

MEDICINE_KINDS = ("generic", "brand")


def load_medicines(path: Path, citations) -> tuple[dict[str, Medicine], dict[str, str]]:
    """Typed names -> ingredients and classes. Every row names the source that maps the name
    to its ingredient (a label, an SmPC, a package leaflet); a combination product has one
    row per interacting ingredient."""
    components: dict[str, list[tuple[str, str]]] = {}
    rxcui_to_ingredient: dict[str, str] = {}
    required = ("name", "drug_class", "kind", "ingredient", "rxcui", "rxcui_source", "name_source")
    for row, record in read_rows(path, required):
        name = normalize_medicine_name(record["name"])
        if not name:
            raise KnowledgeBaseError(path, row, "name", "value is required")
        drug_class = choice_cell(path, row, record, "drug_class", vocab.INTERACTION_CLASSES)
        choice_cell(path, row, record, "kind", MEDICINE_KINDS)
        ingredient = normalize_medicine_name(record["ingredient"])
        if not ingredient:
            raise KnowledgeBaseError(path, row, "ingredient", "value is required")
        source_cell(path, row, record, citations, name="name_source")
        if (ingredient, drug_class) in components.get(name, []):
            raise KnowledgeBaseError(path, row, "name", f"'{name}' is already mapped to '{ingredient}' ({drug_class})")
        components.setdefault(name, []).append((ingredient, drug_class))
        if record["rxcui"]:
            if not record["rxcui"].isdigit():
                raise KnowledgeBaseError(path, row, "rxcui", f"'{record['rxcui']}' is not a number")
            if rxcui_to_ingredient.get(record["rxcui"], ingredient) != ingredient:
                raise KnowledgeBaseError(path, row, "rxcui", f"RxCUI {record['rxcui']} names two ingredients")
            rxcui_to_ingredient[record["rxcui"]] = ingredient
            if not record["rxcui_source"]:
                raise KnowledgeBaseError(path, row, "rxcui_source", "an rxcui needs a source id")
            source_cell(path, row, record, citations, name="rxcui_source")
        elif record["rxcui_source"]:
            raise KnowledgeBaseError(path, row, "rxcui_source", "a source is given but there is no rxcui")
    medicines = {name: Medicine(name, tuple(parts)) for name, parts in components.items()}
    for rxcui, ingredient in rxcui_to_ingredient.items():
        if ingredient not in medicines:
            raise KnowledgeBaseError(path, None, "rxcui", f"RxCUI {rxcui} points at '{ingredient}', not a listed name")
    return medicines, rxcui_to_ingredient
