"""The interface texts people read (labels, headings, the handout's and the cards' phrases) from
data/locales/ui.csv, one text per key and locale. The widget, the handout and the CDS cards
all read them here."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from formwise.data import DATA_DIR
from formwise.models.knowledge import vocabulary as vocab

UI_TEXTS_PATH = DATA_DIR / "locales" / "ui.csv"


class UiTextsError(ValueError):
    """data/locales/ui.csv is malformed; the message names the row and column."""


def load_ui_texts(path: Path = UI_TEXTS_PATH) -> dict[str, dict[str, str]]:
    """{locale: {key: text}} for every locale in vocab.LOCALES. Every key needs a text in each
    of them: a missing translation stops start-up instead of showing a blank label."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = ["key", *(f"text_{locale}" for locale in vocab.LOCALES)]
        missing = [name for name in columns if name not in (reader.fieldnames or [])]
        if missing:
            raise UiTextsError(f"{path.name}: missing columns {', '.join(missing)}")
        texts: dict[str, dict[str, str]] = {locale: {} for locale in vocab.LOCALES}
        for row_number, record in enumerate(reader, start=2):
            key = (record["key"] or "").strip()
            if not key:
                raise UiTextsError(f"{path.name}, row {row_number}, field 'key': empty")
            if key in texts[vocab.DEFAULT_LOCALE]:
                raise UiTextsError(f"{path.name}, row {row_number}, field 'key': '{key}' appears twice")
            for locale in vocab.LOCALES:
                text = (record.get(f"text_{locale}") or "").strip()
                if not text:
                    raise UiTextsError(f"{path.name}, row {row_number}, field 'text_{locale}': empty for '{key}'")
                texts[locale][key] = text
    return texts


class UiTextError(LookupError):
    """data/locales/ui.csv lacks a text; the message names the key and the locale."""


@cache
def ui_texts() -> dict[str, dict[str, str]]:
    """{locale: {key: text}} from data/locales/ui.csv, read once (by load_ui_texts, which
    refuses a key without a text in every locale)."""
    return load_ui_texts()


def ui_text(key: str, locale: str, **values) -> str:
    """One interface text in ``locale``, with ``{name}`` placeholders filled in."""
    text = ui_texts().get(locale, {}).get(key)
    if text is None:
        raise UiTextError(f"{UI_TEXTS_PATH.name} has no '{key}' text in '{locale}'")
    return text.format(**values) if values else text
