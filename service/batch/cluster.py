"""``formwise score --engine dask``: the same chunk scorer over dask.dataframe partitions,
on a local cluster or an existing one (``--scheduler tcp://HOST:PORT``).

INPUT is a file, a folder or a glob of CSV/Parquet files. Each CSV file is one partition
(so its row numbers are exact; give several files to spread the work), each Parquet row
group another. Partitions are read by the local engine's readers (``dd.from_map``) and
scored by ``map_partitions`` with ``formwise.service.batch.files.ChunkScorer``: there is no second
implementation of any rule. Each partition writes its own part of two Parquet datasets,
OUTPUT (the scored rows) and the rejects, into temporary folders that are renamed when
every partition is done; the partitions return their counts, which are summed.

On a real cluster every worker needs formwise installed (the same version) and must see
INPUT, OUTPUT and the rejects folder at the same paths (a shared filesystem).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from formwise.service.batch.columns import ALLOWED_COLUMNS, as_text
from formwise.service.batch.files import Progress, signals_deferred
from formwise.service.batch.formats import DEFAULT_CHUNK_SIZE, REJECT_SCHEMA, BatchError, Summary, check_columns
from formwise.service.batch.readers import CsvReader, TabularChunk, readable_type
from formwise.service.batch.scoring import ChunkScorer, make_recommender

READABLE = {".csv": "csv", ".parquet": "parquet"}
ROW = "_row"
PROBLEM = "_problem"  # a reject found while reading (a malformed CSV line)
COUNT_COLUMNS = ("rows_in", "rows_scored", "rows_rejected")
SOURCE = "source"


@dataclass(frozen=True)
class Part:
    path: str
    kind: str
    row_group: int | None = None
    first_row: int = 1


def input_files(spec: str) -> list[str]:
    """The CSV/Parquet files an INPUT names: a file, a folder (its files) or a glob."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in READABLE)
        where = f"folder '{spec}'"
    elif any(char in spec for char in "*?["):
        files = sorted(p for p in glob.glob(spec) if Path(p).is_file())
        where = f"glob '{spec}'"
    elif path.is_file():
        files = [spec]
        where = f"'{spec}'"
    else:
        raise BatchError(f"INPUT '{spec}': no such file, folder or matching glob.")
    if not files:
        raise BatchError(f"INPUT {where}: no .csv or .parquet files in it.")
    unreadable = [name for name in files if Path(name).suffix.lower() not in READABLE]
    if unreadable:
        raise BatchError(f"INPUT {where}: --engine dask reads .csv and .parquet files, not {', '.join(unreadable)}.")
    return files


def plan_parts(files: list[str]) -> list[Part]:
    """One part per CSV file and per Parquet row group; checks every file's columns first."""
    parts = []
    for name in files:
        if READABLE[Path(name).suffix.lower()] == "csv":
            reader = CsvReader(name, chunk_size=1024)  # reads the header only; raises BatchError
            reader.close()
            parts.append(Part(name, "csv"))
            continue
        try:
            metadata = pq.ParquetFile(name).metadata
        except (pa.ArrowInvalid, OSError) as error:
            raise BatchError(f"INPUT '{name}': not a readable Parquet file: {error}") from None
        schema = metadata.schema.to_arrow_schema()
        check_columns(schema.names, f"INPUT '{name}'")
        for column in schema:
            if not readable_type(column.type):
                raise BatchError(f"INPUT '{name}': column {column.name} holds {column.type}; use text, numbers, "
                                 "booleans or lists of text.")
        first_row = 1
        for group in range(metadata.num_row_groups):
            parts.append(Part(name, "parquet", group, first_row))
            first_row += metadata.row_group(group).num_rows
        if metadata.num_row_groups == 0:
            parts.append(Part(name, "parquet", None, 1))
    return parts


