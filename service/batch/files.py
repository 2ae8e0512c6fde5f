"""A whole ``formwise score`` run: read CSV, JSON Lines or Parquet in chunks (``readers``),
score each chunk with the one vectorized engine (``scoring``), and write the output and the
rejects (``writers``), with a progress bar, deferred signals and bounded memory.

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
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

from formwise.service.batch.formats import (
    DEFAULT_CHUNK_SIZE,
    REJECT_SCHEMA,
    STDIO,
    BatchError,
    CsvOptions,
    RejectLimit,
    Summary,
    default_rejects_path,
    file_format,
)
from formwise.service.batch.readers import open_reader
from formwise.service.batch.scoring import ChunkResult, ChunkScorer, knowledge_base, make_recommender
from formwise.service.batch.writers import LinesWriter, TableWriter, open_rejects

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
               progress: bool = False, workers: int | None = None, recommender=None,
               max_rejects: RejectLimit | None = None, csv_options: CsvOptions | None = None,
               validate_only: bool = False) -> Summary:
    """Score INPUT into OUTPUT (and the rejects file); returns the counts. Raises
    BatchError before writing anything when the inputs are unusable."""
    output_kind = "none" if validate_only else file_format(output_path, "OUTPUT")
    if rejects_path is None:
        rejects_path = default_rejects_path(input_path if validate_only else output_path)
    elif rejects_path == STDIO:
        rejects_path = None
    if rejects_path is not None:
        file_format(rejects_path, "--rejects")
    if validate_only:
        output_path = None
    elif input_path != STDIO and output_path != STDIO and Path(input_path).resolve() == Path(output_path).resolve():
        raise BatchError(f"OUTPUT '{output_path}' is the INPUT file; write to another file.")
    if rejects_path is not None and output_path not in (STDIO, None) and Path(rejects_path).resolve() == Path(
            output_path).resolve():
        raise BatchError(f"--rejects '{rejects_path}' is OUTPUT; give the rejects another file.")
    started = time.perf_counter()
    _skip_pandas()
    reader = open_reader(input_path, chunk_size, csv_options or CsvOptions())
    _reuse_freed_memory()
    try:
        if validate_only:  # the knowledge base's rules only: no model to load, nothing scored
            kb = recommender.knowledge_base if recommender is not None else knowledge_base()
            recommender = None
        elif recommender is None:  # load the model while the first chunks are read
            kb = knowledge_base()
            recommender = _load_in_background(kb)
        else:
            kb = recommender.knowledge_base
        scorer = ChunkScorer(recommender, output_kind, limit, locale, kb=kb, validate_only=validate_only,
                             max_line_bytes=(csv_options or CsvOptions()).max_line_bytes)
        workers = workers or min(os.cpu_count() or 1, 8)
        bar = Progress(progress)
        summary = Summary(rejects_path=rejects_path)
        output = rejects = None
        try:
            with signals_deferred():  # an interrupt lands once both files exist and are known here
                output = (NoOutput() if validate_only else LinesWriter(output_path) if output_kind == "jsonl"
                          else TableWriter(output_path, output_kind))
                rejects = open_rejects(rejects_path)
            for written in (output, rejects):
                summary.stale_removed += getattr(getattr(written, "file", None), "removed_stale", [])
            _run(reader, scorer, output, rejects, summary, bar, workers, max_rejects)  # BLAS stays on one thread
            if max_rejects is not None:
                max_rejects.check(summary, final=True)
            empty = None if output_kind in ("jsonl", "none") else scorer.empty_output()
            with signals_deferred():  # both files, or neither
                rejects.commit(REJECT_SCHEMA.empty_table())
                output.commit(empty)
        except BaseException:
            for written in (output, rejects):
                if written is not None:
                    written.discard()
            raise
        bar.finish(summary.rows_in)
        summary.seconds = time.perf_counter() - started
        summary.versions = {"formwise": _version(), **scorer.versions(kb)}
        return summary
    finally:
        reader.close()


class NoOutput:
    """--validate-only writes the rejects (and the summary) and nothing else."""

    def write(self, part) -> None:
        pass

    def commit(self, empty=None) -> None:
        pass

    def discard(self) -> None:
        pass


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("formwise")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


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


def _run(reader, scorer: ChunkScorer, output, rejects, summary: Summary, bar: Progress, workers: int,
         max_rejects: RejectLimit | None = None) -> None:
    """Read on this thread, score on a pool of ``workers`` threads, write here in input
    order, with at most two chunks per worker in flight. While the model loads (a
    GIL-bound import), this thread only reads ahead, which pyarrow does without the GIL."""
    in_flight: deque[tuple[Future, float | None]] = deque()  # (scoring, the input read up to that chunk)
    chunks = ((chunk, reader.progress()) for chunk in reader)  # where the reader stood after each chunk
    read_ahead = []
    while not scorer.ready() and len(read_ahead) < READ_AHEAD_CHUNKS:
        item = next(chunks, None)
        if item is None:
            break
        read_ahead.append(item)
    scorer.wait_ready()

    def drain(block: bool) -> None:
        while in_flight and (block or in_flight[0][0].done() or len(in_flight) > workers * 2):
            future, read_to = in_flight.popleft()
            result: ChunkResult = future.result()
            if result.output is not None:
                output.write(result.output)
            if result.rejects is not None and result.rejects.num_rows:
                rejects.write(result.rejects)
                summary.count_rejects(result.rejects)
            summary.add(result.summary)
            bar.update(summary.rows_in, read_to)  # the share of the input written out, not read ahead
            if max_rejects is not None:
                max_rejects.check(summary)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="formwise-score")
    try:
        for chunk, read_to in itertools.chain(read_ahead, chunks):
            in_flight.append((pool.submit(scorer.score, chunk), read_to))
            drain(block=False)
        read_ahead.clear()
        drain(block=True)
    except BaseException:
        for future, _ in in_flight:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
