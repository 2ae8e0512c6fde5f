"""Reading the knowledge base's CSV files: a row's cells as numbers in a range, words from a
list, source ids that resolve to a citation and texts per locale. Every failure names the
file, row and field."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import (
    KnowledgeBaseError,
)


def read_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise KnowledgeBaseError(path, None, None, "file is missing")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for column in required:
            if column not in header:
                raise KnowledgeBaseError(path, 1, column, f"required column is missing (header: {header})")
        rows = []
        for record in reader:
            if None in record:
                raise KnowledgeBaseError(path, reader.line_num, None, "row has more cells than the header")
            if all(not (value or "").strip() for value in record.values()):
                continue
            rows.append((reader.line_num, {key: (value or "").strip() for key, value in record.items()}))
    if not rows:
        raise KnowledgeBaseError(path, None, None, "file has no data rows")
    return rows


def number_cell(path, row, record, name, low=-math.inf, high=math.inf, optional=False) -> float | None:
    raw = record.get(name, "")
    if raw == "":
        if optional:
            return None
        raise KnowledgeBaseError(path, row, name, "value is required")
    try:
        value = float(raw)
    except ValueError:
        raise KnowledgeBaseError(path, row, name, f"'{raw}' is not a number") from None
    if not (low <= value <= high) or math.isnan(value):
        raise KnowledgeBaseError(path, row, name, f"{value} is outside {low}..{high}")
    return value


def choice_cell(path, row, record, name, allowed) -> str:
    value = record.get(name, "")
    if value not in allowed:
        raise KnowledgeBaseError(path, row, name, f"'{value}' is not one of {', '.join(allowed)}")
    return value


def source_cell(path, row, record, citations, name="source", optional=False) -> str:
    value = record.get(name, "")
    if value == "" and optional:
        return ""
    if value not in citations:
        raise KnowledgeBaseError(path, row, name, f"source id '{value}' has no entry in data/citations.csv")
    return value


def text_cells(path, row, record, prefix: str) -> dict[str, str]:
    texts = {}
    for locale in vocab.LOCALES:
        value = record.get(f"{prefix}_{locale}", "")
        if value:
            texts[locale] = value
    if vocab.DEFAULT_LOCALE not in texts:
        raise KnowledgeBaseError(path, row, f"{prefix}_{vocab.DEFAULT_LOCALE}", "text is required")
    return texts
