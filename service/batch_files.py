"""Batch files for ``formwise score``: read CSV, JSON Lines or Parquet in chunks, score
each chunk with the one vectorized engine, and write the output and the rejects.

The output (and the rejects file) is written to a temporary file beside it and renamed at
the end, so a crash or an interrupt never leaves a half-written file. Chunks are scored
on a small thread pool (numpy and pyarrow release the GIL) and written in input order;
at most a few chunks are in flight, so memory stays flat however large the input.

Row numbers in the rejects file are 1-based positions among the input's data rows (the
CSV header is not a row, empty lines are), so CSV row N is line N + 1 of the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from models import columnar
from models.columnar import ALLOWED_COLUMNS, REQUIRED_COLUMNS, ColumnEncoder, FieldRules, OutputBuilder
from service.ids import answer_id

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
STDIO = "-"
DEFAULT_CHUNK_SIZE = 65_536
REJECT_SCHEMA = pa.schema([("row", pa.int64()), ("id", pa.string()), ("fields", pa.string()),
                           ("reason", pa.string())])
MALFORMED_FIELD = "row"
TEXT_DICTIONARY = pa.dictionary(pa.int32(), pa.string())


class BatchError(Exception):
    """A problem with the command's inputs, found before any row is scored (exit code 2)."""

    exit_code = 2


@dataclass
class Summary:
    rows_in: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    rejects_path: str | None = field(default=None, compare=False)  # where the rejects went (None: stderr)

    def add(self, other: Summary) -> None:
        self.rows_in += other.rows_in
        self.rows_scored += other.rows_scored
        self.rows_rejected += other.rows_rejected

    def line(self) -> str:
        return f"rows_in={self.rows_in} rows_scored={self.rows_scored} rows_rejected={self.rows_rejected}"


def file_format(path: str, role: str) -> str:
    """'csv', 'jsonl' or 'parquet' from the extension; '-' is JSON Lines."""
    if path == STDIO:
        return "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        allowed = ", ".join(FORMATS)
        raise BatchError(f"{role} '{path}': unknown format '{suffix or '(no extension)'}'; use one of {allowed} "
                         f"(or '-' for JSON Lines on standard {'input' if role == 'INPUT' else 'output'}).")
    return FORMATS[suffix]


def default_rejects_path(output: str) -> str | None:
    """``out.csv`` -> ``out.rejects.csv``; None for standard output (rejects go to stderr)."""
    if output == STDIO:
        return None
    path = Path(output)
    suffix = path.suffix if path.suffix.lower() in FORMATS else ".csv"
    stem = path.stem if path.suffix.lower() in FORMATS else path.name
    return str(path.with_name(f"{stem}.rejects{suffix}"))


def field_rules() -> FieldRules:
    """The API schema's limits and messages, read from the schema objects themselves so
    that the file path can never drift from what ``POST /v1/recommendations`` accepts.
    Form ids are the engine's own (the encoder lists them), as the API's are the running
    knowledge base's: a FORMWISE_KNOWLEDGE_BASE_DIR may hold other forms than the package."""
    import marshmallow as ma

    from service.schemas import BatchItemSchema, PreferencesSchema, ProfileSchema

    profile, preferences, item = ProfileSchema(), PreferencesSchema(), BatchItemSchema()

    def failure(validator, value) -> str:
        try:
            validator(value)
        except ma.ValidationError as error:
            return error.messages[0]
        raise AssertionError(f"{validator!r} accepted {value!r}")

    age, egfr = profile.fields["age"].validators[0], profile.fields["egfr"].validators[0]
    serum = profile.fields["serum_magnesium"].validators[0]
    units = preferences.fields["max_units_per_day"].validators[0]
    medication_length = profile.fields["medications"].inner.validators[0]
    list_length = profile.fields["conditions"].validators[0]
    id_length = item.fields["id"].validators[0]
    messages = {
        "required": profile.fields["age"].error_messages["required"],
        "id_length": failure(id_length, ""),
        "whole_number": profile.fields["age"].error_messages["invalid"],
        "age_range": failure(age, age.max + 1),
        "sex": failure(profile.fields["sex"].validators[0], "?"),
        "boolean": profile.fields["pregnant"].error_messages["invalid"],
        "number": profile.fields["egfr"].error_messages["invalid"],
        "special_number": profile.fields["egfr"].error_messages["special"],
        "egfr_range": failure(egfr, egfr.max + 1),
        "serum_range": failure(serum, serum.max + 1),
        "conditions": failure(profile.fields["conditions"].inner.validators[0], "?"),
        "goals": failure(profile.fields["goals"].inner.validators[0], "?"),
        "medication_length": failure(medication_length, ""),
        "list_length": failure(list_length, [0] * (list_length.max + 1)),
        "units_range": failure(units, units.max + 1),
        "empty_row": columnar.DEFAULT_MESSAGES["empty_row"],
    }
    return FieldRules(
        age_range=(age.min, age.max),
        egfr_range=(float(egfr.min), float(egfr.max)),
        serum_range=(float(serum.min), float(serum.max)),
        units_range=(units.min, units.max),
        max_list_items=list_length.max,
        medication_chars=(medication_length.min, medication_length.max),
        id_chars=(id_length.min, id_length.max),
        messages=messages,
    )


