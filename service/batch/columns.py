"""A chunk of batch rows as columns: validate and encode the whole chunk at once into the
engine's input (``answer_columns`` turns the engine's arrays back into output columns).

Each check runs with pyarrow.compute and numpy over the chunk's *distinct* cell values
(a column of a million ages holds about 121 of them) and is gathered back to the rows by
index, so there is no Python loop per row. The limits and messages are the API's:
``formwise.service.batch.scoring`` builds the :class:`FieldRules` from the API's schemas,
so a file row is accepted exactly when ``POST /v1/recommendations`` would accept the same values.

How a cell maps to the API's value: an empty cell is the field's default (``age`` and
``id`` are required); numbers are JSON number literals; booleans are ``true``/``false``
(any case), ``1``/``0`` or empty; list cells are ``;``-separated, each item trimmed of
surrounding white space, and an empty item (``a;;b``) is an empty string, which no list
allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from formwise.models.engine.features import SEX_CODE, ProfileBatch
from formwise.models.engine.medicines import MedicineIndex
from formwise.models.engine.scoring import Engine
from formwise.models.knowledge import vocabulary as vocab

LIST_SEPARATOR = ";"
JSON_NUMBER = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$"
INPUT_COLUMNS = (
    "id", "age", "sex", "pregnant", "breastfeeding", "egfr", "dialysis", "conditions", "goals", "medications",
)
# Not in the contract's column list, but the profile has them: accepted when present.
OPTIONAL_COLUMNS = ("avoid_forms", "max_units_per_day", "serum_magnesium")
ALLOWED_COLUMNS = INPUT_COLUMNS + OPTIONAL_COLUMNS
REQUIRED_COLUMNS = ("id", "age")
BOOLEAN_COLUMNS = ("pregnant", "breastfeeding", "dialysis")
BOOLEAN_WORDS = ("", "false", "0", "true", "1")  # index >= 3 is true
EMPTY_ROW = "row"  # the field named when a row holds no value at all


def _allowed(words: Sequence[str]) -> str:
    return "Must be one of: " + ", ".join(words) + "."


@dataclass(frozen=True)
class FieldRules:
    """The API's limits and messages (formwise.service.api.schemas builds the real one)."""

    age_range: tuple[int, int] = (0, 120)
    egfr_range: tuple[float, float] = (0.0, 250.0)
    serum_range: tuple[float, float] = (0.0, 10.0)
    units_range: tuple[int, int] = (1, 12)
    max_list_items: int = 50
    medication_chars: tuple[int, int] = (1, 200)
    id_chars: tuple[int, int] = (1, 200)
    messages: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MESSAGES))

    def message(self, key: str) -> str:
        return self.messages[key]


DEFAULT_MESSAGES = {
    "required": "Missing data for required field.",
    "id_length": "Length must be between 1 and 200.",
    "whole_number": "Must be a whole number.",
    "age_range": "Must be a whole number from 0 to 120 (years).",
    "sex": _allowed(vocab.SEXES),
    "boolean": "Must be true or false.",
    "number": "Must be a number.",
    "special_number": "Special numeric values (nan or infinity) are not permitted.",
    "egfr_range": "Must be a number from 0 to 250 (mL/min/1.73 m²), or null.",
    "serum_range": "Must be a number from 0 to 10 (mmol/L; mg/dL divided by 2.43), or null.",
    "conditions": _allowed(vocab.CONDITIONS),
    "goals": _allowed(vocab.GOALS),
    "medication_length": "Must be 1 to 200 characters.",
    "list_length": "Longer than maximum length 50.",
    "units_range": "Must be a whole number from 1 to 12.",
    "empty_row": "Empty row: no values.",
    # "avoid_forms" is filled in from the engine's form ids when not given.
}


@dataclass
class EncodedChunk:
    """One chunk of rows, validated and encoded.

    ``batch`` holds only the valid rows, in order; ``valid`` marks them among the chunk's
    rows; ``fields`` and ``reasons`` are null for valid rows, else the bad fields
    (``;``-separated) and ``field: message`` parts (``; ``-separated)."""

    batch: ProfileBatch
    valid: np.ndarray
    ids: pa.Array
    fields: pa.Array
    reasons: pa.Array
    unrecognized: pa.Array  # valid rows: unrecognised medications, ';'-separated ("" when none)
    medications: list[list[str]] | None = None  # valid rows' medication names, only when asked

    @property
    def rejected(self) -> np.ndarray:
        return ~self.valid


# ---- column helpers ------------------------------------------------------------------


