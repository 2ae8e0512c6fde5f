"""The compiled fast path (service/api/fast_load.py) is marshmallow's load, only faster: over
random bodies, valid and not, whatever it accepts marshmallow accepts with the same result
(types included), and every valid body without a medicine schedule takes it."""

from __future__ import annotations

import json

import marshmallow as ma
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formwise.models.knowledge import vocabulary as vocab
from formwise.service.api.fast_load import FALLBACK, compile_loader
from formwise.service.api.schemas import FORM_IDS, BatchItemSchema, ProfileSchema, RecommendationRequestSchema
from formwise.service.shops.catalog import ProductSchema

REQUEST = RecommendationRequestSchema()
PROFILE = ProfileSchema()
BATCH_ITEM = BatchItemSchema()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.5, 40.0, 250.0, 250.0001, -0.0, 1e300]),
    st.text(max_size=4), st.sampled_from(["", "x" * 36, "x" * 201, "female", "de", "07:00", "24:00"]),
)
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                         max_size=2), max_leaves=6)


def word_lists(words):
    good = st.lists(st.sampled_from(words), max_size=5)
    return st.one_of(good, st.lists(st.sampled_from([*words, "bogus", "", None, 3]), max_size=4),
                     st.just([words[0]] * 50), st.just([words[0]] * 51))


def sometimes_junk(good):
    return st.one_of(good, good, good, junk)


good_profile_values = {
    "age": st.one_of(st.integers(0, 120), st.integers(0, 120).map(float)),
    "sex": st.sampled_from(vocab.SEXES),
    "pregnant": st.booleans(),
    "breastfeeding": st.booleans(),
    "egfr": st.one_of(st.none(), st.integers(0, 250), st.floats(0, 250)),
    "dialysis": st.booleans(),
    "conditions": st.lists(st.sampled_from(vocab.CONDITIONS), max_size=5),
    "goals": st.lists(st.sampled_from(vocab.GOALS), max_size=3),
    "medications": st.lists(st.sampled_from(["omeprazole", "LASIX", "rxcui:10582", "zzz", "x" * 200]), max_size=4),
    "preferences": st.fixed_dictionaries({}, optional={
        "avoid_forms": st.lists(st.sampled_from(FORM_IDS), max_size=3),
        "max_units_per_day": st.one_of(st.none(), st.integers(1, 12)),
    }),
}
good_option_values = {
    "limit": st.integers(1, 20),
    "locale": st.sampled_from(["en", "de", "fr", "de-CH", "x" * 35]),
    "explain": st.booleans(),
}
valid_bodies = st.fixed_dictionaries(
    {"profile": st.fixed_dictionaries({"age": good_profile_values["age"]},
                                      optional={k: v for k, v in good_profile_values.items() if k != "age"})},
    optional={"options": st.fixed_dictionaries({}, optional=good_option_values)},
)

any_profile_values = {
    **{name: sometimes_junk(value) for name, value in good_profile_values.items()},
    "conditions": word_lists(vocab.CONDITIONS),
    "goals": word_lists(vocab.GOALS),
    "preferences": st.one_of(st.fixed_dictionaries({}, optional={
        "avoid_forms": sometimes_junk(word_lists(FORM_IDS)),
        "max_units_per_day": sometimes_junk(st.integers(-1, 14)),
        "extra": junk,
    }), junk),
}
any_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={
        "profile": st.one_of(st.fixed_dictionaries({}, optional={**any_profile_values, "other": junk}), junk),
        "options": st.one_of(st.fixed_dictionaries({}, optional={
            **{name: sometimes_junk(value) for name, value in good_option_values.items()},
            "schedule": st.one_of(st.none(), st.just({"levothyroxine": "07:00"}), junk),
            "waking_hours": st.one_of(st.none(), st.just({"start": "07:00", "end": "22:00"}), junk),
        }), junk),
        "extra": junk,
    }),
    junk,
)


NUMBER_FIELDS = {"age", "egfr", "max_units_per_day", "limit"}
LIST_FIELDS = {"conditions", "goals", "medications", "avoid_forms"}
number_edges = st.one_of(st.sampled_from([True, False, 40.5, 0.1, -1, 0, 1, 12, 13, 20, 21, 120, 121, 250, 251, 250.5,
                                          -0.5, 1e300, 2**60, "40", None]), st.floats(-5, 300))
list_edges = st.sampled_from([None, "constipation", [None], [1], ["bogus"], [""], ["x" * 201], ["sleep"] * 51, {}])
other_edges = st.sampled_from([None, 1, 0, True, "", "true", "x" * 36, "Female", [], {}])


def edges_for(name: str):
    specific = number_edges if name in NUMBER_FIELDS else list_edges if name in LIST_FIELDS else other_edges
    return st.one_of(specific, specific, junk)