def knowledge_base():
    """The packaged knowledge base, or FORMWISE_KNOWLEDGE_BASE_DIR like the server."""
    from models.knowledge import default_knowledge_base, load_knowledge_base
    from service.settings import Settings

    folder = Settings()["FORMWISE_KNOWLEDGE_BASE_DIR"]  # the command has no app: the environment
    return load_knowledge_base(folder=Path(folder)) if folder else default_knowledge_base()


def make_recommender(kb=None):
    """The same Recommender (knowledge base and active model) the server builds."""
    from models.recommender import Recommender

    return Recommender(kb or knowledge_base())


def check_columns(names: list[str], source: str) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise BatchError(f"{source}: missing required column(s) {', '.join(missing)} "
                         f"(the columns found: {', '.join(names) or 'none'}).")
    unknown = [name for name in names if name not in ALLOWED_COLUMNS]
    if unknown:
        raise BatchError(f"{source}: unknown column(s) {', '.join(unknown)}; allowed columns: "
                         f"{', '.join(ALLOWED_COLUMNS)}.")


def rejects_table(rows, ids, fields, reasons) -> pa.Table:
    return pa.table({
        "row": pa.array(rows, pa.int64()),
        "id": pa.array(ids, pa.string()) if not isinstance(ids, pa.Array) else ids.cast(pa.string()),
        "fields": pa.array(fields, pa.string()) if not isinstance(fields, pa.Array) else fields,
        "reason": pa.array(reasons, pa.string()) if not isinstance(reasons, pa.Array) else reasons,
    }, schema=REJECT_SCHEMA)


# ---- readers ------------------------------------------------------------------------


@dataclass
class TabularChunk:
    columns: dict[str, pa.Array]
    rows: np.ndarray  # int64 row numbers of the parsed rows
    malformed: pa.Table | None = None  # rows the parser could not split into the header's columns


@dataclass
class JsonChunk:
    rows: np.ndarray
    lines: list[bytes]


