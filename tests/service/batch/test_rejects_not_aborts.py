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


def test_an_over_long_line_is_a_reject_and_the_run_goes_on(runner, tmp_path):
    rows = [f"r{n},40,female,sleep,omeprazole" for n in range(1, 10_001)]
    rows[5000] = 'big,40,female,sleep,"' + "x" * (3 << 20) + '"'  # row 5,001: a 3 MiB quoted cell
    (tmp_path / "in.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    result = run(runner, tmp_path / "in.csv", "-o", tmp_path / "out.csv", "--chunk-size", "2048")
    assert result.exit_code == 0, result.output
    assert "rows_in=10000 rows_scored=9999 rows_rejected=1" in result.output
    (reject,) = rows_of(tmp_path / "out.rejects.csv")
    assert (reject["row"], reject["fields"]) == ("5001", "row") and "--max-line-bytes" in reject["reason"]
    roomy = run(runner, tmp_path / "in.csv", "-o", tmp_path / "roomy.csv", "--max-line-bytes", str(4 << 20))
    (reject,) = rows_of(tmp_path / "roomy.rejects.csv")  # read now, and rejected for what it holds
    assert reject["row"] == "5001" and "--max-line-bytes" not in reject["reason"]
    assert "rows_scored=9999" in roomy.output


def test_an_over_long_json_line_and_one_in_a_gzipped_csv_are_rejects(runner, tmp_path):
    import gzip
    import json

    lines = [json.dumps({"id": f"j{n}", "profile": {"age": 40}}) for n in range(4)]
    lines[2] = json.dumps({"id": "huge", "profile": {"age": 40, "medications": ["m" * (2 << 20)]}})
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    result = run(runner, tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl")
    assert "rows_in=4 rows_scored=3 rows_rejected=1" in result.output
    reject = json.loads((tmp_path / "out.rejects.jsonl").read_text())
    assert reject["row"] == 3 and "--max-line-bytes" in reject["reason"]
    with gzip.open(tmp_path / "in.csv.gz", "wt") as handle:
        handle.write(HEADER + "\nok,40,male,sleep,\nbig,40,male,sleep," + "y" * (2 << 20) + "\nok2,41,male,sleep,\n")
    result = run(runner, tmp_path / "in.csv.gz", "-o", tmp_path / "z.csv")
    assert "rows_in=3 rows_scored=2 rows_rejected=1" in result.output


def test_the_line_filter_holds_one_line_at_most_whatever_the_input():
    from formwise.service.batch.lines import PLACEHOLDER, LineLimitedFile

    class Endless:
        """64 MiB of one line, then two short ones, made as they are read (never held)."""

        def __init__(self):
            self.sent = 0
            self.tail = b"\nshort,1\nlast,2"

        def read(self, size):
            if self.sent < 64 << 20:
                self.sent += size
                return b"z" * size
            tail, self.tail = self.tail, b""
            return tail

    filtered = LineLimitedFile(Endless(), max_bytes=1 << 20)
    out, largest = bytearray(), 0
    buffer = bytearray(1 << 16)
    while count := filtered.readinto(buffer):
        out += buffer[:count]
        largest = max(largest, len(filtered._pending), len(filtered._out))
    assert bytes(out) == PLACEHOLDER + b"\nshort,1\nlast,2"
    assert filtered.overlong == {1} and largest <= (1 << 20) + (1 << 20)


@pytest.mark.parametrize(("text", "longest"), [
    (b"a" * 100 + b"\nb\n", 100), (b"a" * 101 + b"\nb\n", 101), (b"b\n" + b"a" * 101, 101),
    (b"b\n" + b"a" * 100, 100), (b"\n".join([b"c" * 90] * 50), 90), (b"", 0),
    (b"x" * 300, 128),  # past the limit it stops: the line so far, two windows of 64
])
def test_the_scan_finds_the_longest_line_and_stops_past_the_limit(tmp_path, text, longest):
    from formwise.service.batch.lines import longest_line

    (tmp_path / "f.csv").write_bytes(text)
    assert longest_line(str(tmp_path / "f.csv"), 100, window=64, probe=16) == longest
    if longest <= 90:  # every 64-byte block holds a newline: the cheap check answers the bound
        assert longest_line(str(tmp_path / "f.csv"), 100, window=64, probe=64) in (longest, 127)


def test_a_line_under_the_limit_but_longer_than_a_chunk_is_read(runner, tmp_path):
    rows = [f"r{n},40,female,sleep,omeprazole" for n in range(1, 5001)]
    rows[2500] = "mid,40,female,sleep," + "m" * (900 << 10)  # 900 KiB: under the 1 MiB limit
    (tmp_path / "in.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    result = run(runner, tmp_path / "in.csv", "-o", tmp_path / "out.csv", "--chunk-size", "100")
    assert result.exit_code == 0, result.output
    (reject,) = rows_of(tmp_path / "out.rejects.csv")
    assert reject["row"] == "2501" and reject["id"] == "mid"  # read, and rejected for what it holds