@st.composite
def nearly_valid_bodies(draw):
    """A valid body with one place changed: a field's value, a list item, or an extra key."""
    body = draw(valid_bodies)
    body.setdefault("options", {})
    body["profile"].setdefault("preferences", {})
    containers = [body, body["profile"], body["profile"]["preferences"], body["options"]]
    target = draw(st.sampled_from(containers))
    names = {id(body): ["profile", "options"], id(body["profile"]): list(good_profile_values),
             id(body["profile"]["preferences"]): ["avoid_forms", "max_units_per_day"],
             id(body["options"]): [*good_option_values, "schedule", "waking_hours"]}[id(target)]
    name = draw(st.sampled_from([*names, "unknown_field"]))
    current = target.get(name)
    if isinstance(current, list) and current and draw(st.booleans()):
        current[draw(st.integers(0, len(current) - 1))] = draw(st.one_of(other_edges, junk))
    else:
        target[name] = draw(edges_for(name))
    return body


def typed(value) -> bytes:
    """JSON with sorted keys: 58 and 58.0 differ, as they would to a client. (orjson stops
    at 64-bit integers; the standard library writes any.)"""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True).encode()


def marshmallow_result(schema, body):
    try:
        return schema.load(body)
    except ma.ValidationError:
        return FALLBACK


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_bodies)
def test_the_fast_path_accepts_only_what_marshmallow_accepts_and_loads_it_the_same(body):
    fast = compile_loader(REQUEST)(body)
    expected = marshmallow_result(REQUEST, body)
    if fast is not FALLBACK:
        assert expected is not FALLBACK, "the fast path accepted a body marshmallow rejects"
        assert typed(fast) == typed(expected)
    if expected is not FALLBACK:
        assert typed(REQUEST.load_fast(body)) == typed(expected)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nearly_valid_bodies())
def test_one_changed_place_is_caught_or_loaded_alike(body):
    test_the_fast_path_accepts_only_what_marshmallow_accepts_and_loads_it_the_same.hypothesis.inner_test(body)


@settings(max_examples=500, deadline=None)
@given(valid_bodies)
def test_every_valid_body_without_a_schedule_takes_the_fast_path(body):
    fast = compile_loader(REQUEST)(body)
    assert fast is not FALLBACK
    assert typed(fast) == typed(REQUEST.load(body))


@settings(max_examples=300, deadline=None)
@given(any_bodies)
def test_load_fast_raises_marshmallows_own_messages(body):
    try:
        REQUEST.load(body)
    except ma.ValidationError as expected:
        with pytest.raises(ma.ValidationError) as raised:
            REQUEST.load_fast(body)
        assert raised.value.messages == expected.messages


def test_defaults_are_fresh_per_load():
    """A default list or object is never shared between two answers' profiles."""
    first = PROFILE.load_fast({"age": 40})
    first["conditions"].append("constipation")
    first["preferences"]["avoid_forms"].append("oxide")
    second = PROFILE.load_fast({"age": 40})
    assert second["conditions"] == [] and second["preferences"]["avoid_forms"] == []


def test_a_schedule_is_left_to_marshmallow():
    body = {"profile": {"age": 40}, "options": {"schedule": {"levothyroxine": "07:00"}}}
    assert compile_loader(REQUEST)(body) is FALLBACK
    assert REQUEST.load_fast(body)["options"]["schedule"] == {"levothyroxine": ["07:00"]}


def test_schemas_with_hooks_always_fall_back():
    product = {"sku": "A1", "form": "citrate", "name": "Citrate 200", "price": 9.99}
    assert compile_loader(ProductSchema())(product) is FALLBACK


def test_batch_items_take_the_fast_path_with_their_raw_profile():
    item = {"id": "row-1", "profile": {"age": 40, "conditions": ["constipation"]}}
    assert compile_loader(BATCH_ITEM)(item) == item
    assert compile_loader(BATCH_ITEM)({"id": "", "profile": {}}) is FALLBACK


def strict_schemas():
    """Every StrictSchema in the service (the fast path serves them all through the parser)."""
    from formwise.service.api.schemas import StrictSchema
    from formwise.service.app import create_app

    create_app({"TESTING": True})  # registers every part, so every schema class is defined
    pending, found = [StrictSchema], []
    while pending:
        for subclass in pending.pop().__subclasses__():
            pending.append(subclass)
            found.append(subclass)
    return sorted(found, key=lambda schema: schema.__name__)


@pytest.mark.parametrize("schema_class", strict_schemas(), ids=lambda schema: schema.__name__)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_schema_takes_a_body_marshmallow_refuses(schema_class, data):
    schema = schema_class()
    names = list(schema.fields)
    body = data.draw(st.dictionaries(st.sampled_from([*names, "extra"]), edge_values_for_any_field(), max_size=6))
    fast = compile_loader(schema)(body)
    if fast is not FALLBACK:
        expected = marshmallow_result(schema, body)
        assert expected is not FALLBACK
        assert typed(fast) == typed(expected)


def edge_values_for_any_field():
    return st.one_of(number_edges, list_edges, other_edges, junk, st.text(max_size=3),
                     st.sampled_from(["citrate", "view", "2b1f2f6e-8d4c-4a39-9d0b-6f3f0d0f6a11", "07:00", "en"]))