class CsvReader:
    """pyarrow's streaming CSV reader, every column as text (validation is ours).

    Lines that do not split into the header's columns are reported by pyarrow's
    invalid-row handler with their line number (single-threaded parsing keeps them), and
    become rejects; empty lines arrive as rows with no values and are rejected as such."""

    kind = "tabular"

    def __init__(self, path: str, chunk_size: int):
        self.path = path
        self._malformed: list[tuple[int, int]] = []  # (line number, values found)
        self._lock = threading.Lock()
        self._next_row = 1
        self._source = pa.OSFile(path, "rb")
        self.size = os.path.getsize(path)
        block_size = _csv_block_size(path, chunk_size)
        try:
            self._reader = pa_csv.open_csv(
                self._source,
                read_options=pa_csv.ReadOptions(block_size=block_size, use_threads=False),
                parse_options=pa_csv.ParseOptions(ignore_empty_lines=False, newlines_in_values=False,
                                                  invalid_row_handler=self._invalid_row),
                # Every column as text; all but id dictionary-encoded while parsing, which is
                # what validation works on (each distinct value is checked once).
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() if name == "id" else TEXT_DICTIONARY for name in ALLOWED_COLUMNS},
                    strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
        except pa.ArrowInvalid as error:
            self._source.close()
            if "Empty CSV file" in str(error):
                raise BatchError(f"INPUT '{path}': the file is empty (no header line).") from None
            raise BatchError(f"INPUT '{path}': not a readable CSV file: {error}") from None
        try:
            check_columns(self._reader.schema.names, f"INPUT '{path}'")
        except BatchError:
            self.close()
            raise

    def _invalid_row(self, row) -> str:
        with self._lock:
            self._malformed.append((row.number, row.actual_columns))
        return "skip"

    def progress(self) -> float | None:
        try:
            return min(1.0, self._source.tell() / self.size) if self.size else None
        except (OSError, ValueError):
            return None

    def _take_malformed(self, up_to_row: float) -> list[tuple[int, int]]:
        """Malformed rows numbered up to ``up_to_row``, as (row, value count)."""
        with self._lock:
            taken = [(line - 1, count) for line, count in self._malformed if line - 1 <= up_to_row]
            self._malformed = [item for item in self._malformed if item[0] - 1 > up_to_row]
        return taken

    def _malformed_table(self, taken: list[tuple[int, int]]) -> pa.Table | None:
        if not taken:
            return None
        expected = len(self._reader.schema.names)
        return rejects_table(
            [row for row, _ in taken], [None] * len(taken), [MALFORMED_FIELD] * len(taken),
            [f"Malformed row: {count} values where the header has {expected} columns." for _, count in taken],
        )

    def __iter__(self) -> Iterator[TabularChunk]:
        for batch in self._reader:
            if batch.num_rows == 0:
                continue
            with self._lock:
                skipped = np.array(sorted(line - 1 for line, _ in self._malformed), dtype=np.int64)
            rows = _rows_skipping(self._next_row, batch.num_rows, skipped)
            self._next_row = int(rows[-1]) + 1
            malformed = self._malformed_table(self._take_malformed(rows[-1]))
            yield TabularChunk({name: batch.column(name) for name in batch.schema.names}, rows, malformed)
        trailing = self._malformed_table(self._take_malformed(float("inf")))
        if trailing is not None:
            yield TabularChunk({}, np.zeros(0, dtype=np.int64), trailing)

    def close(self) -> None:
        self._source.close()


def _rows_skipping(first: int, count: int, skipped: np.ndarray) -> np.ndarray:
    """The ``count`` smallest row numbers >= ``first`` that are not in ``skipped``."""
    skipped = skipped[skipped >= first]
    base = first + np.arange(count, dtype=np.int64)
    rows = base
    while True:
        shifted = base + np.searchsorted(skipped, rows, side="right")
        if np.array_equal(shifted, rows):
            return rows
        rows = shifted


def _csv_block_size(path: str, chunk_size: int) -> int:
    """Bytes per block for about ``chunk_size`` rows, from the first 256 KiB."""
    with open(path, "rb") as handle:
        sample = handle.read(256 * 1024)
    lines = max(sample.count(b"\n"), 1)
    per_row = max(len(sample) / lines, 8)
    return int(min(max(chunk_size * per_row, 64 * 1024), 1 << 30))


class ParquetReader:
    kind = "tabular"

    def __init__(self, path: str, chunk_size: int):
        self.path = path
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise BatchError(f"INPUT '{path}': not a readable Parquet file: {error}") from None
        self.names = self._file.schema_arrow.names
        check_columns(self.names, f"INPUT '{path}'")
        for column in self._file.schema_arrow:
            if not _readable_type(column.type):
                raise BatchError(f"INPUT '{path}': column {column.name} holds {column.type}; use text, numbers, "
                                 "booleans or lists of text.")
        self.total = self._file.metadata.num_rows
        self.chunk_size = chunk_size
        self._done = 0

    def progress(self) -> float | None:
        return self._done / self.total if self.total else None

    def __iter__(self) -> Iterator[TabularChunk]:
        next_row = 1
        for batch in self._file.iter_batches(batch_size=self.chunk_size, columns=self.names):
            rows = np.arange(next_row, next_row + batch.num_rows, dtype=np.int64)
            next_row += batch.num_rows
            self._done += batch.num_rows
            yield TabularChunk({name: batch.column(name) for name in batch.schema.names}, rows)

    def close(self) -> None:
        self._file.close()


def _readable_type(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _readable_type(kind.value_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind))


