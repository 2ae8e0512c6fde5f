"""Batch files as columns: validate and encode a whole chunk of rows at once, and turn the
engine's arrays back into the contract's output columns.

Each check runs with pyarrow.compute and numpy over the chunk's *distinct* cell values
(a column of a million ages holds about 121 of them) and is gathered back to the rows by
index, so there is no Python loop per row. The limits and messages are the API's:
``service.batch_files`` builds the :class:`FieldRules` from ``service.schemas``, so a file
row is accepted exactly when ``POST /v1/recommendations`` would accept the same values.

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

from models import vocabulary as vocab
from models.engine import Engine, ScoredBatch
from models.features import SEX_CODE, ProfileBatch
from models.medicines import MedicineIndex

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


def output_column_names(limit: int = 3) -> tuple[str, ...]:
    ranks = tuple(name for k in range(1, limit + 1) for name in (f"rank{k}_form", f"rank{k}_score"))
    return ("id", *ranks, "excluded", "caveat_codes", "max_severity", "unrecognized_medications")


@dataclass(frozen=True)
class FieldRules:
    """The API's limits and messages (service.schemas builds the real one)."""

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


# ---- output columns -----------------------------------------------------------------


def round_like_python(values: np.ndarray, digits: int = 4) -> np.ndarray:
    """``round(float(x), digits)`` for every element, bit for bit. numpy's rounding scales
    by 10**digits first, which can land on the wrong side of a half; those few values
    (within 1e-6 of a half after scaling) are rounded by Python itself."""
    scale = 10.0 ** digits
    scaled = values * scale
    rounded = np.round(scaled) / scale
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    for position in np.flatnonzero(near_half):
        rounded.flat[position] = round(float(values.flat[position]), digits)
    return rounded


