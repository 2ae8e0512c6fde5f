"""Readers: CSV, JSON Lines and Parquet read in chunks of rows, each chunk with the 1-based row
numbers of its rows (the CSV header is not a row, empty lines are)."""

from __future__ import annotations

import csv
import io
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from formwise.service.batch.columns import ALLOWED_COLUMNS
from formwise.service.batch.formats import (
    BYTES_DICTIONARY,
    DELIMITERS,
    MALFORMED_FIELD,
    STDIO,
    TEXT_DICTIONARY,
    BatchError,
    CsvOptions,
    check_columns,
    compression_of,
    file_format,
    rejects_table,
)
from formwise.service.batch.lines import (
    DEFAULT_MAX_LINE_BYTES,
    OVERLONG_REASON,
    SHORT_LINES,
    LineLimitedFile,
    longest_line,
)


@dataclass
class TabularChunk:
    columns: dict[str, pa.Array]
    rows: np.ndarray  # int64 row numbers of the parsed rows
    malformed: pa.Table | None = None  # rows the parser could not split into the header's columns


@dataclass
class JsonChunk:
    rows: np.ndarray
    lines: list[bytes]


DEFAULT_CSV = CsvOptions()


class CsvReader:
    """pyarrow's streaming CSV reader, every column as text (validation is ours).

    Lines that do not split into the header's columns are reported by pyarrow's
    invalid-row handler with their line number (single-threaded parsing keeps them), and
    become rejects; empty lines arrive as rows with no values and are rejected as such."""

    kind = "tabular"

    def __init__(self, path: str, chunk_size: int, options: CsvOptions = DEFAULT_CSV):
        self.path = path
        self._malformed: list[tuple[int, int]] = []  # (line number, values found)
        self._lock = threading.Lock()
        self._next_row = 1
        codec = compression_of(path)
        names, delimiter, sample = _read_header(path, codec, options)
        self._raw = pa.OSFile(path, "rb")
        self._source = pa.CompressedInputStream(self._raw, codec) if codec else self._raw
        self._lines = LineLimitedFile(self._source, options.max_line_bytes)
        # pyarrow reads a plain file without the GIL, while chunks are scored; it reads through
        # the line filter (Python) only when the file holds a line over the limit, or is
        # compressed (it cannot be scanned ahead cheaply). A block must hold two of the longest
        # lines that get through, or pyarrow refuses the row that straddles blocks.
        longest = options.max_line_bytes if codec else min(longest_line(path, options.max_line_bytes),
                                                            options.max_line_bytes)
        direct = not codec and longest < options.max_line_bytes
        if longest <= SHORT_LINES:  # shorter than the smallest block: no row can straddle two
            longest = 0
        self.size = os.path.getsize(path)
        lines_in_sample = sample.count(b"\n")
        self._rows_estimate = (None if codec or not lines_in_sample
                               else self.size * lines_in_sample / len(sample) - 1)  # less the header
        block_size = min(max(_csv_block_size(sample, chunk_size), 2 * longest + 2), 1 << 30)
        try:
            self._reader = pa_csv.open_csv(
                self._source if direct else self._lines,
                read_options=pa_csv.ReadOptions(block_size=block_size, use_threads=False, column_names=names,
                                                skip_rows=1, encoding=options.encoding),
                parse_options=pa_csv.ParseOptions(delimiter=delimiter, ignore_empty_lines=False,
                                                  newlines_in_values=False, invalid_row_handler=self._invalid_row),
                # Every column as bytes (a row whose bytes are not UTF-8 becomes a reject below,
                # instead of stopping the run), all but id dictionary-encoded while parsing,
                # which is what validation works on (each distinct value is checked once).
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.binary() if name == "id" else BYTES_DICTIONARY for name in ALLOWED_COLUMNS},
                    include_columns=[name for name in names if not name.startswith(EXTRA_PREFIX)],
                    strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
        except pa.ArrowInvalid as error:
            self._raw.close()
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
        """The share of the rows read so far, from the rows per byte of the file's start (not
        from the bytes pyarrow has read: it reads far ahead of the rows it hands out). None
        for a compressed file, whose size says nothing of its rows."""
        if not self._rows_estimate:
            return None
        return min(0.99, (self._next_row - 1) / self._rows_estimate)

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
        overlong = OVERLONG_REASON.format(max_bytes=self._lines.max_bytes)
        return rejects_table(
            [row for row, _ in taken], [None] * len(taken), [MALFORMED_FIELD] * len(taken),
            [overlong if row + 1 in self._lines.overlong else
             f"Malformed row: {count} values where the header has {expected} columns." for row, count in taken],
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
            columns, rows, undecodable = _as_text(batch, rows)
            if undecodable is not None:
                malformed = undecodable if malformed is None else pa.concat_tables([malformed, undecodable]).sort_by(
                    "row")
            yield TabularChunk(columns, rows, malformed)
        trailing = self._malformed_table(self._take_malformed(float("inf")))
        if trailing is not None:
            yield TabularChunk({}, np.zeros(0, dtype=np.int64), trailing)

    def close(self) -> None:
        self._source.close()


def _header_not_utf8(path: str) -> BatchError:
    return BatchError(f"INPUT '{path}': the header line is not UTF-8 text; save the file as UTF-8 "
                      "(its rows may hold other bytes: those rows are rejected).")


def _rows_estimate(path: str, size: int) -> float | None:
    """About how many lines a file holds, from its first 256 KiB."""
    with open(path, "rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    lines = sample.count(b"\n") + (1 if sample and not sample.endswith(b"\n") and len(sample) == size else 0)
    return size * lines / len(sample) if lines else None


def _as_text(batch: pa.RecordBatch, rows: np.ndarray) -> tuple[dict[str, pa.Array], np.ndarray, pa.Table | None]:
    """The batch's byte columns as UTF-8 text, without the rows whose bytes are not UTF-8,
    which come back as rejects (row number, the fields that hold such bytes). A clean batch
    costs one validating cast per column; only a batch with bad bytes is looked at value by
    value (for the dictionary columns, each distinct value once)."""
    columns, bad_by_column = {}, {}
    for name in batch.schema.names:
        column = batch.column(name)
        text_type = TEXT_DICTIONARY if pa.types.is_dictionary(column.type) else pa.string()
        try:
            columns[name] = column.cast(text_type)
            continue
        except pa.ArrowInvalid:
            pass
        if pa.types.is_dictionary(column.type):
            good = np.array([_decodes(value) for value in column.dictionary.to_pylist()], dtype=bool)
            bad = ~good[column.indices.to_numpy(zero_copy_only=False)]
            dictionary = pa.array([value if ok else b"" for value, ok in zip(column.dictionary.to_pylist(), good,
                                                                              strict=True)], pa.binary())
            column = pa.DictionaryArray.from_arrays(column.indices, dictionary)
        else:
            values = column.to_pylist()
            bad = np.array([not _decodes(value) for value in values], dtype=bool)
            column = pa.array([b"" if is_bad else value for value, is_bad in zip(values, bad, strict=True)],
                              pa.binary())
        columns[name] = column.cast(text_type)
        bad_by_column[name] = bad
    if not bad_by_column:
        return columns, rows, None
    bad_rows = np.logical_or.reduce(list(bad_by_column.values()))
    where = np.flatnonzero(bad_rows)
    fields = [";".join(name for name, bad in bad_by_column.items() if bad[i]) for i in where]
    ids = [value or None for value in columns["id"].take(pa.array(where)).to_pylist()] if "id" in columns else [
        None] * len(where)  # an id that is not UTF-8 itself is left out (its bytes became "")
    rejects = rejects_table(rows[where], ids, fields,
                            ["Not UTF-8 text: save the file as UTF-8 (these bytes are in another encoding)."]
                            * len(where))
    keep = pa.array(~bad_rows)
    return {name: column.filter(keep) for name, column in columns.items()}, rows[~bad_rows], rejects


def _decodes(value: bytes | None) -> bool:
    if value is None:
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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


def _csv_block_size(sample: bytes, chunk_size: int) -> int:
    """Bytes per block for about ``chunk_size`` rows, from the first 256 KiB (decompressed)."""
    lines = max(sample.count(b"\n"), 1)
    per_row = max(len(sample) / lines, 8)
    return int(min(max(chunk_size * per_row, 64 * 1024), 1 << 30))


EXTRA_PREFIX = "__extra_"  # a column --ignore-extra skips (pyarrow needs a name for it)
SAMPLE_BYTES = 256 * 1024


def _read_header(path: str, codec: str | None, options: CsvOptions) -> tuple[list[str], str, bytes]:
    """The header's columns as formwise names (matched without regard to case or spaces;
    unknown ones refused, or named for skipping with --ignore-extra), the delimiter (given,
    or the header's most frequent of , ; tab |) and a sample of the file's start."""
    with pa.input_stream(path, compression=codec) as stream:
        sample = stream.read(SAMPLE_BYTES)
    if not sample.strip():
        raise BatchError(f"INPUT '{path}': the file is empty (no header line).")
    line = sample.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode(options.encoding).lstrip("\ufeff")
    except UnicodeDecodeError:
        raise _header_not_utf8(path) if options.encoding.replace("-", "").lower() == "utf8" else BatchError(
            f"INPUT '{path}': the header line is not {options.encoding} text; check --encoding.") from None
    except LookupError:
        raise BatchError(f"--encoding '{options.encoding}' is not an encoding Python knows "
                         "(utf-8, latin-1, cp1252, ...).") from None
    delimiter = options.delimiter or max(DELIMITERS, key=text.count)
    if not options.delimiter and not any(text.count(candidate) for candidate in DELIMITERS):
        delimiter = ","
    cells = next(csv.reader([text], delimiter=delimiter))
    known = {name.lower(): name for name in ALLOWED_COLUMNS}
    names, unknown = [], []
    for position, cell in enumerate(cells):
        name = known.get(cell.strip().lower())
        if name is None:
            unknown.append(cell)
            name = f"{EXTRA_PREFIX}{position}"
        names.append(name)
    if unknown and not options.ignore_extra:
        raise BatchError(f"INPUT '{path}': unknown column(s) {', '.join(unknown)}; allowed columns: "
                         f"{', '.join(ALLOWED_COLUMNS)} (add --ignore-extra to skip the others).")
    return names, delimiter, sample


class ParquetReader:
    """A Parquet file in batches. Column names match the contract's without regard to case
    or spaces (a warehouse's ``EGFR``); columns formwise does not know are refused, or
    skipped with --ignore-extra; DECIMAL columns are read as numbers (whole ones as integers)."""

    kind = "tabular"

    def __init__(self, path: str, chunk_size: int, ignore_extra: bool = False):
        self.path = path
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise BatchError(f"INPUT '{path}': not a readable Parquet file: {error}") from None
        known = {name.lower(): name for name in ALLOWED_COLUMNS}
        self.names = {name: known.get(name.strip().lower()) for name in self._file.schema_arrow.names}
        unknown = [name for name, canonical in self.names.items() if canonical is None]
        if unknown and not ignore_extra:
            raise BatchError(f"INPUT '{path}': unknown column(s) {', '.join(unknown)}; allowed columns: "
                             f"{', '.join(ALLOWED_COLUMNS)} (add --ignore-extra to skip the others).")
        self.names = {name: canonical for name, canonical in self.names.items() if canonical is not None}
        check_columns(list(self.names.values()), f"INPUT '{path}'")
        for column in self._file.schema_arrow:
            if column.name in self.names and not readable_type(column.type):
                raise BatchError(f"INPUT '{path}': column {column.name} holds {column.type}; use text, numbers, "
                                 "booleans or lists of text.")
        self.total = self._file.metadata.num_rows
        self.chunk_size = chunk_size
        self._done = 0

    def progress(self) -> float | None:
        return self._done / self.total if self.total else None

    def __iter__(self) -> Iterator[TabularChunk]:
        next_row = 1
        for batch in self._file.iter_batches(batch_size=self.chunk_size, columns=list(self.names)):
            rows = np.arange(next_row, next_row + batch.num_rows, dtype=np.int64)
            next_row += batch.num_rows
            self._done += batch.num_rows
            yield TabularChunk({self.names[name]: _numbers_from_decimals(batch.column(name))
                                for name in batch.schema.names}, rows)

    def close(self) -> None:
        self._file.close()


def _numbers_from_decimals(column: pa.Array) -> pa.Array:
    """A DECIMAL column as the numbers it holds: integers when it has no decimal places."""
    if not pa.types.is_decimal(column.type):
        return column
    return column.cast(pa.int64() if column.type.scale == 0 else pa.float64())


def readable_type(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return readable_type(kind.value_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_floating(kind) or pa.types.is_decimal(kind) or pa.types.is_boolean(kind)
            or pa.types.is_null(kind))


class JsonLinesReader:
    kind = "jsonl"

    def __init__(self, path: str, chunk_size: int, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES):
        self.path = path
        self.chunk_size = chunk_size
        self._raw = codec = None
        if path == STDIO:
            source = sys.stdin.buffer
            self.size = None
        else:
            codec = compression_of(path)
            self._raw = pa.OSFile(path, "rb")
            source = pa.CompressedInputStream(self._raw, codec) if codec else self._raw
            self.size = os.path.getsize(path)
        self._rows_estimate = None if self.size is None or codec else _rows_estimate(path, self.size)
        self._rows_read = 0
        # lines over the limit arrive as PLACEHOLDER (the scorer rejects them by that)
        self.max_line_bytes = max_line_bytes
        self._handle = io.BufferedReader(LineLimitedFile(source, max_line_bytes), buffer_size=1 << 20)

    def progress(self) -> float | None:
        """The share of the lines read so far, from the lines per byte of the file's start
        (the buffered reader runs ahead of the lines handed out). None for standard input or
        a compressed file."""
        if not self._rows_estimate:
            return None
        return min(0.99, self._rows_read / self._rows_estimate)

    def __iter__(self) -> Iterator[JsonChunk]:
        next_row = 1
        while True:
            lines = list(islice(self._handle, self.chunk_size))
            if not lines:
                return
            rows = np.arange(next_row, next_row + len(lines), dtype=np.int64)
            next_row += len(lines)
            self._rows_read = next_row - 1
            yield JsonChunk(rows, lines)

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()


def open_reader(path: str, chunk_size: int, csv_options: CsvOptions = DEFAULT_CSV):
    kind = file_format(path, "INPUT")
    if path != STDIO and not Path(path).exists():
        raise BatchError(f"INPUT '{path}': no such file.")
    if path != STDIO and Path(path).is_dir():
        raise BatchError(f"INPUT '{path}' is a directory; the local engine reads one file "
                         "(--engine dask reads a directory or a glob).")
    if kind == "csv":
        return CsvReader(path, chunk_size, csv_options)
    if kind == "parquet":
        return ParquetReader(path, chunk_size, ignore_extra=csv_options.ignore_extra)
    return JsonLinesReader(path, chunk_size, csv_options.max_line_bytes)
