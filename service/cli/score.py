"""``formwise score``: batch files through the same engine as the API (registered on the
``formwise`` group by formwise.service.cli.main)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import click

from formwise.models.knowledge import vocabulary as vocab

STDIO = "-"
DEFAULT_CHUNK_SIZE = 65_536  # batch.files.DEFAULT_CHUNK_SIZE (not imported: keeps `formwise` start-up light)
EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that the temporary files are removed."""


@contextlib.contextmanager
def _terminate_cleanly():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", "output_path", default=None, metavar="OUTPUT",
              help="Output file (.csv, .jsonl, .parquet; '-' for JSON Lines on standard output). "
                   "With --engine dask: a Parquet dataset folder.")
@click.option("--rejects", "rejects_path", default=None, metavar="FILE",
              help="Where rows that fail validation go (.csv, .jsonl, .parquet) [default: OUTPUT's name "
                   "with .rejects before the extension; standard error when OUTPUT is '-'].")
@click.option("--chunk-size", type=click.IntRange(1, 10_000_000), default=DEFAULT_CHUNK_SIZE, show_default=True,
              help="Rows per chunk (CSV chunks are cut at line boundaries, so about this many).")
@click.option("--limit", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Ranked forms per row: the rank1..rankK columns, or recommendations per answer.")
@click.option("--locale", default="en", show_default=True, help="Language of the JSON Lines answers' texts.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: this process, streaming; dask: partitions on a Dask cluster.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="With --engine dask: an existing cluster's scheduler (default: a local cluster).")
@click.option("--delimiter", default=None, metavar="CHAR",
              help="CSV input: the delimiter (default: the header's most frequent of , ; tab |). 'tab' for a tab.")
@click.option("--encoding", default="utf-8", show_default=True,
              help="CSV input: its text encoding (latin-1, cp1252, ...).")
@click.option("--ignore-extra", is_flag=True,
              help="CSV and Parquet input: skip columns formwise does not know instead of stopping.")
@click.option("--max-line-bytes", type=click.IntRange(1024, 1 << 30), default=1 << 20, show_default=True,
              help="CSV and JSON Lines input: a longer line is rejected (row number and reason) without being "
                   "read whole, and the run goes on.")
@click.option("--validate-only", is_flag=True,
              help="Check every row and write the rejects (and --summary-json) without scoring; no OUTPUT "
                   "(rejects default to INPUT's name with .rejects).")
@click.option("--summary-json", "summary_path", default=None, metavar="FILE",
              help="Also write the run's summary as JSON: counts, rejects by field and reason, time, versions.")
@click.option("--max-rejects", default=None, metavar="N|P%",
              help="Stop with exit code 3 and no output when more than N rows, or more than P % of the rows "
                   "read, are rejected (local engine).")
def score(input_path, output_path, rejects_path, chunk_size, limit, locale, quiet, engine, scheduler, delimiter,
          encoding, ignore_extra, max_line_bytes, validate_only, summary_path, max_rejects):
    """Score every profile in INPUT into OUTPUT.

    INPUT and OUTPUT are .csv, .jsonl or .parquet (by extension), or '-' for JSON Lines on
    standard input/output. Rows that fail validation go to the rejects file, never into
    OUTPUT; the command ends with rows_in, rows_scored and rows_rejected. OUTPUT is written
    to a temporary file and renamed at the end. Exit codes: 0 done, 1 failed or every row
    rejected, 2 unusable inputs (a file, a column), 3 stopped by --max-rejects.
    """
    from formwise.service.batch.formats import BatchError, CsvOptions, RejectLimit

    if scheduler and engine != "dask":
        fail("--scheduler needs --engine dask.", EXIT_USAGE)
    if validate_only and (output_path is not None or engine == "dask"):
        fail("--validate-only writes no OUTPUT: leave out -o (and --engine dask).", EXIT_USAGE)
    if output_path is None and not validate_only:
        fail("give the OUTPUT file: -o OUTPUT (or --validate-only to check INPUT without scoring).", EXIT_USAGE)
    if max_rejects is not None and engine == "dask":
        fail("--max-rejects works with the local engine only.", EXIT_USAGE)
    try:
        reject_limit = None if max_rejects is None else RejectLimit.parse(max_rejects)
    except BatchError as error:
        fail(str(error), EXIT_USAGE)
    if delimiter is not None:
        delimiter = "\t" if delimiter.lower() in ("tab", "\\t") else delimiter
        if len(delimiter) != 1 or delimiter in "\r\n\"":
            fail(f"--delimiter must be one character (or 'tab'), not {delimiter!r}.", EXIT_USAGE)
    csv_options = CsvOptions(delimiter=delimiter, encoding=encoding, ignore_extra=ignore_extra,
                             max_line_bytes=max_line_bytes)
    if engine == "dask" and csv_options != CsvOptions():
        fail("--delimiter, --encoding, --ignore-extra and --max-line-bytes work with the local engine only.",
             EXIT_USAGE)
    show_progress = not quiet and sys.stderr.isatty()
    try:
        with _terminate_cleanly():
            if engine == "dask":
                from formwise.service.batch.cluster import score_with_dask

                summary = score_with_dask(input_path, output_path, rejects_path, chunk_size=chunk_size,
                                          limit=limit, scheduler=scheduler, progress=show_progress)
            else:
                from formwise.service.batch.files import score_file

                summary = score_file(input_path, output_path, rejects_path, chunk_size=chunk_size, limit=limit,
                                     locale=vocab.resolve_locale(locale), progress=show_progress,
                                     max_rejects=reject_limit, csv_options=csv_options,
                                     validate_only=validate_only)
    except BatchError as error:
        fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        fail("interrupted; no output was written.", EXIT_INTERRUPTED)
    except Terminated:
        fail("terminated; no output was written.", EXIT_TERMINATED)
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        fail("the output pipe was closed before the end.", EXIT_FAILED)
    except (OSError, ValueError, RuntimeError) as error:
        fail(f"{type(error).__name__}: {error}; no output was written.", EXIT_FAILED)
    if summary_path is not None:
        counts = summary.as_json()
        if validate_only:  # nothing was scored: the valid rows are what was counted
            counts = {("rows_valid" if key == "rows_scored" else key): value for key, value in counts.items()}
        _write_summary(summary_path, {"input": input_path, "output": output_path, "engine": engine,
                                      "validate_only": validate_only, **counts})
    for stale in summary.stale_removed:
        click.echo(f"removed {stale}: a temporary file a killed run to the same output left", err=True)
    click.echo(summary.line(validated=validate_only), err=output_path == STDIO)
    if summary.rows_rejected:
        click.echo(f"rejected rows: {summary.rejects_path or 'standard error'}", err=True)
    if summary.rows_in and not summary.rows_scored and not validate_only:  # nothing but rejects: no success
        fail(f"no row was scored: all {summary.rows_rejected} were rejected.", EXIT_FAILED)


def _write_summary(path: str, summary: dict) -> None:
    import json

    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
    except OSError as error:
        fail(f"--summary-json '{path}': {error.strerror}; the output was written.", EXIT_FAILED)


def fail(message: str, code: int):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def register(main: click.Group) -> None:
    main.add_command(score)