def _meta() -> pd.DataFrame:
    columns = {name: pd.Series([], dtype="string[pyarrow]") for name in ALLOWED_COLUMNS}
    columns[ROW] = pd.Series([], dtype="int64")
    columns[PROBLEM] = pd.Series([], dtype="string[pyarrow]")
    columns[SOURCE] = pd.Series([], dtype="string[pyarrow]")
    return pd.DataFrame(columns)


def _as_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)


def _plain_text(column) -> pa.Array:
    text = as_text(column)
    return text.dictionary_decode() if pa.types.is_dictionary(text.type) else text


def load_part(part: Part) -> pd.DataFrame:
    """A partition's rows as text, with their row numbers (read by the local readers)."""
    tables = []
    if part.kind == "csv":
        reader = CsvReader(part.path, chunk_size=DEFAULT_CHUNK_SIZE)
        try:
            for chunk in reader:
                n = len(chunk.rows)
                if n:
                    columns = {name: _plain_text(chunk.columns[name]) if name in chunk.columns
                               else pa.nulls(n, pa.string()) for name in ALLOWED_COLUMNS}
                    columns[ROW] = pa.array(chunk.rows, pa.int64())
                    columns[PROBLEM] = pa.nulls(n, pa.string())
                    tables.append(pa.table(columns))
                if chunk.malformed is not None:
                    m = chunk.malformed.num_rows
                    columns = {name: pa.nulls(m, pa.string()) for name in ALLOWED_COLUMNS}
                    columns[ROW] = chunk.malformed["row"].combine_chunks()
                    columns[PROBLEM] = chunk.malformed["reason"].combine_chunks()
                    tables.append(pa.table(columns))
        finally:
            reader.close()
    else:
        parquet = pq.ParquetFile(part.path)
        table = parquet.read_row_group(part.row_group) if part.row_group is not None else parquet.read()
        n = table.num_rows
        columns = {name: _plain_text(table[name]) if name in table.column_names else pa.nulls(n, pa.string())
                   for name in ALLOWED_COLUMNS}
        columns[ROW] = pa.array(np.arange(part.first_row, part.first_row + n, dtype=np.int64))
        columns[PROBLEM] = pa.nulls(n, pa.string())
        tables.append(pa.table(columns))
    if not tables:
        return _meta()
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table[ROW]))
    table = table.append_column(SOURCE, pa.array([part.path] * table.num_rows, pa.string()))
    return _as_frame(table)


@cache
def _scorer(limit: int) -> ChunkScorer:
    """One scorer per worker process (the knowledge base loads once)."""
    return ChunkScorer(make_recommender(), "parquet", limit)


def score_partition(frame: pd.DataFrame, output_dir: str, rejects_dir: str, limit: int, chunk_size: int,
                    partition_info: dict | None = None) -> pd.DataFrame:
    """Score one partition in chunks; write its output and rejects parts; return counts."""
    number = partition_info["number"] if partition_info else uuid.uuid4().int % 10**8
    scorer = _scorer(limit)
    summary = Summary()
    outputs, rejects = [], []
    table = pa.Table.from_pandas(frame, preserve_index=False) if len(frame) else None
    source = str(frame[SOURCE].iloc[0]) if len(frame) else ""
    if table is not None:
        problem = table[PROBLEM].combine_chunks()
        malformed = problem.is_valid()
        if pc.any(malformed).as_py():
            bad = table.filter(malformed)
            rejects.append(pa.table({"row": bad[ROW], "id": pa.nulls(bad.num_rows, pa.string()),
                                     "fields": pa.array(["row"] * bad.num_rows, pa.string()),
                                     "reason": bad[PROBLEM]}, schema=REJECT_SCHEMA))
            summary.rows_in += bad.num_rows
            summary.rows_rejected += bad.num_rows
            table = table.filter(pc.invert(malformed))
        for start in range(0, table.num_rows, chunk_size):
            piece = table.slice(start, chunk_size)
            columns = {name: piece[name].combine_chunks() for name in ALLOWED_COLUMNS}
            result = scorer.score(TabularChunk(columns, piece[ROW].to_numpy()))
            summary.add(result.summary)
            if result.output is not None and result.output.num_rows:
                outputs.append(result.output)
            if result.rejects is not None and result.rejects.num_rows:
                rejects.append(result.rejects)
    name = f"part-{number:05d}.parquet"
    output = pa.concat_tables(outputs) if outputs else scorer.empty_output()
    pq.write_table(output, os.path.join(output_dir, name), compression="zstd")
    reject_table = pa.concat_tables(rejects) if rejects else REJECT_SCHEMA.empty_table()
    reject_table = reject_table.take(pc.sort_indices(reject_table["row"]))
    reject_table = reject_table.append_column(SOURCE, pa.array([source] * reject_table.num_rows, pa.string()))
    pq.write_table(reject_table, os.path.join(rejects_dir, name), compression="zstd")
    return pd.DataFrame({name: [getattr(summary, name)] for name in COUNT_COLUMNS}, dtype="int64")