class OutputBuilder:
    """The contract's CSV/Parquet output columns from the engine's arrays.

    Columns with few distinct values (form ids, excluded forms, caveat codes, severity)
    are built as a dictionary: each distinct value's text once, then an index per row.
    ``as_text=True`` (for CSV) returns plain strings instead, scores included, written
    exactly as the API's JSON writes the rounded score."""

    MAX_TABLE_KEY = 1 << 20

    def __init__(self, engine: Engine):
        self.engine = engine
        self.form_ids = pa.array(engine.form_ids, pa.string())
        self.severities = pa.array(vocab.SEVERITIES, pa.string())
        self.score_texts = pa.array([repr(k / 10_000) for k in range(10_001)], pa.string())
        self._interaction_column = vocab.ANSWER_CAVEATS.index("medication_interaction")
        self._excluded_texts: dict[int, str] = {}
        self._caveat_texts: dict[int, str] = {}
        self._tail_texts: dict[int, str] = {}
        self._rank_table: pa.Array | None = None

    def columns(self, scored: ScoredBatch, ids: pa.Array, unrecognized: pa.Array, limit: int = 3,
                as_text: bool = False) -> pa.Table:
        n = len(scored.eligible_count)
        arrays: list[pa.Array] = [ids]
        rows = np.arange(n)
        n_forms = len(self.engine.form_ids)
        for k in range(limit):
            missing = scored.eligible_count <= k
            if k < n_forms:
                form = scored.order[:, k].astype(np.int32)
                score = round_like_python(scored.scores[rows, form])
            else:
                form, score = np.zeros(n, dtype=np.int32), np.zeros(n)
            arrays.append(self._dictionary(form, self.form_ids, as_text, missing))
            if as_text:
                steps = np.rint(score * 10_000).astype(np.int32)
                arrays.append(self.score_texts.take(pa.array(steps, mask=missing)))
            else:
                arrays.append(pa.array(score, mask=missing))
        arrays.append(self._excluded(scored.exclusion_bits != 0, as_text))
        arrays.append(self._caveat_codes(scored, as_text))
        arrays.append(self._dictionary(scored.max_severity.astype(np.int32), self.severities, as_text))
        arrays.append(unrecognized)
        return pa.Table.from_arrays(arrays, names=list(output_column_names(limit)))

    def csv_rows(self, scored: ScoredBatch, ids: pa.Array, unrecognized: pa.Array, limit: int = 3) -> pa.Buffer:
        """The same rows as CSV text (no header, nothing quoted: the caller checks that no
        id or medicine name needs quotes), built from three kinds of pre-rendered pieces:
        ``form,score`` per rank (one table of every form and 4-place score), the
        ``excluded,caveat_codes,max_severity`` tail (once per distinct combination), and
        the id and medicines; one vectorized join makes the lines."""
        n = len(scored.eligible_count)
        rows = np.arange(n)
        n_forms = len(self.engine.form_ids)
        rank_texts = self._rank_texts()
        missing_rank = len(rank_texts) - 1
        pieces: list[pa.Array] = [ids]
        for k in range(limit):
            if k < n_forms:
                form = scored.order[:, k].astype(np.int64)
                steps = np.rint(round_like_python(scored.scores[rows, form]) * 10_000).astype(np.int64)
                index = np.where(scored.eligible_count > k, form * 10_001 + steps, missing_rank)
            else:
                index = np.full(n, missing_rank)
            pieces.append(rank_texts.take(pa.array(index)))
        pieces.append(self._tails(scored))
        pieces.append(pc.binary_join_element_wise(unrecognized, "\n", ""))
        lines = pc.binary_join_element_wise(*pieces, ",")
        if len(lines) == 0:
            return pa.py_buffer(b"")
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=4 * lines.offset)
        return lines.buffers()[2][int(offsets[0]):int(offsets[-1])]

    def _rank_texts(self) -> pa.Array:
        """"form,score" for every form and every score 0.0000-1.0000, then "," (no rank)."""
        if self._rank_table is None:
            n_forms = len(self.engine.form_ids)
            forms = self.form_ids.take(pa.array(np.repeat(np.arange(n_forms), 10_001)))
            scores = self.score_texts.take(pa.array(np.tile(np.arange(10_001), n_forms)))
            table = pc.binary_join_element_wise(forms, scores, ",")
            self._rank_table = pa.concat_arrays([table, pa.array([","], pa.string())])
        return self._rank_table

    def _tails(self, scored: ScoredBatch) -> pa.Array:
        """"excluded,caveat_codes,max_severity" per row, each distinct combination once."""
        n_caveats = len(vocab.ANSWER_CAVEATS)
        excluded = scored.exclusion_bits != 0
        caveat_keys = _caveat_keys(scored)
        if excluded.shape[1] + 2 * n_caveats + 4 > 62:  # too wide for one integer: the columns' own texts
            parts = [self._excluded(excluded, True), self._caveat_codes(scored, True),
                     self._dictionary(scored.max_severity.astype(np.int32), self.severities, True)]
            return pc.binary_join_element_wise(*parts, ",")
        severity_count = len(vocab.SEVERITIES)
        caveat_key_bits = 2 * n_caveats + 2
        keys = (_bit_keys(excluded) << caveat_key_bits) | caveat_keys
        keys = keys * severity_count + scored.max_severity.astype(np.int64)

        def tail_text(key: int) -> str:
            rest, severity = divmod(key, severity_count)
            excluded_key, caveat_key = rest >> caveat_key_bits, rest & ((1 << caveat_key_bits) - 1)
            return ",".join([self._excluded_text(excluded_key), self._caveat_text(caveat_key),
                             vocab.SEVERITIES[severity]])

        return self._lookup(keys, self._tail_texts, tail_text, as_text=True)

    @staticmethod
    def _dictionary(indices: np.ndarray, texts: pa.Array, as_text: bool, missing: np.ndarray | None = None):
        index_array = pa.array(indices, pa.int32(), mask=missing)
        if as_text:
            return texts.take(index_array)
        return pa.DictionaryArray.from_arrays(index_array, texts)

    def _lookup(self, keys: np.ndarray, cache: dict[int, str], text_for, as_text: bool) -> pa.Array:
        """One text per distinct key (built once per run), then an index per row."""
        keys = keys.astype(np.int64)
        if len(keys) and keys.max() < self.MAX_TABLE_KEY:
            seen = np.zeros(int(keys.max()) + 1, dtype=bool)
            seen[keys] = True
            distinct = np.flatnonzero(seen)
            position = np.zeros(len(seen), dtype=np.int32)
            position[distinct] = np.arange(len(distinct), dtype=np.int32)
            inverse = position[keys]
        else:
            distinct, inverse = np.unique(keys, return_inverse=True)
        texts = []
        for key in distinct.tolist():
            text = cache.get(key)
            if text is None:
                text = cache[key] = text_for(key)
            texts.append(text)
        return self._dictionary(inverse.astype(np.int32).ravel(), pa.array(texts, pa.string()), as_text)

    def _excluded_text(self, key: int) -> str:
        form_ids = self.engine.form_ids
        return LIST_SEPARATOR.join(form_ids[i] for i in range(len(form_ids)) if key >> i & 1)

    def _caveat_text(self, key: int) -> str:
        # The API lists present caveats in vocabulary order, stable-sorted by severity
        # (highest first); medication_interaction takes its interactions' severity, and a
        # caveat escalated for the person's age its higher one (key layout: _caveat_keys).
        n_caveats = len(vocab.ANSWER_CAVEATS)
        interaction_severity = ((key >> n_caveats) & 3) - 1
        escalated = key >> (n_caveats + 2)
        present = [i for i in range(n_caveats) if key >> i & 1]
        engine = self.engine
        severity = {i: (interaction_severity if i == self._interaction_column
                        else int(engine.caveat_escalated_severity[i]) if escalated >> i & 1
                        else int(engine.caveat_severity[i]))
                    for i in present}
        present.sort(key=lambda i: -severity[i])
        return LIST_SEPARATOR.join(vocab.ANSWER_CAVEATS[i] for i in present)

    def _excluded(self, excluded: np.ndarray, as_text: bool) -> pa.Array:
        form_ids = self.engine.form_ids
        if len(form_ids) > MAX_BIT_KEY_COLUMNS:  # too many forms for one integer key: key by row pattern
            distinct, inverse = np.unique(excluded, axis=0, return_inverse=True)
            texts = [LIST_SEPARATOR.join(form_ids[i] for i in np.flatnonzero(row)) for row in distinct]
            return self._dictionary(inverse.astype(np.int32).ravel(), pa.array(texts, pa.string()), as_text)
        return self._lookup(_bit_keys(excluded), self._excluded_texts, self._excluded_text, as_text)

    def _caveat_codes(self, scored: ScoredBatch, as_text: bool) -> pa.Array:
        return self._lookup(_caveat_keys(scored), self._caveat_texts, self._caveat_text, as_text)


def _caveat_keys(scored: ScoredBatch) -> np.ndarray:
    """Per row, what orders its caveat codes: the raised caveats (bits 0..n-1), the interaction
    severity + 1 (2 bits) and the caveats escalated for the person's age (the next n bits)."""
    n_caveats = len(vocab.ANSWER_CAVEATS)
    return (scored.caveat_bits | ((scored.interaction_severity.astype(np.int64) + 1) << n_caveats)
            | (scored.escalated_caveat_bits << (n_caveats + 2)))


MAX_BIT_KEY_COLUMNS = 53  # exact in a float64 mantissa


def _bit_keys(flags: np.ndarray) -> np.ndarray:
    """Each row of a boolean matrix as an integer, bit i = column i: one matrix-vector
    product (BLAS), exact because every partial sum fits the float's mantissa."""
    columns = flags.shape[1]
    if columns > MAX_BIT_KEY_COLUMNS:
        raise ValueError(f"at most {MAX_BIT_KEY_COLUMNS} columns, not {columns}")
    kind = np.float32 if columns <= 24 else np.float64
    weights = np.ldexp(np.ones(columns, dtype=kind), np.arange(columns))
    return (flags.view(np.uint8).astype(kind) @ weights).astype(np.int64)
