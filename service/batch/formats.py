"""The shape of a batch run: the file formats by extension, the rejects file's columns, the
problems that stop a run before any row is scored (exit code 2), and the summary a run reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from formwise.service.batch.columns import ALLOWED_COLUMNS, REQUIRED_COLUMNS

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
# Compressed CSV and JSON Lines, in and out, by the last suffix (pyarrow's codecs)
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
STDIO = "-"
DEFAULT_CHUNK_SIZE = 65_536
REJECT_SCHEMA = pa.schema([("row", pa.int64()), ("id", pa.string()), ("fields", pa.string()),
                           ("reason", pa.string())])

MALFORMED_FIELD = "row"
TEXT_DICTIONARY = pa.dictionary(pa.int32(), pa.string())
BYTES_DICTIONARY = pa.dictionary(pa.int32(), pa.binary())  # CSV cells as read, before the UTF-8 check


class BatchError(Exception):
    """A problem with the command's inputs, found before any row is scored (exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class CsvOptions:
    """How to read a text export as it is: a CSV file's delimiter (None: the header's most
    frequent of , ; tab |), its encoding (read as UTF-8 after pyarrow transcodes it), whether
    columns formwise does not know are skipped instead of refused (CSV and Parquet), and the
    longest line read (CSV and JSON Lines). Header names match without regard to case or
    surrounding spaces."""

    delimiter: str | None = None
    encoding: str = "utf-8"
    ignore_extra: bool = False
    max_line_bytes: int = 1 << 20  # a longer line (CSV or JSON Lines) is a reject, never read whole


DELIMITERS = (",", ";", "\t", "|")


class TooManyRejects(BatchError):
    """--max-rejects was passed: the run stopped and wrote no output (exit code 3)."""

    exit_code = 3


@dataclass(frozen=True)
class RejectLimit:
    """``--max-rejects``: at most N rejected rows, or at most P % of the rows read. A share
    is judged once MIN_ROWS_FOR_SHARE rows have been read (or at the end), so that one bad
    first chunk of a good file does not stop it."""

    count: int | None = None
    percent: float | None = None

    MIN_ROWS_FOR_SHARE = 1000

    @classmethod
    def parse(cls, text: str) -> RejectLimit:
        value = text.strip()
        try:
            if value.endswith("%"):
                percent = float(value[:-1])
                if not 0 <= percent < 100:
                    raise ValueError
                return cls(percent=percent)
            count = int(value)
            if count < 0:
                raise ValueError
            return cls(count=count)
        except ValueError:
            raise BatchError(f"--max-rejects '{text}': give a whole number of rows (1000) or a share below "
                             "100 % (5%).") from None

    def check(self, summary: Summary, final: bool = False) -> None:
        """Raises TooManyRejects when the rows rejected so far pass the limit."""
        if self.count is not None and summary.rows_rejected > self.count:
            raise TooManyRejects(f"stopped: {summary.rows_rejected} rows rejected, more than --max-rejects "
                                 f"{self.count}; no output was written (the file may not be what you meant "
                                 "to score: see the first rejects with --rejects - or a smaller file).")
        if self.percent is not None and summary.rows_in and (final or summary.rows_in >= self.MIN_ROWS_FOR_SHARE):
            share = 100 * summary.rows_rejected / summary.rows_in
            if share > self.percent:
                raise TooManyRejects(f"stopped: {share:.1f} % of {summary.rows_in} rows rejected, more than "
                                     f"--max-rejects {self.percent:g}%; no output was written.")


@dataclass
class Summary:
    rows_in: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    rejects_path: str | None = field(default=None, compare=False)  # where the rejects went (None: stderr)
    stale_removed: list[str] = field(default_factory=list, compare=False)  # left by a killed run, removed
    # for --summary-json: what was rejected, how long it took, with which knowledge base and model
    rejected_fields: dict[str, int] = field(default_factory=dict, compare=False)
    reasons: dict[str, int] = field(default_factory=dict, compare=False)
    seconds: float = field(default=0.0, compare=False)
    versions: dict[str, str] = field(default_factory=dict, compare=False)

    def count_rejects(self, rejects: pa.Table) -> None:
        """Adds a chunk's rejects to the counts by field and by reason (distinct values only)."""
        for column, counts in (("fields", self.rejected_fields), ("reason", self.reasons)):
            for item in rejects.column(column).value_counts().to_pylist():
                keys = (item["values"] or "").split(";") if column == "fields" else [item["values"] or ""]
                for key in keys:
                    counts[key] = counts.get(key, 0) + item["counts"]

    def as_json(self, top_reasons: int = 20) -> dict:
        reasons = sorted(self.reasons.items(), key=lambda pair: (-pair[1], pair[0]))[:top_reasons]
        return {"rows_in": self.rows_in, "rows_scored": self.rows_scored, "rows_rejected": self.rows_rejected,
                "rejects": self.rejects_path, "rejected_fields": dict(sorted(self.rejected_fields.items())),
                "reasons": [{"reason": reason, "rows": rows} for reason, rows in reasons],
                "distinct_reasons": len(self.reasons), "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows_in / self.seconds) if self.seconds else None,
                "versions": self.versions}

    def add(self, other: Summary) -> None:
        self.rows_in += other.rows_in
        self.rows_scored += other.rows_scored
        self.rows_rejected += other.rows_rejected

    def line(self, validated: bool = False) -> str:
        done = "rows_valid" if validated else "rows_scored"
        return f"rows_in={self.rows_in} {done}={self.rows_scored} rows_rejected={self.rows_rejected}"


def compression_of(path: str) -> str | None:
    """pyarrow's codec for a compressed file name (``scores.csv.gz``), else None."""
    if path == STDIO:
        return None
    return COMPRESSIONS.get(Path(path).suffix.lower())


def file_format(path: str, role: str) -> str:
    """'csv', 'jsonl' or 'parquet' from the extension (before a compression suffix: ``.csv.gz``,
    ``.jsonl.zst``); '-' is JSON Lines."""
    if path == STDIO:
        return "jsonl"
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    compressed = compression_of(path) is not None
    suffix = (suffixes[-2] if len(suffixes) >= 2 else "") if compressed else (suffixes[-1] if suffixes else "")
    if suffix not in FORMATS:
        allowed = ", ".join(FORMATS)
        raise BatchError(f"{role} '{path}': unknown format '{suffix or '(no extension)'}'; use one of {allowed}, "
                         f"CSV and JSON Lines optionally compressed ({', '.join('.csv' + c for c in COMPRESSIONS)}) "
                         f"(or '-' for JSON Lines on standard {'input' if role == 'INPUT' else 'output'}).")
    if compressed and FORMATS[suffix] == "parquet":
        raise BatchError(f"{role} '{path}': Parquet compresses its own columns; use '.parquet' without "
                         f"'{Path(path).suffix}'.")
    return FORMATS[suffix]


def default_rejects_path(output: str) -> str | None:
    """``out.csv`` -> ``out.rejects.csv``, ``out.csv.gz`` -> ``out.rejects.csv.gz``; None for
    standard output (rejects go to stderr)."""
    if output == STDIO:
        return None
    path = Path(output)
    compression = path.suffix if compression_of(output) else ""
    base = path.with_suffix("") if compression else path
    suffix = base.suffix if base.suffix.lower() in FORMATS else ".csv"
    stem = base.stem if base.suffix.lower() in FORMATS else base.name
    return str(path.with_name(f"{stem}.rejects{suffix}{compression}"))


def check_columns(names: list[str], source: str) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise BatchError(f"{source}: the column(s) {', '.join(repeated)} appear more than once in the header; "
                         "keep one of each.")
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