class JsonLinesReader:
    kind = "jsonl"

    def __init__(self, path: str, chunk_size: int):
        self.path = path
        self.chunk_size = chunk_size
        if path == STDIO:
            self._handle = sys.stdin.buffer
            self.size = None
        else:
            self._handle = open(path, "rb")  # noqa: SIM115 - closed by close()
            self.size = os.path.getsize(path)

    def progress(self) -> float | None:
        if not self.size:
            return None
        try:
            return min(1.0, self._handle.tell() / self.size)
        except (OSError, ValueError):
            return None

    def __iter__(self) -> Iterator[JsonChunk]:
        next_row = 1
        while True:
            lines = list(islice(self._handle, self.chunk_size))
            if not lines:
                return
            rows = np.arange(next_row, next_row + len(lines), dtype=np.int64)
            next_row += len(lines)
            yield JsonChunk(rows, lines)

    def close(self) -> None:
        if self._handle is not sys.stdin.buffer:
            self._handle.close()


def open_reader(path: str, chunk_size: int):
    kind = file_format(path, "INPUT")
    if path != STDIO and not Path(path).exists():
        raise BatchError(f"INPUT '{path}': no such file.")
    if path != STDIO and Path(path).is_dir():
        raise BatchError(f"INPUT '{path}' is a directory; the local engine reads one file "
                         "(--engine dask reads a directory or a glob).")
    return {"csv": CsvReader, "parquet": ParquetReader, "jsonl": JsonLinesReader}[kind](path, chunk_size)


# ---- scoring a chunk ----------------------------------------------------------------


@dataclass
class ChunkResult:
    output: pa.Table | list[bytes]
    rejects: pa.Table | None
    summary: Summary = field(default_factory=Summary)