def as_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as strings (or a dictionary of strings), whatever its storage type: a
    Parquet integer 40 reads as the cell "40", a float NaN as an empty cell, a list of
    strings as its items joined by ';'."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    kind = column.type
    if pa.types.is_dictionary(kind):
        if pa.types.is_string(kind.value_type):
            return column
        return as_text(column.dictionary_decode())
    if pa.types.is_string(kind):
        return column
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind) or pa.types.is_null(kind):
        return column.cast(pa.string())
    if pa.types.is_floating(kind):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, kind), column)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pc.binary_join(column.cast(pa.list_(pa.string())), LIST_SEPARATOR)
    return column.cast(pa.string())


def _distinct(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(distinct values trimmed of white space, with null as "", index per row)."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column, null_encoding="encode")
    values = column.dictionary
    indices = column.indices
    if indices.null_count:
        values = pa.concat_arrays([values, pa.array([""], values.type)])
        indices = pc.fill_null(indices, len(values) - 1)
    values = pc.fill_null(pc.utf8_trim_whitespace(values), "")
    return values, np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def _empty(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.equal(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False), dtype=bool)


def _index(values: pa.Array, words: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(is one of ``words``, its position or 0) per distinct value."""
    position = pc.index_in(values, value_set=words)
    known = np.asarray(pc.is_valid(position).to_numpy(zero_copy_only=False), dtype=bool)
    return known, np.asarray(pc.fill_null(position, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _numbers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(is a JSON number literal, its float value or NaN) per distinct value."""
    is_number = np.asarray(pc.match_substring_regex(values, JSON_NUMBER).to_numpy(zero_copy_only=False), dtype=bool)
    numbers = np.full(len(values), np.nan)
    if is_number.any():
        numbers[is_number] = pc.cast(values.filter(pa.array(is_number)), pa.float64()).to_numpy(zero_copy_only=False)
    return is_number, numbers


def _text(flags: np.ndarray, text: str) -> pa.Array:
    """``text`` where flags, else "" (a column of message parts)."""
    return pc.if_else(pa.array(flags), pa.scalar(text), pa.scalar(""))


class _Errors:
    """Collects per-row message parts, field by field in the API's order, without nulls
    (pyarrow's join with null_handling="skip" drops all-null rows)."""

    def __init__(self, n: int):
        self.n = n
        self.bad = np.zeros(n, dtype=bool)
        self._fields: list[pa.Array] = []
        self._reasons: list[pa.Array] = []

    def add(self, name: str, bad_rows: np.ndarray, reason_parts: pa.Array) -> None:
        """reason_parts: per row, "" or "; field: message[; field.i: message]"."""
        if not bad_rows.any():
            return
        self.bad |= bad_rows
        self._fields.append(_text(bad_rows, LIST_SEPARATOR + name))
        self._reasons.append(reason_parts)

    def add_parts(self, name: str, bad_cells: np.ndarray, cell_parts: pa.Array, rows: np.ndarray) -> None:
        """Parts computed per distinct cell, gathered to the rows."""
        if bad_cells.any():
            self.add(name, bad_cells[rows], cell_parts.take(pa.array(rows)))

    def add_message(self, name: str, bad_rows: np.ndarray, message: str) -> None:
        if bad_rows.any():
            self.add(name, bad_rows, _text(bad_rows, f"; {name}: {message}"))

    def columns(self) -> tuple[pa.Array, pa.Array]:
        mask = pa.array(~self.bad)
        if not self._fields:
            nulls = pa.nulls(self.n, pa.string())
            return nulls, nulls

        def join(parts: list[pa.Array], strip: int) -> pa.Array:
            joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "")
            joined = pc.utf8_slice_codeunits(joined, strip)
            return pc.if_else(mask, pa.scalar(None, pa.string()), joined)

        return join(self._fields, 1), join(self._reasons, 2)


@dataclass
class _State:
    batch: ProfileBatch
    errors: _Errors
    all_empty: np.ndarray
    keep_items: bool
    unrecognized: pa.Array | None = None
    medication_lists: list[list[str]] | None = None


# ---- the encoder ------------------------------------------------------------------------


class ColumnEncoder:
    """Validates and encodes chunks of rows for one knowledge base: it needs the form ids
    and the medicine index (``engine.form_ids``, ``engine.medicines``), not the weights, so
    chunks can be encoded while a model is still loading."""

    def __init__(self, engine: Engine | None = None, rules: FieldRules | None = None, *,
                 form_ids: Sequence[str] | None = None, medicines: MedicineIndex | None = None):
        if engine is not None:
            form_ids, medicines = engine.form_ids, engine.medicines
        if form_ids is None or medicines is None:
            raise TypeError("ColumnEncoder needs an engine, or form_ids and medicines")
        self.medicines = medicines
        self.rules = rules or FieldRules()
        self.form_ids = tuple(form_ids)
        messages = dict(self.rules.messages)
        messages.setdefault("avoid_forms", _allowed(self.form_ids))
        self.messages = messages
        self.words = {  # the ProfileBatch field each list column fills, and its vocabulary
            "conditions": pa.array(vocab.CONDITIONS),
            "goals": pa.array(vocab.GOALS),
            "avoid_forms": pa.array(self.form_ids),
        }
        self.sexes = pa.array(vocab.SEXES)
        self.boolean_words = pa.array(BOOLEAN_WORDS)
        self.n_classes = len(vocab.INTERACTION_CLASSES)

    def encode(self, columns: Mapping[str, pa.Array], keep_medications: bool = False) -> EncodedChunk:
        """Validate and encode one chunk. ``columns`` maps column names to arrays of equal
        length; ``id`` and ``age`` are required, the others take the contract's defaults."""
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise KeyError(f"missing required column(s): {', '.join(missing)}")
        texts = {name: as_text(column) for name, column in columns.items() if name in ALLOWED_COLUMNS}
        ids = texts["id"]
        if pa.types.is_dictionary(ids.type):
            ids = ids.cast(pa.string())
        n = len(ids)
        state = _State(ProfileBatch.empty(n, len(self.form_ids), keep_names=False), _Errors(n),
                       np.ones(n, dtype=bool), keep_medications)
        id_length = np.asarray(pc.fill_null(pc.utf8_length(ids), 0).to_numpy(zero_copy_only=False))
        state.all_empty &= id_length == 0
        state.errors.add_message("id", id_length == 0, self.messages["required"])
        low, high = self.rules.id_chars
        state.errors.add_message("id", (id_length > 0) & ((id_length < low) | (id_length > high)),
                                 self.messages["id_length"])
        # The API's field order, so that a row's reasons read like the API's errors.
        steps = (
            ("age", self._age), ("sex", self._sex), ("pregnant", self._boolean), ("breastfeeding", self._boolean),
            ("egfr", self._egfr), ("dialysis", self._boolean), ("serum_magnesium", self._serum_magnesium),
            ("conditions", self._words), ("goals", self._words),
            ("medications", self._medication_column), ("avoid_forms", self._words),
            ("max_units_per_day", self._units),
        )
        for name, step in steps:
            if name in texts:
                values, rows = _distinct(texts[name])
                empty = _empty(values)
                state.all_empty &= empty[rows]
                step(name, values, rows, empty, state)

        batch, errors, valid = state.batch, state.errors, ~state.errors.bad
        fields, reasons = errors.columns()
        if state.all_empty.any():  # a blank line: one plain reason instead of "id missing; age missing"
            blank = pa.array(state.all_empty)
            fields = pc.if_else(blank, pa.scalar(EMPTY_ROW), fields)
            reasons = pc.if_else(blank, pa.scalar(self.messages["empty_row"]), reasons)
        unrecognized = state.unrecognized
        if unrecognized is None:
            unrecognized = pa.array(np.full(n, ""), pa.string())
        medication_lists = state.medication_lists
        if keep_medications and medication_lists is None:
            medication_lists = [[] for _ in range(n)]
        if not valid.all():
            batch = batch.take(valid)
            unrecognized = unrecognized.filter(pa.array(valid))
            if medication_lists is not None:
                medication_lists = [medication_lists[i] for i in np.flatnonzero(valid)]
        return EncodedChunk(batch=batch, valid=valid, ids=ids, fields=fields, reasons=reasons,
                            unrecognized=unrecognized, medications=medication_lists)

    # -- one step per field: (name, distinct values, row -> value index, empty values, state)

    def _whole_numbers(self, name, values, rows, empty, state, value_range, range_message) -> np.ndarray:
        is_number, numbers = _numbers(values)
        whole = is_number & np.isfinite(numbers) & (np.floor(numbers) == numbers)
        low, high = value_range
        in_range = whole & (numbers >= low) & (numbers <= high)
        state.errors.add_message(name, (~empty & ~whole)[rows], self.messages["whole_number"])
        state.errors.add_message(name, (whole & ~in_range)[rows], self.messages[range_message])
        return np.where(in_range, numbers, 0)

    def _age(self, name, values, rows, empty, state) -> None:
        state.errors.add_message(name, empty[rows], self.messages["required"])
        ages = self._whole_numbers(name, values, rows, empty, state, self.rules.age_range, "age_range")
        state.batch.age[:] = ages.astype(np.int16)[rows]

    def _units(self, name, values, rows, empty, state) -> None:
        units = self._whole_numbers(name, values, rows, empty, state, self.rules.units_range, "units_range")
        state.batch.max_units_per_day[:] = units.astype(np.int16)[rows]

    def _sex(self, name, values, rows, empty, state) -> None:
        known, position = _index(values, self.sexes)
        code = np.where(known, position, SEX_CODE["unspecified"]).astype(np.int8)
        state.errors.add_message(name, (~known & ~empty)[rows], self.messages["sex"])
        state.batch.sex[:] = code[rows]

    def _boolean(self, name, values, rows, empty, state) -> None:
        known, position = _index(pc.ascii_lower(values), self.boolean_words)
        state.errors.add_message(name, (~known)[rows], self.messages["boolean"])
        getattr(state.batch, name)[:] = (known & (position >= 3))[rows]

    def _egfr(self, name, values, rows, empty, state) -> None:
        state.batch.egfr[:] = self._measurement(name, values, rows, empty, state, self.rules.egfr_range, "egfr_range")

    def _serum_magnesium(self, name, values, rows, empty, state) -> None:
        state.batch.serum_magnesium[:] = self._measurement(name, values, rows, empty, state, self.rules.serum_range,
                                                           "serum_range")

    def _measurement(self, name, values, rows, empty, state, value_range, range_message) -> np.ndarray:
        """An optional number in its range per row; NaN (unknown) when empty or bad."""
        is_number, numbers = _numbers(values)
        finite = is_number & np.isfinite(numbers)
        low, high = value_range
        in_range = finite & (numbers >= low) & (numbers <= high)
        state.errors.add_message(name, (~empty & ~is_number)[rows], self.messages["number"])
        state.errors.add_message(name, (is_number & ~finite)[rows], self.messages["special_number"])
        state.errors.add_message(name, (finite & ~in_range)[rows], self.messages[range_message])
        return np.where(in_range, numbers, np.nan)[rows]

    def _words(self, name, values, rows, empty, state) -> None:
        matrix, bad, parts = self._word_lists(name, values, empty)
        state.errors.add_parts(name, bad, parts, rows)
        getattr(state.batch, name)[:] = matrix[rows]

    def _medication_column(self, name, values, rows, empty, state) -> None:
        classes, has_unknown, unknown_text, bad, parts, items = self._medications(values, empty, state.keep_items)
        state.errors.add_parts(name, bad, parts, rows)
        state.batch.interaction_classes[:] = classes[rows]
        state.batch.has_unrecognized_medication[:] = has_unknown[rows]
        state.unrecognized = unknown_text.take(pa.array(rows))
        if state.keep_items:
            state.medication_lists = [items[i] for i in rows]

    # -- lists ------------------------------------------------------------------------

    def _split(self, values: pa.Array, empty: np.ndarray):
        """Items of each distinct cell: (items, parent cell per item, position in its cell,
        item count per cell)."""
        cells = pc.if_else(pa.array(empty), pa.scalar(None, pa.string()), values)
        lists = pc.split_pattern(cells, LIST_SEPARATOR)
        items = pc.utf8_trim_whitespace(lists.flatten())
        parents = np.asarray(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
        offsets = np.asarray(lists.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        positions = np.arange(len(items), dtype=np.int64) + offsets[0] - offsets[parents]
        counts = np.diff(offsets)
        return items, parents, positions, counts

    def _item_messages(self, name: str, n_cells: int, parents: np.ndarray, positions: np.ndarray,
                       bad_items: np.ndarray, message: str) -> tuple[np.ndarray, pa.Array]:
        """Per cell: any bad item, and "; name.i: message" for each, in item order."""
        bad_parents = parents[bad_items]
        texts = pc.binary_join_element_wise(
            f"; {name}.", pc.cast(pa.array(positions[bad_items]), pa.string()), f": {message}", "")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(bad_parents, minlength=n_cells))]).astype(np.int32)
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), texts), "")
        return np.bincount(bad_parents, minlength=n_cells) > 0, joined

    def _list_result(self, name: str, bad_items_any: np.ndarray, item_text: pa.Array,
                     counts: np.ndarray) -> tuple[np.ndarray, pa.Array]:
        # marshmallow checks the items first; the list length only when every item passed.
        too_long = ~bad_items_any & (counts > self.rules.max_list_items)
        parts = pc.if_else(pa.array(too_long), pa.scalar(f"; {name}: {self.messages['list_length']}"), item_text)
        return bad_items_any | too_long, parts

    def _word_lists(self, name: str, values: pa.Array, empty: np.ndarray):
        words = self.words[name]
        matrix = np.zeros((len(values), len(words)), dtype=bool)
        items, parents, positions, counts = self._split(values, empty)
        known, word_index = _index(items, words)
        matrix[parents[known], word_index[known]] = True
        bad_any, item_text = self._item_messages(name, len(values), parents, positions, ~known, self.messages[name])
        bad, parts = self._list_result(name, bad_any, item_text, counts)
        return matrix, bad, parts

    def _medications(self, values: pa.Array, empty: np.ndarray, keep_items: bool):
        n_cells = len(values)
        items, parents, positions, counts = self._split(values, empty)
        lengths = np.asarray(pc.utf8_length(items).to_numpy(zero_copy_only=False), dtype=np.int64)
        low, high = self.rules.medication_chars
        bad_length = (lengths < low) | (lengths > high)
        bad_any, item_text = self._item_messages("medications", n_cells, parents, positions, bad_length,
                                                 self.messages["medication_length"])
        bad, parts = self._list_result("medications", bad_any, item_text, counts)

        # Resolve each distinct name once (the index caches it too).
        encoded = pc.dictionary_encode(items)
        names = encoded.dictionary.to_pylist()
        name_of_item = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        name_classes = np.zeros((len(names), self.n_classes), dtype=bool)
        recognized = np.zeros(len(names), dtype=bool)  # wholly: a partly known combination is echoed too
        resolve, classes_of = self.medicines.resolve, self.medicines.classes
        for position, name in enumerate(names):
            resolved = resolve(name)
            if resolved is not None:
                recognized[position] = resolved.complete
                name_classes[position, list(classes_of(resolved))] = True

        classes = np.zeros((n_cells, self.n_classes), dtype=np.int32)
        np.add.at(classes, parents, name_classes[name_of_item].astype(np.int32))
        item_recognized = recognized[name_of_item]
        # Unrecognised names, each once per cell, in the order typed (as the API echoes them).
        unknown = np.flatnonzero(~item_recognized)
        keys = parents[unknown] * max(len(names), 1) + name_of_item[unknown]
        _, first = np.unique(keys, return_index=True)
        keep = np.sort(unknown[first])
        unknown_counts = np.bincount(parents[keep], minlength=n_cells)
        offsets = np.concatenate([[0], np.cumsum(unknown_counts)]).astype(np.int32)
        unknown_text = pc.binary_join(
            pa.ListArray.from_arrays(pa.array(offsets), items.take(pa.array(keep, pa.int64()))), LIST_SEPARATOR)
        item_lists = None
        if keep_items:
            item_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            item_lists = pa.ListArray.from_arrays(pa.array(item_offsets), items).to_pylist()
        return classes > 0, unknown_counts > 0, unknown_text, bad, parts, item_lists


