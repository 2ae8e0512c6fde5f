"""`formwise score --engine dask` on a two-worker LocalCluster (separate processes) gives
the local engine's rows, and its counts reconcile."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from formwise.service.cli.main import main

HEADER = "id,age,sex,pregnant,breastfeeding,egfr,dialysis,conditions,goals,medications"


def csv_rows(prefix: str, count: int) -> list[str]:
    rows = []
    for i in range(count):
        if i % 97 == 5:
            rows.append(f"{prefix}{i},old,,,,,,,,")  # bad age
        elif i % 211 == 7:
            rows.append("")  # empty line
        else:
            rows.append(f"{prefix}{i},{i % 121},female,,,{(i * 7) % 140},,"
                        f"{'diarrhea' if i % 3 else 'insomnia'},sleep,{'omeprazole' if i % 4 else 'zzz'}")
    return rows


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask-in")
    (folder / "a.csv").write_text("\n".join([HEADER, *csv_rows("a", 1500)]) + "\n")
    (folder / "b.csv").write_text("\n".join([HEADER, *csv_rows("b", 700), "bad,1,2"]) + "\n")
    table = pa_csv.read_csv(folder / "a.csv", convert_options=pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in HEADER.split(",")}))
    table = table.set_column(0, "id", pa.compute.binary_join_element_wise("c", table["id"], ""))
    pq.write_table(table, folder / "c.parquet", row_group_size=400)
    (folder / "notes.txt").write_text("not an input")
    return folder


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster


def local(runner, source, target):
    result = runner.invoke(main, ["score", str(source), "-o", str(target), "--quiet"])
    assert result.exit_code == 0, result.output
    return result


def counts(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("rows_in="))
    return {key: int(value) for key, value in (part.split("=") for part in line.split())}


@pytest.mark.slow
def test_dask_engine_matches_the_local_engine(runner, cluster, inputs, tmp_path):
    output = tmp_path / "scored.parquet"
    result = runner.invoke(main, ["score", str(inputs), "-o", str(output), "--engine", "dask",
                                  "--scheduler", cluster.scheduler_address, "--chunk-size", "512"])
    assert result.exit_code == 0, result.output
    dask_counts = counts(result.output)
    assert dask_counts["rows_in"] == dask_counts["rows_scored"] + dask_counts["rows_rejected"]

    expected_rows, expected_rejects, expected_counts = [], [], {"rows_in": 0, "rows_scored": 0, "rows_rejected": 0}
    for name in ("a.csv", "b.csv", "c.parquet"):
        target = tmp_path / f"local-{name}.parquet"
        one = counts(local(runner, inputs / name, target).output)
        expected_counts = {key: expected_counts[key] + one[key] for key in one}
        expected_rows += pq.read_table(target).to_pylist()
        rejects = pq.read_table(tmp_path / f"local-{name}.rejects.parquet").to_pylist()
        expected_rejects += [{**row, "source": str(inputs / name)} for row in rejects]
    assert dask_counts == expected_counts
    assert ds.dataset(output).to_table().to_pylist() == expected_rows
    assert ds.dataset(tmp_path / "scored.rejects.parquet").to_table().to_pylist() == expected_rejects
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_dask_engine_takes_a_glob_and_replaces_an_old_dataset(runner, cluster, inputs, tmp_path):
    output = tmp_path / "scored"
    output.mkdir()
    (output / "stale.parquet").write_bytes(b"old")
    result = runner.invoke(main, ["score", str(inputs / "*.csv"), "-o", str(output), "--engine", "dask",
                                  "--scheduler", cluster.scheduler_address, "--rejects", str(tmp_path / "bad")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in output.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    c = counts(result.output)
    assert ds.dataset(output).count_rows() == c["rows_scored"]
    assert ds.dataset(tmp_path / "bad").count_rows() == c["rows_rejected"] > 0


def test_dask_engine_checks_inputs_before_starting(runner, tmp_path):
    (tmp_path / "in.csv").write_text("id,sex\na,male\n")
    result = runner.invoke(main, ["score", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out"),
                                  "--engine", "dask"])
    assert result.exit_code == 2
    assert "missing required column(s) age" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
    result = runner.invoke(main, ["score", str(tmp_path / "nothing-*.csv"), "-o", str(tmp_path / "out"),
                                  "--engine", "dask"])
    assert result.exit_code == 2
    assert "no .csv or .parquet files" in result.stderr