class ChunkScorer:
    """Scores chunks for one output kind: a table (CSV/Parquet) or JSON Lines answers.

    ``recommender`` may be a Future: loading the model (the learned artifact) takes a
    while, and the first chunks are read meanwhile. The encoder needs only the knowledge
    base, so it is ready at once."""

    def __init__(self, recommender, output_kind: str, limit: int = 3, locale: str = "en",
                 rules: FieldRules | None = None, kb=None):
        from models.medicines import MedicineIndex

        self._recommender = recommender
        self.output_kind = output_kind
        self.limit = limit
        self.locale = locale
        if isinstance(recommender, Future):
            kb = kb or knowledge_base()
            self.encoder = ColumnEncoder(rules=rules or field_rules(), form_ids=kb.form_ids,
                                         medicines=MedicineIndex(kb))
        else:
            self.encoder = ColumnEncoder(recommender.engine, rules or field_rules())
        self._builder = None
        self._lock = threading.Lock()

    @property
    def recommender(self):
        if isinstance(self._recommender, Future):
            self._recommender = self._recommender.result()
        return self._recommender

    @property
    def engine(self):
        return self.recommender.engine

    @property
    def builder(self) -> OutputBuilder:
        with self._lock:
            if self._builder is None:
                if tuple(self.engine.form_ids) != self.encoder.form_ids:
                    raise RuntimeError("the model's knowledge base has other forms than the encoder's")
                self._builder = OutputBuilder(self.engine)
        return self._builder

    def wait_ready(self) -> None:
        """Block until the model is loaded (raises what loading raised)."""
        _ = self.recommender

    def ready(self) -> bool:
        return not isinstance(self._recommender, Future) or self._recommender.done()

    def score(self, chunk) -> ChunkResult:
        if isinstance(chunk, JsonChunk):
            return self._score_json(chunk)
        return self._score_tabular(chunk)

    def empty_output(self) -> pa.Table:
        chunk = TabularChunk({"id": pa.array([], pa.string()), "age": pa.array([], pa.string())},
                             np.zeros(0, dtype=np.int64))
        return self._score_tabular(chunk).output

    def _score_tabular(self, chunk: TabularChunk) -> ChunkResult:
        summary = Summary()
        malformed = chunk.malformed
        if malformed is not None:
            summary.rows_in += malformed.num_rows
            summary.rows_rejected += malformed.num_rows
        if not chunk.columns:
            return ChunkResult(self._empty_part(), malformed, summary)
        wants_answers = self.output_kind == "jsonl"
        encoded = self.encoder.encode(chunk.columns, keep_medications=wants_answers)
        n = len(encoded.valid)
        rejected = encoded.rejected
        rejects = None
        if rejected.any():
            mask = pa.array(rejected)
            ids = encoded.ids.filter(mask)
            ids = pc.if_else(pc.equal(pc.fill_null(pc.utf8_length(ids), 0), 0), pa.scalar(None, pa.string()), ids)
            rejects = rejects_table(chunk.rows[rejected], ids, encoded.fields.filter(mask),
                                    encoded.reasons.filter(mask))
        if malformed is not None:
            rejects = malformed if rejects is None else _sorted_rejects([malformed, rejects])
        valid_ids = encoded.ids.filter(pa.array(encoded.valid)) if rejected.any() else encoded.ids
        scored_count = len(encoded.batch)
        summary.rows_in += n
        summary.rows_scored += scored_count
        summary.rows_rejected += n - scored_count
        if wants_answers:
            profiles = columnar.profile_dicts(encoded.batch, encoded.medications, self.encoder.form_ids)
            return ChunkResult(self._answer_lines(valid_ids.to_pylist(), profiles), rejects, summary)
        scored = self.engine.score(encoded.batch)
        output = self._output(scored, valid_ids.cast(pa.string()), encoded.unrecognized)
        return ChunkResult(output, rejects, summary)

    def _output(self, scored, ids: pa.Array, unrecognized: pa.Array):
        """The output part: a table (Parquet), or CSV text rendered here, on the worker."""
        if self.output_kind != "csv":
            return self.builder.columns(scored, ids, unrecognized, self.limit)
        names = columnar.output_column_names(self.limit)
        ids, unrecognized = defuse_formulas(ids), defuse_formulas(unrecognized)
        if not (_any_match(ids, NEEDS_QUOTES) or _any_match(unrecognized, NEEDS_QUOTES)):
            return CsvPart(names, self.builder.csv_rows(scored, ids, unrecognized, self.limit), len(ids))
        return render_csv(self.builder.columns(scored, ids, unrecognized, self.limit, as_text=True))

    def _empty_part(self):
        return [] if self.output_kind == "jsonl" else None

    def _score_json(self, chunk: JsonChunk) -> ChunkResult:
        import marshmallow as ma

        from service.errors import flatten_messages
        from service.recommendations import load_batch_item  # the batch endpoint's own validation

        ids, profiles = [], []
        reject_rows, reject_ids, reject_fields, reject_reasons = [], [], [], []
        for row, line in zip(chunk.rows.tolist(), chunk.lines, strict=True):
            if not line.strip():
                reject_rows.append(row)
                reject_ids.append(None)
                reject_fields.append(columnar.EMPTY_ROW)
                reject_reasons.append(self.encoder.messages["empty_row"])
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                reject_rows.append(row)
                reject_ids.append(None)
                reject_fields.append(MALFORMED_FIELD)
                reject_reasons.append(f"Not valid JSON: {error}.")
                continue
            item_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
            try:
                profile = load_batch_item(item)
            except ma.ValidationError as error:
                errors = flatten_messages(error.messages)
                reject_rows.append(row)
                reject_ids.append(item_id)
                reject_fields.append(columnar.LIST_SEPARATOR.join(dict.fromkeys(
                    _field_name(error_item["field"]) for error_item in errors)))
                reject_reasons.append("; ".join(f"{e['field']}: {e['message']}" for e in errors))
                continue
            ids.append(item_id)
            profiles.append(profile)
        summary = Summary(len(chunk.lines), len(profiles), len(reject_rows))
        rejects = rejects_table(reject_rows, reject_ids, reject_fields, reject_reasons) if reject_rows else None
        if not profiles:
            return ChunkResult([] if self.output_kind == "jsonl" else None, rejects, summary)
        if self.output_kind == "jsonl":
            return ChunkResult(self._answer_lines(ids, profiles), rejects, summary)
        batch = self.recommender.batch(profiles)
        scored = self.engine.score(batch)
        unrecognized = pa.array([columnar.LIST_SEPARATOR.join(names) for names in batch.unrecognized_medications],
                                pa.string())
        return ChunkResult(self._output(scored, pa.array(ids, pa.string()), unrecognized), rejects, summary)

    def _answer_lines(self, ids: list, profiles: list[dict]) -> list[bytes]:
        if not profiles:
            return []
        batch = self.recommender.batch(profiles)
        answers = self.recommender.answers.answers(batch, self.engine.score(batch), self.limit, self.locale)
        return [
            orjson.dumps({"id": item_id, "output": {"recommendation_id": answer_id(), **answer},
                          "error": None}) + b"\n"
            for item_id, answer in zip(ids, answers, strict=True)
        ]


