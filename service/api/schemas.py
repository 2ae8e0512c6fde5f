"""Marshmallow schemas: the same objects validate requests and generate /openapi.json.

Input is strict on purpose: a string where a number belongs, ``true`` where an age belongs
or a word outside the contract's vocabulary is a 422 naming the field and what is allowed,
never a silent coercion."""

from __future__ import annotations

import copy
import numbers
import re

import marshmallow as ma
from flask import current_app, has_app_context
from marshmallow import fields, validate

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.service.api.fast_load import FALLBACK, compile_loader

FORM_IDS = default_knowledge_base().form_ids
PACKAGED_FORMS = frozenset(FORM_IDS)
MAX_LIST_ITEMS = 50
MAX_BATCH_ITEMS = 1000


def _allowed(words) -> str:
    return "Must be one of: " + ", ".join(words) + "."


class StrictInteger(fields.Integer):
    """An integer and nothing else: no strings, no booleans, no 40.5."""

    def _deserialize(self, value, attr, data, **kwargs):
        whole_float = isinstance(value, float) and value.is_integer()
        if isinstance(value, bool) or not (isinstance(value, numbers.Integral) or whole_float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)

    default_error_messages = {"invalid": "Must be a whole number."}


class StrictNumber(fields.Float):
    """A JSON number: no strings, no booleans, nothing infinite."""

    default_error_messages = {"invalid": "Must be a number."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """true or false, not "yes" or 1."""

    default_error_messages = {"invalid": "Must be true or false."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class RunningFormId(validate.OneOf):
    """One of the forms of the knowledge base the app runs on. A folder named by
    FORMWISE_KNOWLEDGE_BASE_DIR may hold other forms than the packaged knowledge base: a
    packaged form the folder lacks must be refused here, not reach the engine, and a form
    only the folder has must be accepted. ``choices`` follows the app too, so each app's
    /openapi.json lists its own forms (create_app registers the blueprints inside the app's
    context). Outside an app (the command line's own checks) the packaged forms apply.
    ``accepts`` is the check service/api/fast_load.py compiles in."""

    def __init__(self):
        super().__init__(FORM_IDS, error=_allowed(FORM_IDS))

    @property
    def choices(self):
        if has_app_context():
            return tuple(current_app.extensions["formwise"].engine.form_position)
        return FORM_IDS

    @choices.setter
    def choices(self, packaged):  # OneOf.__init__ assigns the packaged ids; the property serves them
        pass

    def accepts(self, value) -> bool:
        return value in (current_app.extensions["formwise"].engine.form_position if has_app_context()
                         else PACKAGED_FORMS)

    def __call__(self, value):
        if not self.accepts(value):
            raise ma.ValidationError(_allowed(self.choices))
        return value


def _word_list(words, description, validator=None):
    return fields.List(
        fields.String(validate=validator or validate.OneOf(words, error=_allowed(words))),
        load_default=list,
        validate=validate.Length(max=MAX_LIST_ITEMS),
        metadata={"description": description},
    )


def _copy_loaded(value):
    """A deep copy of loaded JSON data: dicts and lists copied, immutable scalars shared,
    anything else through deepcopy (whose memo and dispatch cost ten times this per default)."""
    if type(value) is dict:
        return {key: _copy_loaded(item) for key, item in value.items()}
    if type(value) is list:
        return [_copy_loaded(item) for item in value]
    if value is None or type(value) in (str, int, float, bool):
        return value
    return copy.deepcopy(value)


def defaults_of(schema_class):
    """A load_default for a nested object left out: the schema's own defaults, computed
    once (building a schema per request is a fifth of a request's cost) and copied per use."""
    defaults = schema_class().load({})
    return lambda: _copy_loaded(defaults)


class StrictSchema(ma.Schema):
    """Rejects unknown fields with a message that lists the allowed ones.

    ``unknown = RAISE`` (not EXCLUDE plus a validator) so that /openapi.json documents
    ``additionalProperties: false``: clients and fuzzers then know extras are refused."""

    error_messages = {"type": "Must be an object."}  # marshmallow merges this into its defaults

    class Meta:
        unknown = ma.RAISE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        allowed = ", ".join(self.fields)
        self.error_messages = {**self.error_messages, "unknown": f"Unknown field. Allowed fields: {allowed}."}
        self._fast_loader = None

    def load_fast(self, data):
        """``load(data)``, through the compiled fast path when it can vouch for the body
        (service/api/fast_load.py); otherwise marshmallow's own load, messages and all."""
        if self._fast_loader is None:
            self._fast_loader = compile_loader(self)
        loaded = self._fast_loader(data)
        return self.load(data) if loaded is FALLBACK else loaded


class PreferencesSchema(StrictSchema):
    avoid_forms = _word_list(FORM_IDS, "Forms to exclude (reason avoided_by_user).", RunningFormId())
    max_units_per_day = StrictInteger(
        validate=validate.Range(1, 12, error="Must be a whole number from 1 to 12."),
        allow_none=True,
        load_default=None,
        metadata={"description": "Most tablets or capsules a day the person will take."},
    )


class ProfileSchema(StrictSchema):
    age = StrictInteger(
        required=True,
        validate=validate.Range(0, 120, error="Must be a whole number from 0 to 120 (years)."),
        metadata={"description": "Age in whole years.", "example": 54},
    )
    sex = fields.String(
        load_default="unspecified",
        validate=validate.OneOf(vocab.SEXES, error=_allowed(vocab.SEXES)),
        metadata={"example": "female"},
    )
    pregnant = StrictBoolean(load_default=False)
    breastfeeding = StrictBoolean(load_default=False)
    egfr = StrictNumber(
        allow_none=True,
        load_default=None,
        validate=validate.Range(0, 250, error="Must be a number from 0 to 250 (mL/min/1.73 m²), or null."),
        metadata={"description": "Estimated GFR in mL/min/1.73 m²; null when unknown.", "example": 58},
    )
    dialysis = StrictBoolean(load_default=False)
    serum_magnesium = StrictNumber(
        allow_none=True,
        load_default=None,
        validate=validate.Range(0, 10, error="Must be a number from 0 to 10 (mmol/L; mg/dL divided by 2.43), or null."),
        metadata={"description": "Serum magnesium in mmol/L (mg/dL / 2.43); null when unknown. Above 1.05 no form is "
                                 "recommended; below 0.70 the answer asks for the cause to be found."},
    )
    conditions = _word_list(vocab.CONDITIONS, "Conditions from the contract's vocabulary.")
    goals = _word_list(vocab.GOALS, "Goals from the contract's vocabulary.")
    medications = fields.List(
        fields.String(validate=validate.Length(1, 200, error="Must be 1 to 200 characters.")),
        load_default=list,
        validate=validate.Length(max=MAX_LIST_ITEMS),
        metadata={"description": "Generic or brand names in any case, or rxcui:NNNN. Unknown names are echoed.",
                  "example": ["doxycycline", "omeprazole"]},
    )
    preferences = fields.Nested(PreferencesSchema, load_default=defaults_of(PreferencesSchema))


CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
CLOCK_TIME_ERROR = 'Must be a time of day as "HH:MM" (00:00 to 23:59).'
MAX_DOSES_PER_DAY = 12


class ClockTimes(fields.Field):
    """A medicine's daily times: one "HH:MM" or a list of 1 to 12 of them (read as a list)."""

    default_error_messages = {
        "invalid": f'Must be a time of day as "HH:MM" (00:00 to 23:59) or a list of 1 to {MAX_DOSES_PER_DAY} '
                   "such times.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        times = [value] if isinstance(value, str) else value
        if (not isinstance(times, list) or not 1 <= len(times) <= MAX_DOSES_PER_DAY
                or not all(isinstance(time, str) and CLOCK_TIME.match(time) for time in times)):
            raise self.make_error("invalid")
        return list(times)


class WakingHoursSchema(StrictSchema):
    start = fields.String(required=True, validate=validate.Regexp(CLOCK_TIME, error=CLOCK_TIME_ERROR),
                          metadata={"description": "When the day starts, HH:MM."})
    end = fields.String(required=True, validate=validate.Regexp(CLOCK_TIME, error=CLOCK_TIME_ERROR),
                        metadata={"description": "When the day ends, HH:MM: before start means past midnight, "
                                                 "equal to start the whole day."})


class OptionsSchema(StrictSchema):
    limit = StrictInteger(
        load_default=3,
        validate=validate.Range(1, 20, error="Must be a whole number from 1 to 20."),
    )
    locale = fields.String(
        load_default=vocab.DEFAULT_LOCALE,
        validate=validate.Length(1, 35),
        metadata={"description": f"One of {', '.join(vocab.LOCALES)}; others fall back to English."},
    )
    explain = StrictBoolean(
        load_default=False,
        metadata={"description": "Add each score's breakdown, each reason's evidence grade and citation, and the "
                                 "dose in tablets or capsules."},
    )
    schedule = fields.Dict(
        keys=fields.String(),  # any name: one the knowledge base does not know is echoed in the plan
        values=ClockTimes(metadata={"oneOf": [
            {"type": "string", "pattern": CLOCK_TIME.pattern},
            {"type": "array", "items": {"type": "string", "pattern": CLOCK_TIME.pattern},
             "minItems": 1, "maxItems": MAX_DOSES_PER_DAY},
        ]}),
        allow_none=True,
        load_default=None,
        validate=validate.Length(max=MAX_LIST_ITEMS, error=f"Must name at most {MAX_LIST_ITEMS} medicines."),
        metadata={"description": 'When the person takes their medicines, e.g. {"levothyroxine": "07:00", '
                                 '"doxycycline": ["08:00", "20:00"]}: adds the timing plan for magnesium.'},
    )
    waking_hours = fields.Nested(
        WakingHoursSchema, allow_none=True, load_default=None,
        metadata={"description": "The hours in which magnesium may be taken; 07:00 to 22:00 when not given."},
    )


class RecommendationRequestSchema(StrictSchema):
    profile = fields.Nested(ProfileSchema, required=True)
    options = fields.Nested(OptionsSchema, load_default=defaults_of(OptionsSchema))


class HandoutDetailsSchema(StrictSchema):
    """What the pharmacy prints in the handout's header; never stored or logged."""

    patient_name = fields.String(validate=validate.Length(1, 100), metadata={"description": "Who it is for."})
    date = fields.Date(metadata={"description": "The date printed on it; today when not given."})
    pharmacy = fields.String(validate=validate.Length(1, 200), metadata={"description": "Pharmacy name (and address)."})
    pharmacist = fields.String(validate=validate.Length(1, 100), metadata={"description": "Who prepared it."})


class HandoutRequestSchema(RecommendationRequestSchema):
    handout = fields.Nested(HandoutDetailsSchema, load_default=None, allow_none=True)


class ItemId(fields.String):
    """A batch item's id: text, or a whole number (as a warehouse's numeric keys arrive in a
    JSON Lines export or a Parquet column), answered as its decimal text."""

    default_error_messages = {"invalid": "Must be text or a whole number."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class BatchItemSchema(StrictSchema):
    id = ItemId(required=True, validate=validate.Length(1, 200), metadata={
        "description": "Your id for the item, 1-200 characters; a whole number is taken as its decimal text."})
    profile = fields.Raw(required=True, metadata={"description": "A profile, validated item by item."})


class BatchRequestSchema(StrictSchema):
    items = fields.List(
        # Any value is taken here (null too): each item is validated on its own, and a bad one
        # gets its own error in results while the others are answered.
        fields.Raw(allow_none=True, metadata={"description": "An object with id and profile."}),
        required=True,
        validate=validate.Length(
            1, MAX_BATCH_ITEMS,
            error=f"Must hold 1 to {MAX_BATCH_ITEMS} items; split larger jobs or use formwise score.",
        ),
        metadata={"description": f"At most {MAX_BATCH_ITEMS} items, each {{id, profile}}."},
    )
    options = fields.Nested(OptionsSchema, load_default=defaults_of(OptionsSchema))


_profile_schema = ProfileSchema()
_batch_item_schema = BatchItemSchema()


def item_id_of(item) -> str | None:
    """The id a result carries: the item's id as text (a whole number as its digits), else None."""
    value = item.get("id") if isinstance(item, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else None


def load_batch_item(item) -> dict:
    """A validated profile from one batch item; messages are relative to the item. The batch
    endpoint and ``formwise score``'s JSON Lines rows both check their items with it."""
    if not isinstance(item, dict):
        raise ma.ValidationError({"item": ["Must be an object with id and profile."]})
    checked = _batch_item_schema.load_fast(item)
    if not isinstance(checked["profile"], dict):
        raise ma.ValidationError({"profile": ["Must be an object."]})
    try:
        return _profile_schema.load_fast(checked["profile"])
    except ma.ValidationError as error:
        raise ma.ValidationError({"profile": error.messages}) from None