def default_rejects_dir(output: str) -> str:
    path = Path(output)
    if path.suffix.lower() == ".parquet":
        return str(path.with_name(f"{path.stem}.rejects.parquet"))
    return str(path.with_name(f"{path.name}.rejects"))


class _Folder:
    """A temporary folder beside ``path``, swapped in by commit(), removed by discard()."""

    def __init__(self, path: str, role: str):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise BatchError(f"{role} '{path}' exists and is not a folder; --engine dask writes a Parquet "
                             "dataset folder.")
        if not self.path.parent.exists():
            raise BatchError(f"{role} '{path}': the folder '{self.path.parent}' does not exist.")
        self.temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.temporary.mkdir()

    def commit(self) -> None:
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(self.path, old)
        os.replace(self.temporary, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.temporary, ignore_errors=True)


@contextlib.contextmanager
def _client(scheduler: str | None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as error:
            raise BatchError(f"--scheduler '{scheduler}': cannot reach the scheduler ({error}).") from None
        try:
            yield client
        finally:
            client.close()
        return
    with LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def score_with_dask(input_spec: str, output_path: str, rejects_path: str | None = None, *,
                    chunk_size: int = DEFAULT_CHUNK_SIZE, limit: int = 3, scheduler: str | None = None,
                    progress: bool = False) -> Summary:
    import dask.dataframe as dd
    from dask.distributed import as_completed

    if output_path == "-":
        raise BatchError("OUTPUT '-': --engine dask writes a Parquet dataset folder, not standard output.")
    if Path(output_path).suffix.lower() in (".csv", ".jsonl"):
        raise BatchError(f"OUTPUT '{output_path}': --engine dask writes a Parquet dataset folder "
                         "(name it e.g. scored.parquet or scored/).")
    if rejects_path is None or rejects_path == "-":
        rejects_path = default_rejects_dir(output_path)
    parts = plan_parts(input_files(input_spec))
    summary = Summary(rejects_path=rejects_path)
    bar = Progress(progress)
    output = rejects = None
    try:
        with signals_deferred():
            output = _Folder(output_path, "OUTPUT")
            rejects = _Folder(rejects_path, "--rejects")
        with _client(scheduler) as client:
            frames = dd.from_map(load_part, parts, meta=_meta(), enforce_metadata=False)
            counts = frames.map_partitions(
                score_partition, str(output.temporary), str(rejects.temporary), limit, chunk_size,
                meta=pd.DataFrame({name: pd.Series([], dtype="int64") for name in COUNT_COLUMNS}),
                enforce_metadata=False,
            )
            futures = client.compute(counts.to_delayed())
            for future in as_completed(futures):
                frame = future.result()
                summary.add(Summary(*(int(frame[name].sum()) for name in COUNT_COLUMNS)))
                bar.update(summary.rows_in, None)
        with signals_deferred():
            output.commit()
            rejects.commit()
    except BaseException:
        for folder in (output, rejects):
            if folder is not None:
                folder.discard()
        raise
    bar.finish(summary.rows_in)
    return summary