def _field_name(path: str) -> str:
    """'profile.conditions.1' -> 'profile.conditions'."""
    parts = path.split(".")
    while len(parts) > 1 and parts[-1].isdigit():
        parts.pop()
    return ".".join(parts)


def _sorted_rejects(tables: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(tables)
    return table.take(pc.sort_indices(table["row"]))


# ---- writers ------------------------------------------------------------------------


class AtomicFile:
    """A temporary file beside ``path``, renamed over it by commit() and removed by
    discard(); '-' writes straight to standard output."""

    def __init__(self, path: str):
        self.path = path
        if path == STDIO:
            self.temporary = None
            self.handle = sys.stdout.buffer
            return
        target = Path(path)
        if target.is_dir():
            raise BatchError(f"'{path}' is a directory; give a file name.")
        if not target.parent.exists():
            raise BatchError(f"'{path}': the folder '{target.parent}' does not exist.")
        self.temporary = str(target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"))
        self.handle = open(self.temporary, "wb")  # noqa: SIM115 - closed by commit() or discard()

    def write(self, data) -> None:
        """All of ``data``: a buffered write may stop short when a pipe reader goes away
        (it returns the count instead of raising), so write the rest until it raises."""
        view = memoryview(data).cast("B")
        while view:
            written = self.handle.write(view)
            view = view[written:]

    def commit(self) -> None:
        if self.temporary is None:
            self.handle.flush()
            return
        self.handle.close()
        os.replace(self.temporary, self.path)
        self.temporary = None

    def discard(self) -> None:
        if self.temporary is None:
            return
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temporary)
        self.temporary = None


@dataclass
class CsvPart:
    """Rows already rendered as CSV (without the header), by the worker that scored them."""

    columns: tuple[str, ...]
    data: pa.Buffer | bytes
    num_rows: int


FREE_TEXT_COLUMNS = ("id", "unrecognized_medications", "reason")
NEEDS_QUOTES = '[",\r\n]'
# A cell a spreadsheet would run as a formula (=HYPERLINK(...), +cmd, -2+3, @SUM, a tab or
# CR first): CSV output prefixes it with a single quote, as OWASP advises; Parquet and JSON
# Lines keep the value as it came.
FORMULA_START = "^[=+\\-@\t\r]"


def defuse_formulas(column):
    """The column with every value that starts like a formula prefixed with "'" (free text
    from the input file: ids, medicine names)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    starts = pc.match_substring_regex(column, FORMULA_START)
    if not pc.any(starts).as_py():
        return column
    return pc.if_else(starts, pc.binary_join_element_wise(pa.scalar("'"), column, ""), column)


def _any_match(column, pattern: str) -> bool:
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    return bool(pc.any(pc.match_substring_regex(column, pattern)).as_py())


def _needs_quotes(table: pa.Table) -> bool:
    return any(_any_match(table[name], NEEDS_QUOTES) for name in FREE_TEXT_COLUMNS if name in table.column_names)


def render_csv(table: pa.Table) -> CsvPart:
    """CSV rows (no header) for a table, rendered by the worker that scored it. Values are
    quoted only in chunks where a free-text value (an id, a medication name) needs it."""
    for name in FREE_TEXT_COLUMNS:
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, defuse_formulas(table[name]))
    quoting = "needed" if _needs_quotes(table) else "none"
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, quoting_style=quoting))
    return CsvPart(tuple(table.column_names), sink.getvalue(), table.num_rows)


class TableWriter:
    """CSV, Parquet or JSON Lines rows, from arrow tables or (CSV) rendered parts."""

    def __init__(self, path: str, kind: str):
        self.kind = kind
        self.file = AtomicFile(path)
        self._writer = None
        self._schema = None
        self._header_written = False

    def write(self, part: pa.Table | CsvPart) -> None:
        if self.kind == "jsonl":
            for record in part.to_pylist():
                self.file.write(orjson.dumps(record) + b"\n")
            return
        if self.kind == "csv":
            if isinstance(part, pa.Table):
                part = render_csv(part)
            if not self._header_written:  # column names are plain words: no quotes needed
                self.file.write((",".join(part.columns) + "\n").encode())
                self._header_written = True
            self.file.write(part.data)
            return
        if self._schema is None:
            self._schema = part.schema
        elif part.schema != self._schema:
            part = part.cast(self._schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.file.handle, part.schema, compression="zstd")
        self._writer.write_table(part)

    def close(self, empty: pa.Table | None) -> None:
        if not self._header_written and self._schema is None and empty is not None and self.kind != "jsonl":
            self.write(empty)  # a header (CSV) or a schema (Parquet) even with no rows
        if self._writer is not None:
            self._writer.close()

    def commit(self, empty: pa.Table | None = None) -> None:
        self.close(empty)
        self.file.commit()

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        self.file.discard()


class LinesWriter:
    """JSON Lines answers (already serialised)."""

    def __init__(self, path: str):
        self.file = AtomicFile(path)

    def write(self, lines: list[bytes]) -> None:
        if lines:
            self.file.write(b"".join(lines))

    def commit(self, empty=None) -> None:
        self.file.commit()

    def discard(self) -> None:
        self.file.discard()


class StderrRejects:
    """Rejects as JSON Lines on standard error (when the output is standard output and
    no --rejects file is given)."""

    def write(self, table: pa.Table) -> None:
        for record in table.to_pylist():
            sys.stderr.write(orjson.dumps(record).decode() + "\n")

    def commit(self, empty=None) -> None:
        sys.stderr.flush()

    def discard(self) -> None:
        pass


def open_rejects(path: str | None):
    if path is None:
        return StderrRejects()
    return TableWriter(path, file_format(path, "--rejects"))


# ---- progress -----------------------------------------------------------------------


class Progress:
    """One line on standard error: rows done, rows/s and, when the size is known, the
    share done and the time left. Redrawn at most four times a second."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, rows: int, fraction: float | None, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = rows / elapsed
        text = f"{rows:>12,} rows  {rate:>10,.0f} rows/s"
        if fraction:
            width = 24
            filled = int(width * fraction)
            left = elapsed * (1 - fraction) / fraction
            text = (f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%  {text}  "
                    f"{_duration(left)} left")
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()

    def finish(self, rows: int) -> None:
        if self.enabled:
            self.update(rows, 1.0, force=True)
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# ---- the whole run ------------------------------------------------------------------


def score_file(input_path: str, output_path: str, rejects_path: str | None = None, *,
               chunk_size: int = DEFAULT_CHUNK_SIZE, limit: int = 3, locale: str = "en",
               progress: bool = False, workers: int | None = None, recommender=None) -> Summary:
    """Score INPUT into OUTPUT (and the rejects file); returns the counts. Raises
    BatchError before writing anything when the inputs are unusable."""
    output_kind = file_format(output_path, "OUTPUT")
    if rejects_path is None:
        rejects_path = default_rejects_path(output_path)
    elif rejects_path == STDIO:
        rejects_path = None
    if rejects_path is not None:
        file_format(rejects_path, "--rejects")
    if input_path != STDIO and output_path != STDIO and Path(input_path).resolve() == Path(output_path).resolve():
        raise BatchError(f"OUTPUT '{output_path}' is the INPUT file; write to another file.")
    if rejects_path is not None and output_path != STDIO and Path(rejects_path).resolve() == Path(
            output_path).resolve():
        raise BatchError(f"--rejects '{rejects_path}' is OUTPUT; give the rejects another file.")
    _skip_pandas()
    reader = open_reader(input_path, chunk_size)
    _reuse_freed_memory()
    try:
        if recommender is None:  # load the model while the first chunks are read
            kb = knowledge_base()
            recommender = _load_in_background(kb)
        else:
            kb = recommender.knowledge_base
        scorer = ChunkScorer(recommender, output_kind, limit, locale, kb=kb)
        workers = workers or min(os.cpu_count() or 1, 8)
        bar = Progress(progress)
        summary = Summary(rejects_path=rejects_path)
        output = rejects = None
        try:
            with signals_deferred():  # an interrupt lands once both files exist and are known here
                output = LinesWriter(output_path) if output_kind == "jsonl" else TableWriter(output_path, output_kind)
                rejects = open_rejects(rejects_path)
            _run(reader, scorer, output, rejects, summary, bar, workers)  # the engine keeps BLAS to one thread
            empty = None if output_kind == "jsonl" else scorer.empty_output()
            with signals_deferred():  # both files, or neither
                rejects.commit(REJECT_SCHEMA.empty_table())
                output.commit(empty)
        except BaseException:
            for written in (output, rejects):
                if written is not None:
                    written.discard()
            raise
        bar.finish(summary.rows_in)
        return summary
    finally:
        reader.close()


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM until the block is done, so that an interrupt never falls
    between creating a temporary file and recording it, or between renaming the output
    and renaming the rejects. (Blocking the signal would not do: another thread may take
    it, and Python still runs the handler on the main thread.) A signal that came in is
    raised again at the end, to whatever handler was there before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = (signal.SIGINT, signal.SIGTERM)
    arrived: list[int] = []
    previous = {number: signal.signal(number, lambda number, frame: arrived.append(number)) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in arrived[:1]:
            signal.raise_signal(number)


def _load_in_background(kb) -> Future:
    """The Recommender, built on a daemon thread: an interrupted run exits at once instead
    of waiting for (or, if the interrupt hit an import, deadlocking on) the model load."""
    future: Future = Future()

    def load() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(make_recommender(kb))
        except BaseException as error:  # handed to whoever waits for the model
            future.set_exception(error)

    threading.Thread(target=load, name="formwise-model", daemon=True).start()
    return future


_MALLOC_SETTINGS = {  # glibc mallopt parameters
    -3: 256 * 1024 * 1024,  # M_MMAP_THRESHOLD: chunk-sized arrays come from the heap, not fresh mmaps
    -1: 512 * 1024 * 1024,  # M_TRIM_THRESHOLD: and the heap keeps them for the next chunk
    -2: 64 * 1024 * 1024,  # M_TOP_PAD
}


@functools.cache
def _skip_pandas() -> None:
    """pyarrow imports pandas (when installed) the first time it converts anything, just
    to ask whether the input is a pandas object: a third of a second at every start, for
    nothing here. Let that first check find no pandas. pyarrow only records "not tried
    again for optional checks"; anything that needs pandas (to_pandas, the Dask engine)
    still imports it. Done once, on the main thread before any worker thread exists, and
    only when pandas is not imported yet."""
    if "pandas" in sys.modules or threading.active_count() > 1:
        return
    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(blocker)


class _NoPandas:
    """A meta path finder under which ``import pandas`` raises ImportError."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError(f"{name} is not imported by formwise score's start-up check")
        return None


@functools.cache
def _reuse_freed_memory() -> None:
    """Every chunk allocates and frees the same array sizes; by default glibc maps each
    large array afresh and returns it at once, so every chunk pays its page faults again
    (about a third of the system time). Keeping freed memory for reuse costs no RSS, since
    the next chunk needs the same amount. A no-op where glibc is not the allocator."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError, TypeError):
        return
    for parameter, value in _MALLOC_SETTINGS.items():
        mallopt(ctypes.c_int(parameter), ctypes.c_int(value))


READ_AHEAD_CHUNKS = 16  # chunks read (not yet validated) while the model loads


def _run(reader, scorer: ChunkScorer, output, rejects, summary: Summary, bar: Progress, workers: int) -> None:
    """Read on this thread, score on a pool of ``workers`` threads, write here in input
    order, with at most two chunks per worker in flight. While the model loads (a
    GIL-bound import), this thread only reads ahead, which pyarrow does without the GIL."""
    in_flight: deque[Future] = deque()
    chunks = iter(reader)
    read_ahead = []
    while not scorer.ready() and len(read_ahead) < READ_AHEAD_CHUNKS:
        chunk = next(chunks, None)
        if chunk is None:
            break
        read_ahead.append(chunk)
    scorer.wait_ready()

    def drain(block: bool) -> None:
        while in_flight and (block or in_flight[0].done() or len(in_flight) > workers * 2):
            result: ChunkResult = in_flight.popleft().result()
            if result.output is not None:
                output.write(result.output)
            if result.rejects is not None and result.rejects.num_rows:
                rejects.write(result.rejects)
            summary.add(result.summary)
            bar.update(summary.rows_in, reader.progress())

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="formwise-score")
    try:
        for chunk in itertools.chain(read_ahead, chunks):
            in_flight.append(pool.submit(scorer.score, chunk))
            drain(block=False)
        read_ahead.clear()
        drain(block=True)
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
