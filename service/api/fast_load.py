"""A fast path for loading valid request bodies, compiled from the marshmallow schemas.

Marshmallow's ``load`` was a fifth of a recommendation request's cost. Most bodies are
valid, and for those the work is a handful of type and range checks. ``compile_loader``
reads a schema's own fields and validators (so every limit still lives in one place,
service/api/schemas.py) and returns a function that either gives exactly what
``schema.load`` would give, or ``FALLBACK``: then the caller runs ``schema.load``, which
accepts the body after all or raises the field-level messages. The fast path never
rejects anything and never accepts what marshmallow refuses (tests/service/api/test_fast_load.py
checks both over random bodies).

It understands the field kinds the request schemas use: the strict number, integer and
boolean fields, strings, a batch item's id, raw values, lists, nested schemas, with Range, OneOf, Length and
Regexp validators. Any other field falls back when it is present, and a schema with
hooks (pre_load, validates_schema, ...) or renamed fields always falls back."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

FALLBACK = object()
Checker = Callable[[Any], Any]  # the loaded value, or FALLBACK


class Unsupported(Exception):
    """A field or schema the fast path does not model: that part falls back to marshmallow."""


def _validator_check(validator) -> Callable[[Any], bool]:
    """A predicate equivalent to one marshmallow validator (True: the value passes). A
    validator of its own kind may offer one as ``accepts(value) -> bool``."""
    accepts = getattr(validator, "accepts", None)
    if callable(accepts):
        return accepts
    kind = type(validator)
    if kind is validate.Range:
        low, high = validator.min, validator.max
        above = operator.ge if validator.min_inclusive else operator.gt
        below = operator.le if validator.max_inclusive else operator.lt
        if low is None:
            return (lambda value: True) if high is None else (lambda value: below(value, high))
        if high is None:
            return lambda value: above(value, low)
        return lambda value: above(value, low) and below(value, high)
    if kind is validate.OneOf:
        choices = frozenset(validator.choices)
        return lambda value: value in choices
    if kind is validate.Length:
        low, high, equal = validator.min, validator.max, validator.equal
        if equal is not None:
            return lambda value: len(value) == equal
        return lambda value: (low is None or len(value) >= low) and (high is None or len(value) <= high)
    if kind is validate.Regexp:
        regex = validator.regex
        return lambda value: regex.match(value) is not None
    raise Unsupported(f"validator {kind.__name__}")


def _type_check(field: fields.Field) -> Checker:
    """The value as marshmallow deserialises it, or FALLBACK."""
    # Imported here: formwise.service.api.schemas builds its schemas with this module's help.
    from formwise.service.api.schemas import ItemId, StrictBoolean, StrictInteger, StrictNumber

    kind = type(field)
    if kind is StrictInteger:
        def integer(value):
            if type(value) is int:
                return value
            if type(value) is float and value.is_integer():
                return int(value)
            return FALLBACK
        return integer
    if kind is StrictNumber:
        def number(value):
            if type(value) is float:
                return value if math.isfinite(value) else FALLBACK
            if type(value) is int and -(2**53) <= value <= 2**53:
                return float(value)
            return FALLBACK
        return number
    if kind is StrictBoolean:
        return lambda value: value if type(value) is bool else FALLBACK
    if kind is fields.Raw:
        return lambda value: value
    if kind is fields.String:
        return lambda value: value if type(value) is str else FALLBACK
    if kind is ItemId:  # text, or a whole number as its decimal text
        return lambda value: value if type(value) is str else str(value) if type(value) is int else FALLBACK
    if kind is fields.List:
        inner = _field_check(field.inner)

        def items(value):
            if type(value) is not list:
                return FALLBACK
            loaded = [inner(item) for item in value]
            return FALLBACK if FALLBACK in loaded else loaded  # loaded values never equal FALLBACK
        return items
    if kind is fields.Nested and not field.many and field.only is None and not field.exclude:
        return compile_loader(field.schema)
    raise Unsupported(f"field {kind.__name__}")


def _field_check(field: fields.Field) -> Checker:
    """Type check, then the field's validators; None only where the field allows it."""
    if field.data_key is not None or field.attribute is not None:
        raise Unsupported("renamed field")
    type_check = _type_check(field)
    checks = tuple(_validator_check(validator) for validator in field.validators)
    allow_none = field.allow_none

    def unvalidated(value):
        if value is None:
            return None if allow_none else FALLBACK
        return type_check(value)

    if not checks:
        return unvalidated

    def check(value):
        if value is None:
            return None if allow_none else FALLBACK
        loaded = type_check(value)
        if loaded is FALLBACK:
            return FALLBACK
        for passes in checks:
            if not passes(loaded):
                return FALLBACK
        return loaded
    return check


def _present_only_none(field: fields.Field) -> Checker:
    """For a field the fast path does not model: null where allowed, else fall back."""
    allow_none = field.allow_none
    return lambda value: None if value is None and allow_none else FALLBACK


def compile_loader(schema: ma.Schema) -> Checker:
    """``loader(data)``: ``schema.load(data)`` for the bodies it can check, else FALLBACK."""
    if any(schema._hooks.values()) or schema.many or schema.partial or schema.unknown != ma.RAISE:
        return lambda data: FALLBACK
    plan = []
    for name, field in schema.load_fields.items():
        try:
            check = _field_check(field)
        except Unsupported:
            check = _present_only_none(field)
        default = field.load_default
        plan.append((name, check, field.required, default, callable(default)))
    known = frozenset(name for name, *_ in plan)

    def loader(data):
        if type(data) is not dict or not known.issuperset(data):
            return FALLBACK
        loaded = {}
        for name, check, required, default, default_is_callable in plan:
            if name in data:
                value = check(data[name])
                if value is FALLBACK:
                    return FALLBACK
                loaded[name] = value
            elif required:
                return FALLBACK
            elif default is not ma.missing:
                loaded[name] = default() if default_is_callable else default
        return loaded
    return loader
