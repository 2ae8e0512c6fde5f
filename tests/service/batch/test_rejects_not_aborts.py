"""Rejects, not aborts (issue 22, part 1, first steps): a row with bytes that are not UTF-8
becomes a reject and the run goes on; every column-level problem is exit code 2 with a
message, never a traceback; a run where every row was rejected is not a success; and
``--max-rejects`` stops a run that is mostly garbage with exit code 3 and no output."""

from __future__ import annotations

import csv

import pytest

from formwise.service.cli.main import main

HEADER = "id,age,sex,goals,medications"


def run(runner, *args):
    return runner.invoke(main, ["score", *map(str, args), "--quiet"])


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_latin_1_byte_rejects_its_row_and_the_run_goes_on(runner, tmp_path):
    count, bad_row = 20_000, 15_001
    lines = [HEADER.encode()]
    for n in range(1, count + 1):
        medicine = "caf\xe9ine".encode("latin-1") if n == bad_row else b"omeprazole"
        lines.append(b"p%d,%d,female,sleep,%s" % (n, 20 + n % 60, medicine))
    source = tmp_path / "export.csv"
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = run(runner, source, "-o", tmp_path / "out.csv", "--chunk-size", "4096")
    assert result.exit_code == 0, result.output
    assert f"rows_in={count} rows_scored={count - 1} rows_rejected=1" in result.output
    (reject,) = rows_of(tmp_path / "out.rejects.csv")
    assert (reject["row"], reject["id"], reject["fields"]) == (str(bad_row), f"p{bad_row}", "medications")
    assert "UTF-8" in reject["reason"]
    scored = [row["id"] for row in rows_of(tmp_path / "out.csv")]
    assert scored == [f"p{n}" for n in range(1, count + 1) if n != bad_row]  # in order, nothing else lost


def test_a_row_whose_id_is_not_utf_8_is_rejected_without_an_id(runner, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(HEADER.encode() + b"\nok,40,male,sleep,\n\xff\xfe,50,male,sleep,\n")
    result = run(runner, source, "-o", tmp_path / "out.csv")
    assert result.exit_code == 0
    (reject,) = rows_of(tmp_path / "out.rejects.csv")
    assert (reject["row"], reject["id"], reject["fields"]) == ("2", "", "id")


@pytest.mark.parametrize(("content", "message"), [
    (b"id,age,age\na,40,41\n", "the column(s) age appear more than once"),
    (b"id,\xe2ge\na,40\n", "the header line is not UTF-8 text"),
])
def test_column_level_problems_are_exit_code_2_with_a_message(runner, tmp_path, content, message):
    source = tmp_path / "in.csv"
    source.write_bytes(content)
    result = run(runner, source, "-o", tmp_path / "out.csv")
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out.csv").exists()


def test_a_run_where_every_row_was_rejected_is_not_a_success(runner, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,age\na,400\nb,-3\n")
    result = run(runner, source, "-o", tmp_path / "out.csv")
    assert result.exit_code == 1 and "no row was scored: all 2 were rejected" in result.output
    assert len(rows_of(tmp_path / "out.rejects.csv")) == 2  # the rejects are kept: they say what is wrong


def mostly_bad(tmp_path, good: int, bad: int):
    source = tmp_path / "in.csv"
    source.write_text("id,age\n" + "".join(f"g{n},40\n" for n in range(good)) + "".join(
        f"b{n},999\n" for n in range(bad)))
    return source


@pytest.mark.parametrize(("good", "bad", "limit", "exit_code"), [
    (90, 10, "10", 0), (89, 11, "10", 3), (1980, 20, "5%", 0), (1000, 1000, "20%", 3), (50, 50, "0", 3),
])
def test_max_rejects_stops_a_run_that_is_mostly_garbage(runner, tmp_path, good, bad, limit, exit_code):
    source = mostly_bad(tmp_path, good, bad)
    result = run(runner, source, "-o", tmp_path / "out.csv", "--max-rejects", limit, "--chunk-size", "256")
    assert result.exit_code == exit_code, result.output
    if exit_code == 3:
        assert "stopped:" in result.output and "--max-rejects" in result.output
        assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.rejects.csv").exists()
    else:
        assert len(rows_of(tmp_path / "out.csv")) == good


@pytest.mark.parametrize("limit", ["lots", "-1", "100%", "5 %%"])
def test_a_max_rejects_that_cannot_be_read_is_a_usage_error(runner, tmp_path, limit):
    result = run(runner, mostly_bad(tmp_path, 1, 0), "-o", tmp_path / "out.csv", "--max-rejects", limit)
    assert result.exit_code == 2 and "--max-rejects" in result.output
