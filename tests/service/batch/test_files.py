"""`formwise score`: formats in and out, the rejects file, reconciliation, failures that
leave no output, and the progress bar."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from formwise.service.batch import files as batch_files
from formwise.service.batch.formats import DEFAULT_CHUNK_SIZE
from formwise.service.batch.scoring import ChunkScorer
from formwise.service.cli.main import main

HEADER = "id,age,sex,pregnant,breastfeeding,egfr,dialysis,conditions,goals,medications"
MIXED = "\n".join([
    HEADER,
    "good1,40,female,,,95,,insomnia,sleep,omeprazole",          # row 1
    "bad-age,forty,,,,,,,,",                                    # row 2: non-numeric age
    "bad-word,30,,,,,,insomnia;gout,,",                         # row 3: unknown condition word
    "bad-egfr,30,,,,-5,,,,",                                    # row 4: negative egfr
    ",30,,,,,,,,",                                              # row 5: missing id
    "",                                                         # row 6: empty line
    "good2,70,male,,,45,,diarrhea,,doxycycline;Zzz",            # row 7
    "short,1,2",                                                # row 8: too few values
    "good3,5,,,,,,,cramps,",                                    # row 9
]) + "\n"


def run(runner, *args, input=None):
    return runner.invoke(main, ["score", *map(str, args)], input=input)


def summary_of(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("rows_in="))
    return {key: int(value) for key, value in (part.split("=") for part in line.split())}


def read_rows(path: Path) -> list[dict]:
    suffix = path.suffix
    if suffix == ".csv":
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return pq.read_table(path).to_pylist()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture()
def mixed_csv(tmp_path) -> Path:
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    return path


def test_mixed_file_good_rows_out_bad_rows_to_rejects(runner, mixed_csv, tmp_path):
    output, rejects = tmp_path / "scored.csv", tmp_path / "rejects.csv"
    result = run(runner, mixed_csv, "-o", output, "--rejects", rejects, "--quiet")
    assert result.exit_code == 0, result.output
    assert summary_of(result.output) == {"rows_in": 9, "rows_scored": 3, "rows_rejected": 6}
    assert [row["id"] for row in read_rows(output)] == ["good1", "good2", "good3"]
    rejected = read_rows(rejects)
    assert [(row["row"], row["id"], row["fields"]) for row in rejected] == [
        ("2", "bad-age", "age"), ("3", "bad-word", "conditions"), ("4", "bad-egfr", "egfr"), ("5", "", "id"),
        ("6", "", "row"), ("8", "", "row"),
    ]
    reasons = [row["reason"] for row in rejected]
    assert reasons[0] == "age: Must be a whole number."
    assert reasons[1].startswith("conditions.1: Must be one of: constipation, diarrhea,")
    assert reasons[2] == "egfr: Must be a number from 0 to 250 (mL/min/1.73 m²), or null."
    assert reasons[3] == "id: Missing data for required field."
    assert reasons[4] == "Empty row: no values."
    assert reasons[5] == "Malformed row: 3 values where the header has 10 columns."
    assert leftovers(tmp_path) == []


def test_rejects_default_beside_the_output(runner, mixed_csv, tmp_path):
    result = run(runner, mixed_csv, "-o", tmp_path / "out.parquet", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "out.rejects.parquet")) == 6
    assert "rejected rows:" in result.output


def mixed_profiles() -> list[tuple[str, object]]:
    """(id, profile) pairs; None ids and bad profiles are rejects."""
    return [("a", {"age": 40}), ("b", {"age": "x"}), ("c", {"age": 9, "goals": ["sleep"]}),
            (None, {"age": 30}), ("e", {"age": 30, "egfr": -1}), ("f", {"age": 80, "medications": ["doxycycline"]})]


def write_input(path: Path) -> None:
    """The same six rows (three good) in any format."""
    rows = mixed_profiles()
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": i, "profile": p} if i else {"profile": p}) + "\n" for i, p in rows))
        return
    table = pa.table({
        "id": [i for i, _ in rows],
        "age": [str(p["age"]) for _, p in rows],
        "egfr": [str(p["egfr"]) if "egfr" in p else None for _, p in rows],
        "goals": [";".join(p.get("goals", [])) for _, p in rows],
        "medications": [";".join(p.get("medications", [])) for _, p in rows],
    })
    if path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)


@pytest.mark.parametrize("source", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("target", ["csv", "jsonl", "parquet"])
def test_every_format_in_and_out_reconciles(runner, tmp_path, source, target):
    source_path, output = tmp_path / f"in.{source}", tmp_path / f"out.{target}"
    rejects = tmp_path / f"rejects.{target}"
    write_input(source_path)
    result = run(runner, source_path, "-o", output, "--rejects", rejects, "--quiet")
    assert result.exit_code == 0, result.output
    counts = summary_of(result.output)
    assert counts == {"rows_in": 6, "rows_scored": 3, "rows_rejected": 3}
    assert counts["rows_in"] == counts["rows_scored"] + counts["rows_rejected"]
    rows = read_rows(output)
    assert [row["id"] for row in rows] == ["a", "c", "f"]
    if target == "jsonl":
        assert all(row["error"] is None and row["output"]["recommendations"] for row in rows)
    else:
        # 80 with no eGFR: kidney_function_unknown is a warning from 65 (contract v1.1), the
        # first of the warnings in the contract's order, before medication_interaction.
        assert rows[2]["caveat_codes"].split(";")[:2] == ["kidney_function_unknown", "medication_interaction"]
    assert [int(row["row"]) for row in read_rows(rejects)] == [2, 4, 5]


def test_stdin_to_stdout_json_lines(runner, tmp_path):
    lines = "".join(json.dumps({"id": i, "profile": p}) + "\n" for i, p in mixed_profiles() if i) + "\n"
    result = run(runner, "-", "-o", "-", input=lines)
    assert result.exit_code == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [answer["id"] for answer in answers] == ["a", "c", "f"]
    assert all(set(answer) == {"id", "output", "error"} for answer in answers)
    # The summary and the rejects (as JSON Lines) go to standard error, keeping stdout clean.
    assert "rows_in=6 rows_scored=3 rows_rejected=3" in result.stderr
    rejected = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [(item["row"], item["id"]) for item in rejected] == [(2, "b"), (4, "e"), (6, None)]
    assert rejected[2]["reason"] == "Empty row: no values."


def test_stdin_to_a_csv_file(runner, tmp_path):
    lines = json.dumps({"id": "a", "profile": {"age": 40}}) + "\n" + "not json\n" + "[1]\n"
    result = run(runner, "-", "-o", tmp_path / "out.csv", "--rejects", tmp_path / "bad.jsonl", input=lines)
    assert result.exit_code == 0, result.output
    assert [row["id"] for row in read_rows(tmp_path / "out.csv")] == ["a"]
    rejected = read_rows(tmp_path / "bad.jsonl")
    assert rejected[0]["reason"].startswith("Not valid JSON")
    assert rejected[1]["reason"] == "item: Must be an object with id and profile."


def test_csv_to_stdout(runner, mixed_csv):
    result = run(runner, mixed_csv, "-o", "-", "--rejects", "-")
    assert result.exit_code == 0
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["good1", "good2", "good3"]


def test_limit_sets_the_rank_columns(runner, mixed_csv, tmp_path):
    result = run(runner, mixed_csv, "-o", tmp_path / "out.csv", "--limit", "5", "--quiet")
    assert result.exit_code == 0
    header = (tmp_path / "out.csv").read_text().splitlines()[0].split(",")
    assert header == ["id", *[f"rank{k}_{part}" for k in range(1, 6) for part in ("form", "score")], "excluded",
                      "caveat_codes", "max_severity", "unrecognized_medications"]


def test_an_input_with_no_rows_still_writes_a_header(runner, tmp_path):
    (tmp_path / "empty.csv").write_text(HEADER + "\n")
    result = run(runner, tmp_path / "empty.csv", "-o", tmp_path / "out.csv")
    assert result.exit_code == 0
    assert "rows_in=0 rows_scored=0 rows_rejected=0" in result.output
    assert (tmp_path / "out.csv").read_text().startswith("id,rank1_form,")


@pytest.mark.parametrize(("name", "content", "output_name", "message"), [
    ("missing.csv", None, "out.csv", "missing.csv': no such file"),
    ("in.txt", "id,age\n", "out.csv", "unknown format '.txt'"),
    ("in.csv", "id,age\n", "out.xlsx", "unknown format '.xlsx'"),
    ("in.csv", "id,sex\na,male\n", "out.csv", "missing required column(s) age"),
    ("in.csv", "age\n4\n", "out.csv", "missing required column(s) id"),
    ("in.csv", "id,age,condition\na,4,insomnia\n", "out.csv", "unknown column(s) condition"),
    ("in.csv", "", "out.csv", "the file is empty"),
    ("in.parquet", "not parquet", "out.csv", "not a readable Parquet file"),
])
def test_bad_inputs_fail_at_once_naming_the_problem_and_leave_nothing(runner, tmp_path, name, content, output_name,
                                                                      message):
    source = tmp_path / name
    if content is not None:
        source.write_text(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, source, "-o", tmp_path / output_name)
    assert result.exit_code == 2
    assert message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no rejects, no temporary file


def big_csv(path: Path, rows: int = 20_000) -> Path:
    lines = [HEADER] + [f"r{i},{i % 121},,,,{i % 150},,insomnia,sleep,omeprazole" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("error", "exit_code"), [(KeyboardInterrupt, 130), (RuntimeError, 1)])
def test_an_interrupted_run_leaves_no_output(runner, tmp_path, monkeypatch, error, exit_code):
    source = big_csv(tmp_path / "big.csv")
    output = tmp_path / "out.csv"
    output.write_text("the previous run's output\n")
    real_score = ChunkScorer.score
    calls = []

    def failing_score(self, chunk):
        calls.append(1)
        if len(calls) == 3:
            raise error("stop")
        return real_score(self, chunk)

    monkeypatch.setattr(ChunkScorer, "score", failing_score)
    result = run(runner, source, "-o", output, "--chunk-size", "1000", "--quiet")
    assert result.exit_code == exit_code
    assert len(calls) >= 3
    assert output.read_text() == "the previous run's output\n"  # untouched: the new one never replaced it
    assert not (tmp_path / "out.rejects.csv").exists()
    assert leftovers(tmp_path) == []


def test_chunks_stream_and_keep_the_input_order(runner, tmp_path):
    source = big_csv(tmp_path / "big.csv")
    result = run(runner, source, "-o", tmp_path / "out.parquet", "--chunk-size", "500", "--quiet")
    assert result.exit_code == 0
    assert "rows_in=20000 rows_scored=20000 rows_rejected=0" in result.output
    ids = pq.read_table(tmp_path / "out.parquet", columns=["id"])["id"].to_pylist()
    assert ids == [f"r{i}" for i in range(20_000)]


def test_row_numbers_stay_exact_across_chunks_and_malformed_lines(runner, tmp_path):
    lines = [HEADER]
    for i in range(30_000):
        lines.append("oops" if i % 7_001 == 0 else f"r{i},{'x' if i % 5_003 == 0 else 30},,,,,,,,")
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    result = run(runner, tmp_path / "in.csv", "-o", tmp_path / "out.csv", "--chunk-size", "1000", "--quiet")
    assert result.exit_code == 0
    rejected = read_rows(tmp_path / "out.rejects.csv")
    expected = sorted({i + 1 for i in range(30_000) if i % 7_001 == 0 or i % 5_003 == 0})
    assert [int(row["row"]) for row in rejected] == expected
    for row in rejected:
        if row["id"]:
            assert row["id"] == f"r{int(row['row']) - 1}"
    counts = summary_of(result.output)
    assert counts["rows_in"] == 30_000 == counts["rows_scored"] + counts["rows_rejected"]


def test_no_progress_bar_when_not_a_terminal(runner, mixed_csv, tmp_path):
    result = run(runner, mixed_csv, "-o", tmp_path / "out.csv")
    assert "\r" not in result.stderr and "rows/s" not in result.stderr


def test_progress_bar_shows_rows_rate_and_time_left():
    stream = io.StringIO()
    bar = batch_files.Progress(True, stream)
    bar.update(1_000, 0.25, force=True)
    bar.finish(4_000)
    text = stream.getvalue()
    assert "1,000 rows" in text and "rows/s" in text and "left" in text and "100.0%" in text
    assert text.endswith("\n")


def test_the_scheduler_option_needs_the_dask_engine(runner, mixed_csv, tmp_path):
    result = run(runner, mixed_csv, "-o", tmp_path / "out.csv", "--scheduler", "tcp://127.0.0.1:1")
    assert result.exit_code == 2
    assert "--scheduler needs --engine dask" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_real_run_stopped_by_a_signal_leaves_no_output(tmp_path, signal_number, exit_code):
    source = big_csv(tmp_path / "big.csv", rows=400_000)
    output = tmp_path / "out.csv"
    process = subprocess.Popen([str(Path(sys.executable).parent / "formwise"), "score", str(source), "-o", str(output),
                                "--chunk-size", "4096"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not leftovers(tmp_path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert b"no output was written" in stderr
    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_a_parquet_column_of_an_unreadable_type_fails_at_once(runner, tmp_path):
    pq.write_table(pa.table({"id": ["a"], "age": [40], "goals": [{"x": 1}]}), tmp_path / "in.parquet")
    result = run(runner, tmp_path / "in.parquet", "-o", tmp_path / "out.csv")
    assert result.exit_code == 2
    assert "column goals holds struct" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_rejects_and_output_must_differ(runner, mixed_csv, tmp_path):
    result = run(runner, mixed_csv, "-o", tmp_path / "out.csv", "--rejects", tmp_path / "out.csv")
    assert result.exit_code == 2
    assert "is OUTPUT" in result.stderr


@pytest.mark.slow
def test_a_reader_that_goes_away_is_an_error_not_a_silent_success(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"x{i}", "profile": {"age": 30}}) + "\n" for i in range(2000)))
    process = subprocess.Popen([str(Path(sys.executable).parent / "formwise"), "score", str(source), "-o", "-"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.read(100)
    process.stdout.close()  # like `| head -c 100`
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 1
    assert b"the output pipe was closed before the end" in stderr


def test_the_command_and_the_module_agree_on_the_default_chunk_size():
    from formwise.service.cli import score as score_command

    assert score_command.DEFAULT_CHUNK_SIZE == DEFAULT_CHUNK_SIZE


def test_csv_cells_that_a_spreadsheet_would_run_are_defused(runner, tmp_path):
    """Free text from the input (ids, medicine names, reject reasons) that starts like a
    formula is written with a leading "'" in CSV output; Parquet keeps the value as it came."""
    source = tmp_path / "in.csv"
    source.write_text("\n".join([
        HEADER,
        '"=HYPERLINK(""http://x.test"",""open"")",40,female,,,95,,,,@SUM(1)',
        "+cmd,40,female,,,95,,,,-2+3",
        "=bad,forty,,,,,,,,",
        "plain,40,female,,,95,,,,omeprazole",
    ]) + "\n")
    result = run(runner, source, "-o", tmp_path / "out.csv", "--rejects", tmp_path / "rej.csv")
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out.csv")
    assert [row["id"] for row in rows] == ["'=HYPERLINK(\"http://x.test\",\"open\")", "'+cmd", "plain"]
    assert rows[0]["unrecognized_medications"].startswith("'@SUM") and rows[1]["unrecognized_medications"] == "'-2+3"
    (reject,) = read_rows(tmp_path / "rej.csv")
    assert reject["id"] == "'=bad"
    assert run(runner, source, "-o", tmp_path / "out.parquet").exit_code == 0
    assert read_rows(tmp_path / "out.parquet")[1]["id"] == "+cmd"
