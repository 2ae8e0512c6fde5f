"""File rows are accepted and rejected exactly as the API's ProfileSchema accepts and
rejects the same values, with the same messages, and encode to the same profile.

A CSV cell maps to the API's value as the README says: empty is "not given"; a number
cell is the JSON number it spells; booleans are true/false (any case) or 1/0; list cells
are ';'-separated, each item trimmed."""

from __future__ import annotations

import json
import re

import marshmallow as ma
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.service.api.errors import flatten_messages
from formwise.service.api.schemas import ProfileSchema
from formwise.service.batch.columns import JSON_NUMBER, ColumnEncoder
from formwise.service.batch.scoring import field_rules

FORM_IDS = default_knowledge_base().form_ids
TEXT = st.text(alphabet="abcXYZ019 .-+e", max_size=6)

numbers = st.one_of(
    st.sampled_from(["", "0", "40", "120", "121", "-1", "40.0", "40.5", "4e1", "1E2", "abc", "1e400", " 41 ",
                     "040", "+4", "true", "NaN", "1.0e2", "-0", "12", "13", "0.5", "250", "250.0001", "59.99"]),
    st.integers(-5, 300).map(str),
    st.floats(-10, 300, allow_nan=False).map(repr),
    TEXT,
)
booleans = st.sampled_from(["", "true", "false", "1", "0", "TRUE", "False", "yes", "2", " true "])


def word_cell(words):
    items = st.lists(st.sampled_from([*words, "bogus", "", " sleep ", "Insomnia"]), max_size=4)
    return st.one_of(items.map(";".join), st.just(";".join([words[0]] * 51)), st.just(""))


medication_cell = st.one_of(
    st.lists(st.sampled_from(["omeprazole", "Doxycycline", "LASIX", "rxcui:10582", "zzz", "", "x" * 201, "x" * 200,
                              " foo ", "a, b"]) | TEXT.filter(lambda t: ";" not in t), max_size=4).map(";".join),
    st.just(";".join(["foo"] * 51)),
)
any_cell = {
    "id": st.sampled_from(["r1", "", "x" * 201, "x" * 200, " "]),
    "age": numbers,
    "sex": st.sampled_from(["", "female", "male", "unspecified", "Female", "x", " male "]),
    "pregnant": booleans,
    "breastfeeding": booleans,
    "egfr": numbers,
    "dialysis": booleans,
    "serum_magnesium": numbers,
    "conditions": word_cell(vocab.CONDITIONS),
    "goals": word_cell(vocab.GOALS),
    "medications": medication_cell,
    "avoid_forms": word_cell(FORM_IDS),
    "max_units_per_day": numbers,
}


def sample_words(words):
    return st.lists(st.sampled_from(words), max_size=3).map(";".join)


good_cell = {
    "id": st.sampled_from(["r1", "r2", "x" * 200]),
    "age": st.integers(0, 120).map(str) | st.sampled_from(["40.0", "1e1", " 7 "]),
    "sex": st.sampled_from(["", *vocab.SEXES]),
    "pregnant": st.sampled_from(["", "true", "false", "1", "0", "TRUE"]),
    "breastfeeding": st.sampled_from(["", "false", "1"]),
    "egfr": st.sampled_from(["", "29.999", "30", "59.99", "60", "250", "0"]) | st.floats(0, 250).map(repr),
    "dialysis": st.sampled_from(["", "false", "true"]),
    "serum_magnesium": st.sampled_from(["", "0.69", "0.70", "1.05", "1.06", "10", "0"]) | st.floats(0, 10).map(repr),
    "conditions": sample_words(vocab.CONDITIONS),
    "goals": sample_words(vocab.GOALS),
    "medications": st.lists(st.sampled_from(["omeprazole", "Doxycycline", "LASIX", "rxcui:10582", "zzz", "a, b",
                                             "zzz", "Maalox", "dolutegravir/lamivudine", "Pantoprazol 20 mg",
                                             "doxycyline"]), max_size=3).map(";".join),
    "avoid_forms": sample_words(FORM_IDS),
    "max_units_per_day": st.sampled_from(["", "1", "12", "3.0"]),
}


@st.composite
def rows(draw):
    """Mostly valid rows with zero, one or two fields drawn from anything."""
    row = {name: draw(strategy) for name, strategy in good_cell.items()}
    for name in draw(st.lists(st.sampled_from(list(any_cell)), max_size=2)):
        row[name] = draw(any_cell[name])
    return row


def api_value(name: str, cell: str):
    """The API's value for a cell, or ``...`` when the cell means "not given"."""
    text = cell.strip()
    if not text:
        return ...
    if name in ("age", "egfr", "serum_magnesium", "max_units_per_day"):
        return json.loads(text) if re.match(JSON_NUMBER, text) else text
    if name in ("pregnant", "breastfeeding", "dialysis"):
        return {"true": True, "1": True, "false": False, "0": False}.get(text.lower(), text)
    if name in ("conditions", "goals", "medications", "avoid_forms"):
        return [item.strip() for item in text.split(";")]
    return text


def api_profile(row: dict) -> dict:
    profile, preferences = {}, {}
    for name, cell in row.items():
        if name == "id":
            continue
        value = api_value(name, cell)
        if value is ...:
            continue
        (preferences if name in ("avoid_forms", "max_units_per_day") else profile)[name] = value
    if preferences:
        profile["preferences"] = preferences
    return profile


def api_reason(messages) -> str:
    parts = []
    for item in flatten_messages(messages):
        field = item["field"].removeprefix("preferences.")
        parts.append(f"{field}: {item['message']}")
    return "; ".join(parts)


@pytest.fixture(scope="module")
def encoder(recommender):
    return ColumnEncoder(recommender.engine, field_rules())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(rows(), min_size=1, max_size=12))
def test_rows_are_judged_like_the_api(encoder, recommender, rows):
    chunk = encoder.encode({name: pa.array([row[name] for row in rows], pa.string()) for name in rows[0]})
    schema = ProfileSchema()
    scored = 0
    for position, row in enumerate(rows):
        profile = api_profile(row)
        id_reason = None
        if row["id"] == "":
            id_reason = "id: Missing data for required field."
        elif len(row["id"]) > 200:
            id_reason = "id: Length must be between 1 and 200."
        all_empty = all(not cell.strip() for name, cell in row.items() if name != "id") and row["id"] == ""
        try:
            loaded = schema.load(profile)
            api_reasons = None
        except ma.ValidationError as error:
            api_reasons = api_reason(error.messages)
        expected = "; ".join(part for part in (id_reason, api_reasons) if part) or None
        if all_empty:
            expected = "Empty row: no values."
        assert chunk.reasons[position].as_py() == expected, (row, profile)
        assert bool(chunk.valid[position]) == (expected is None)
        if expected is None:
            reference = recommender.batch([loaded])
            for name in ("age", "sex", "pregnant", "breastfeeding", "dialysis", "conditions", "goals",
                         "interaction_classes", "has_unrecognized_medication", "avoid_forms", "max_units_per_day"):
                assert np.array_equal(getattr(chunk.batch, name)[scored], getattr(reference, name)[0]), name
            assert np.array_equal(chunk.batch.measurements[scored], reference.measurements[0], equal_nan=True)
            assert chunk.unrecognized[scored].as_py() == ";".join(reference.unrecognized_medications[0])
            scored += 1
    assert scored == len(chunk.batch)