def profile_dicts(batch: ProfileBatch, medications: list[list[str]], form_ids: Sequence[str]) -> list[dict]:
    """Validated profile dicts for encoded rows (for the JSON Lines output, which the
    answer builder writes row by row anyway)."""
    profiles = []
    for row in range(len(batch)):
        egfr, serum_magnesium = float(batch.egfr[row]), float(batch.serum_magnesium[row])
        units = int(batch.max_units_per_day[row])
        profiles.append({
            "age": int(batch.age[row]),
            "sex": vocab.SEXES[int(batch.sex[row])],
            "pregnant": bool(batch.pregnant[row]),
            "breastfeeding": bool(batch.breastfeeding[row]),
            "egfr": None if np.isnan(egfr) else egfr,
            "dialysis": bool(batch.dialysis[row]),
            "serum_magnesium": None if np.isnan(serum_magnesium) else serum_magnesium,
            "conditions": [vocab.CONDITIONS[i] for i in np.flatnonzero(batch.conditions[row])],
            "goals": [vocab.GOALS[i] for i in np.flatnonzero(batch.goals[row])],
            "medications": list(medications[row]),
            "preferences": {
                "avoid_forms": [form_ids[i] for i in np.flatnonzero(batch.avoid_forms[row])],
                "max_units_per_day": units or None,
            },
        })
    return profiles





