"""Writers: the output and the rejects written to a temporary file beside their place and
renamed at the end (a crash never leaves half a file), CSV cells that a spreadsheet would run
as a formula defused."""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from formwise.service.batch.formats import (
    STDIO,
    BatchError,
    compression_of,
    file_format,
)


def remove_stale_temporaries(target: Path) -> list[str]:
    """Removes the temporary files an earlier run to ``target`` left when it was killed
    (``.NAME.PID.RANDOM.tmp`` whose process is gone: a SIGKILL skips every clean-up); a run
    that is still writing (its process alive) keeps its file. Returns what was removed."""
    removed = []
    for candidate in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        parts = candidate.name[len(target.name) + 2:].split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        if _process_alive(int(parts[0])):
            continue
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(str(candidate))
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


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
        self.removed_stale = remove_stale_temporaries(target)
        self.temporary = str(target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"))
        codec = compression_of(path)  # out.csv.gz: compressed as it is written
        self.handle = (pa.CompressedOutputStream(self.temporary, codec) if codec
                       else open(self.temporary, "wb"))  # noqa: SIM115 - closed by commit() or discard()

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


def any_match(column, pattern: str) -> bool:
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    return bool(pc.any(pc.match_substring_regex(column, pattern)).as_py())


def _needs_quotes(table: pa.Table) -> bool:
    return any(any_match(table[name], NEEDS_QUOTES) for name in FREE_TEXT_COLUMNS if name in table.column_names)


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
