"""formwise.service.batch.columns: chunk validation and encoding, and the output columns, against the
single-profile path (Recommender.batch and the answer builder)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formwise.models.knowledge import vocabulary as vocab
from formwise.service.batch.answer_columns import OutputBuilder, bit_keys, output_column_names, round_like_python
from formwise.service.batch.columns import ColumnEncoder, as_text, profile_dicts


@pytest.fixture(scope="module")
def encoder(recommender):
    return ColumnEncoder(recommender.engine)


@pytest.fixture(scope="module")
def builder(recommender):
    return OutputBuilder(recommender.engine)


def columns(**cells) -> dict[str, pa.Array]:
    return {name: pa.array(values, pa.string()) for name, values in cells.items()}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=50))
def test_rounding_is_pythons_round_bit_for_bit(values):
    array = np.array(values)
    assert round_like_python(array).tolist() == [round(value, 4) for value in values]


def test_rounding_near_halves():
    # Values whose scaled form sits on or next to a half, where x * 1e4 rounds differently.
    values = np.array([0.00005, 0.12345, 0.99995, 0.5000500000000001, 0.1234499999999999, 1.0, 0.0])
    assert round_like_python(values).tolist() == [round(float(v), 4) for v in values]


def test_bit_keys():
    flags = np.array([[True, False, True] + [False] * 10, [False] * 12 + [True], [False] * 13])
    assert bit_keys(flags).tolist() == [5, 1 << 12, 0]


def test_valid_rows_encode_like_the_single_profile_path(encoder, recommender):
    chunk = encoder.encode(columns(
        id=["a", "b", "c"],
        age=["40", "0", "120.0"],
        sex=["female", "", "male"],
        pregnant=["true", "", "0"],
        breastfeeding=["", "1", "FALSE"],
        egfr=["45.5", "", "250"],
        dialysis=["", "", "true"],
        conditions=["diarrhea; insomnia", "", "migraine"],
        goals=["sleep", "cramps", ""],
        medications=["omeprazole;foo;foo;Doxycycline", "", "LASIX"],
    ))
    assert chunk.valid.all()
    expected = recommender.batch([
        {"age": 40, "sex": "female", "pregnant": True, "egfr": 45.5, "conditions": ["diarrhea", "insomnia"],
         "goals": ["sleep"], "medications": ["omeprazole", "foo", "foo", "Doxycycline"]},
        {"age": 0, "breastfeeding": True, "goals": ["cramps"]},
        {"age": 120, "sex": "male", "egfr": 250.0, "dialysis": True, "conditions": ["migraine"],
         "medications": ["LASIX"]},
    ])
    for name in ("age", "sex", "pregnant", "breastfeeding", "dialysis", "conditions", "goals",
                 "interaction_classes", "has_unrecognized_medication", "avoid_forms", "max_units_per_day"):
        assert np.array_equal(getattr(chunk.batch, name), getattr(expected, name)), name
    assert np.array_equal(chunk.batch.egfr, expected.egfr, equal_nan=True)
    assert chunk.unrecognized.to_pylist() == ["foo", "", ""]


@pytest.mark.parametrize(("cells", "field", "reason"), [
    ({"age": "forty"}, "age", "age: Must be a whole number."),
    ({"age": "40.5"}, "age", "age: Must be a whole number."),
    ({"age": "121"}, "age", "age: Must be a whole number from 0 to 120 (years)."),
    ({"age": ""}, "age", "age: Missing data for required field."),
    ({"id": ""}, "id", "id: Missing data for required field."),
    ({"sex": "Female"}, "sex", "sex: Must be one of: unspecified, female, male."),
    ({"pregnant": "yes"}, "pregnant", "pregnant: Must be true or false."),
    ({"egfr": "-5"}, "egfr", "egfr: Must be a number from 0 to 250 (mL/min/1.73 m²), or null."),
    ({"egfr": "high"}, "egfr", "egfr: Must be a number."),
    ({"conditions": "insomnia;gout"}, "conditions", f"conditions.1: Must be one of: {', '.join(vocab.CONDITIONS)}."),
    ({"goals": "sleep;"}, "goals", f"goals.1: Must be one of: {', '.join(vocab.GOALS)}."),
    ({"medications": "a;;b"}, "medications", "medications.1: Must be 1 to 200 characters."),
    ({"conditions": ";".join(["insomnia"] * 51)}, "conditions", "conditions: Longer than maximum length 50."),
])
def test_each_bad_value_names_the_field_and_what_is_allowed(encoder, cells, field, reason):
    row = {"id": "x", "age": "40", **cells}
    chunk = encoder.encode(columns(**{name: [value] for name, value in row.items()}))
    assert not chunk.valid[0]
    assert chunk.fields.to_pylist() == [field]
    assert chunk.reasons.to_pylist() == [reason]
    assert len(chunk.batch) == 0


def test_several_bad_fields_are_all_reported_in_the_apis_order(encoder):
    chunk = encoder.encode(columns(id=[""], age=["x"], egfr=["-1"], pregnant=["2"]))
    assert chunk.fields.to_pylist() == ["id;age;pregnant;egfr"]
    assert chunk.reasons.to_pylist()[0].startswith("id: Missing data for required field.; age: Must be a whole")


def test_an_empty_row_is_rejected_as_such(encoder):
    chunk = encoder.encode(columns(id=["a", "", None], age=["1", "", None], sex=["", "", None]))
    assert chunk.valid.tolist() == [True, False, False]
    assert chunk.fields.to_pylist() == [None, "row", "row"]
    assert chunk.reasons.to_pylist()[1] == "Empty row: no values."


def test_typed_parquet_columns_read_as_their_text(encoder):
    assert as_text(pa.array([40, None])).to_pylist() == ["40", None]
    assert as_text(pa.array([40.0, float("nan"), 40.5])).to_pylist() == ["40", None, "40.5"]
    assert as_text(pa.array([True, False])).to_pylist() == ["true", "false"]
    assert as_text(pa.array([["sleep", "cramps"], []])).to_pylist() == ["sleep;cramps", ""]
    chunk = encoder.encode({"id": pa.array([1, 2]), "age": pa.array([40.0, 40.5]), "pregnant": pa.array([True, False]),
                            "goals": pa.array([["sleep"], ["bogus"]])})
    assert chunk.valid.tolist() == [True, False]
    assert chunk.ids.to_pylist() == ["1", "2"]
    assert chunk.reasons.to_pylist()[1].startswith("age: Must be a whole number.; goals.0:")


def test_missing_required_column_is_an_error(encoder):
    with pytest.raises(KeyError, match="age"):
        encoder.encode(columns(id=["a"]))


def test_output_columns_match_the_answers(encoder, builder, recommender):
    profiles = [
        {"age": 40, "conditions": ["diarrhea"], "medications": ["omeprazole", "zzz"]},
        {"age": 0},
        {"age": 70, "egfr": 45.0, "goals": ["sleep", "cramps"], "medications": ["doxycycline"]},
        {"age": 30, "preferences": {"avoid_forms": ["glycinate"], "max_units_per_day": 2}},
    ]
    batch = recommender.batch(profiles)
    scored = recommender.engine.score(batch)
    answers = recommender.answers.answers(batch, scored, 3, "en")
    ids = pa.array([str(i) for i in range(len(profiles))])
    unrecognized = pa.array([";".join(names) for names in batch.unrecognized_medications])
    for as_text_output in (False, True):
        table = builder.columns(scored, ids, unrecognized, 3, as_text=as_text_output)
        assert tuple(table.column_names) == output_column_names(3)
        rows = table.to_pylist()
        for row, answer in zip(rows, answers, strict=True):
            for k in range(3):
                ranked = answer["recommendations"][k] if k < len(answer["recommendations"]) else None
                form, score = row[f"rank{k + 1}_form"], row[f"rank{k + 1}_score"]
                assert form == (ranked["form"] if ranked else None)
                assert (float(score) if score is not None else None) == (ranked["score"] if ranked else None)
            assert row["excluded"] == ";".join(item["form"] for item in answer["excluded"])
            assert row["caveat_codes"] == ";".join(item["code"] for item in answer["caveats"])
            assert row["max_severity"] == answer["max_severity"]
            assert row["unrecognized_medications"] == ";".join(answer["unrecognized_medications"])


def test_limit_adds_rank_columns(builder, recommender):
    batch = recommender.batch([{"age": 30}])
    table = builder.columns(recommender.engine.score(batch), pa.array(["a"]), pa.array([""]), limit=5)
    assert "rank5_form" in table.column_names and table["rank5_form"][0].as_py() is not None


def test_profile_dicts_round_trip(encoder, recommender):
    chunk = encoder.encode(columns(id=["a"], age=["33"], egfr=["70"], conditions=["insomnia"],
                                   medications=["omeprazole; foo"], avoid_forms=["oxide"], max_units_per_day=["2"]),
                           keep_medications=True)
    (profile,) = profile_dicts(chunk.batch, chunk.medications, recommender.engine.form_ids)
    assert profile["medications"] == ["omeprazole", "foo"]
    assert profile["preferences"] == {"avoid_forms": ["oxide"], "max_units_per_day": 2}
    again = recommender.batch([profile])
    assert np.array_equal(again.interaction_classes, chunk.batch.interaction_classes)


@pytest.mark.parametrize("limit", [1, 3, 14])
def test_csv_rows_are_the_columns_written_as_csv(builder, recommender, limit):
    import pyarrow.csv as pa_csv

    profiles = [{"age": age, "egfr": egfr, "conditions": conditions, "medications": medications}
                for age in (0, 5, 40, 90) for egfr in (None, 20.0, 45.5, 95.0)
                for conditions in ([], ["diarrhea"], ["migraine", "leg_cramps"])
                for medications in ([], ["doxycycline", "zzz"])]
    batch = recommender.batch(profiles)
    scored = recommender.engine.score(batch)
    ids = pa.array([f"id{i}" for i in range(len(profiles))])
    unrecognized = pa.array([";".join(names) for names in batch.unrecognized_medications])
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(builder.columns(scored, ids, unrecognized, limit, as_text=True), sink,
                     pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    assert builder.csv_rows(scored, ids, unrecognized, limit).to_pybytes() == sink.getvalue().to_pybytes()
