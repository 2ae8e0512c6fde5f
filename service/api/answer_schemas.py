"""Response schemas: they document the answers in /openapi.json. The answers themselves are
plain dicts built by formwise.models.engine.answers and serialised with orjson."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from formwise.models.knowledge import vocabulary as vocab


class ReasonEvidenceSchema(ma.Schema):
    grade = fields.String(allow_none=True, metadata={"description": "A (strongest) to D, see data/README.md."})
    design = fields.String(allow_none=True)
    source = fields.String(required=True, metadata={"description": "A source id from GET /v1/forms citations."})
    title = fields.String(required=True)
    year = fields.Integer(required=True)
    url = fields.String(required=True)


class ReasonSchema(ma.Schema):
    factor = fields.String(required=True)
    effect = fields.String(required=True, validate=validate.OneOf(["+", "-"]))
    text = fields.String(required=True)
    attribute = fields.String(metadata={"description": "With options.explain: the form attribute the reason rests on "
                                                       "(absorption, evidence_sleep, ...)."})
    evidence = fields.Nested(ReasonEvidenceSchema, allow_none=True,
                             metadata={"description": "With options.explain: the evidence behind the reason."})


class CaveatSchema(ma.Schema):
    code = fields.String(required=True)
    severity = fields.String(required=True, validate=validate.OneOf(vocab.SEVERITIES))
    text = fields.String(required=True)
    source = fields.String(metadata={"description": "A source id from GET /v1/forms citations."})


class MgRangeSchema(ma.Schema):
    min = fields.Integer(required=True)
    max = fields.Integer(required=True)


class UnitsPerDaySchema(ma.Schema):
    unit_elemental_mg = fields.Float(required=True)
    unit_compound_mg = fields.Integer(required=True)
    min = fields.Integer(required=True)
    max = fields.Integer(required=True)
    fits_dose = fields.Boolean(required=True, metadata={"description": "False when one unit exceeds the dose."})
    note = fields.String()
    source = fields.String()


class DoseSchema(ma.Schema):
    elemental_mg_per_day = fields.Nested(MgRangeSchema, required=True)
    compound_mg_per_day = fields.Nested(MgRangeSchema, required=True)
    units_per_day = fields.List(fields.Nested(UnitsPerDaySchema),
                                metadata={"description": "With options.explain: tablets or capsules a day."})


class ContributionSchema(ma.Schema):
    kind = fields.String(required=True, validate=validate.OneOf(["term", "safety_rule"]))
    factor = fields.String(required=True)
    attribute = fields.String(allow_none=True)
    weight = fields.Float(allow_none=True)
    attribute_vs_average = fields.Float(allow_none=True)
    utility = fields.Float(allow_none=True)
    score = fields.Float(required=True, metadata={"description": "This factor's share of the score."})
    source = fields.String(allow_none=True)


class ExplanationSchema(ma.Schema):
    baseline = fields.Float(required=True)
    utility = fields.Float(required=True)
    score_before_safety_rules = fields.Float(required=True)
    method = fields.String(required=True)
    contributions = fields.List(fields.Nested(ContributionSchema), required=True,
                                metadata={"description": "baseline + the sum of their scores = the score."})


class ProductOfferSchema(ma.Schema):
    """A shop's product under a recommended form (only in answers made with a shop's key)."""

    sku = fields.String(required=True)
    name = fields.String(required=True)
    url = fields.String(required=True)
    elemental_mg_per_unit = fields.Float(required=True)
    units_per_day = fields.Integer(required=True, metadata={"description": "Fewest whole units within the dose range."})
    elemental_mg_per_day = fields.Float(required=True)
    days_per_pack = fields.Integer(required=True)
    price = fields.Float(required=True)
    currency = fields.String(required=True)
    cost_per_day = fields.Float(required=True)
    image_url = fields.String(required=True, allow_none=True,
                              metadata={"description": "A picture, if the catalog has one."})
    cart_url = fields.String(required=True, allow_none=True,
                             metadata={"description": "A link that adds the product to the cart, if listed."})


class RecommendationSchema(ma.Schema):
    rank = fields.Integer(required=True)
    form = fields.String(required=True)
    name = fields.String(required=True)
    score = fields.Float(required=True, validate=validate.Range(0, 1))
    status = fields.String(required=True, validate=validate.OneOf(["suitable", "caution"]))
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    caveats = fields.List(fields.Nested(CaveatSchema), required=True)
    dose = fields.Nested(DoseSchema, required=True)
    explanation = fields.Nested(ExplanationSchema, metadata={"description": "With options.explain."})
    products = fields.List(fields.Nested(ProductOfferSchema),
                           metadata={"description": "With a shop's key: its products of this form, cheapest a day "
                                                    "first (at most 5)."})


class ExclusionReasonSchema(ma.Schema):
    code = fields.String(required=True, validate=validate.OneOf(vocab.EXCLUSION_CODES))
    text = fields.String(required=True)


class ExcludedSchema(ma.Schema):
    form = fields.String(required=True)
    name = fields.String()
    reasons = fields.List(fields.Nested(ExclusionReasonSchema), required=True)


class SeparationSchema(ma.Schema):
    before_magnesium = fields.Float(required=True)
    after_magnesium = fields.Float(required=True)


class InteractionSchema(ma.Schema):
    medication = fields.String(required=True, metadata={"description": "The name as sent."})
    drug_class = fields.String(required=True, validate=validate.OneOf(vocab.INTERACTION_CLASSES))
    ingredient = fields.String(required=True, metadata={"description": "The recognised ingredient (a combination "
                                                                       "product has one item per ingredient)."})
    severity = fields.String(required=True, validate=validate.OneOf(vocab.SEVERITIES))
    management = fields.String(required=True, validate=validate.OneOf(vocab.MANAGEMENTS),
                               metadata={"description": "separate: keep the hours apart; monitor: levels or effects "
                                                        "to watch; avoid: the label advises against it at any time."})
    text = fields.String(required=True)
    separation_hours = fields.Nested(SeparationSchema, required=True, allow_none=True,
                                     metadata={"description": "null with management avoid: no window is safe."})
    source = fields.String(required=True, metadata={"description": "The label or article the figures come from."})


class MedicationSuggestionSchema(ma.Schema):
    sent = fields.String(required=True)
    did_you_mean = fields.List(fields.String(), required=True,
                               metadata={"description": "Known names close to it: offered, never assumed."})


class ClockWindowSchema(ma.Schema):
    start = fields.String(required=True)
    end = fields.String(required=True)


class ScheduledMedicineSchema(ma.Schema):
    medication = fields.String(required=True)
    drug_classes = fields.List(fields.String(validate=validate.OneOf(vocab.INTERACTION_CLASSES)), required=True)
    times = fields.List(fields.String(), required=True)
    management = fields.String(required=True, validate=validate.OneOf(vocab.MANAGEMENTS))
    separation_hours = fields.Nested(SeparationSchema, required=True, allow_none=True)


class TimingSchema(ma.Schema):
    possible = fields.Boolean(required=True)
    suggested_times = fields.List(fields.String(), required=True)
    allowed_windows = fields.List(fields.Nested(ClockWindowSchema), required=True)
    waking_hours = fields.Nested(ClockWindowSchema, required=True)
    medications = fields.List(fields.Nested(ScheduledMedicineSchema), required=True)
    conflicting_medications = fields.List(fields.String(), required=True)
    unscheduled_medications = fields.List(fields.String(), required=True)
    unrecognized_schedule_entries = fields.List(fields.String(), required=True)
    text = fields.String(required=True)


class ExperimentArmSchema(ma.Schema):
    """Only in widget answers of a shop running an A/B experiment (docs: Web shops)."""

    id = fields.UUID(required=True, metadata={"description": "The shop's experiment."})
    arm = fields.String(required=True, validate=validate.OneOf(("ranking", "control")))
    product = fields.String(required=True, allow_none=True,
                            metadata={"description": "Control: the shop's default product, the one listed."})
    safety_override = fields.Boolean(required=True, allow_none=True, metadata={
        "description": "Control: true when the default product's form is not one recommended for this person, "
                       "so the answer shows the ranking (the safety rules come first)."})


class RecommendationResponseSchema(ma.Schema):
    recommendation_id = fields.UUID(required=True)
    knowledge_base_version = fields.String(required=True)
    model_version = fields.String(required=True)
    max_severity = fields.String(required=True, validate=validate.OneOf(vocab.SEVERITIES))
    recommendations = fields.List(fields.Nested(RecommendationSchema), required=True)
    excluded = fields.List(fields.Nested(ExcludedSchema), required=True)
    caveats = fields.List(fields.Nested(CaveatSchema), required=True)
    interactions = fields.List(fields.Nested(InteractionSchema), required=True)
    unrecognized_medications = fields.List(fields.String(), required=True)
    medication_suggestions = fields.List(fields.Nested(MedicationSuggestionSchema), required=True,
                                         metadata={"description": "Near misses among the unrecognised names."})
    disclaimer = fields.String(required=True)
    timing = fields.Nested(TimingSchema, metadata={"description": "With options.schedule: when to take magnesium."})
    experiment = fields.Nested(ExperimentArmSchema)


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, with field-level messages in ``errors``."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    instance = fields.String()
    errors = fields.List(
        fields.Dict(),
        metadata={"description": "One entry per bad field: {field, message}."},
    )


class BatchResultSchema(ma.Schema):
    id = fields.String(required=True, allow_none=True)
    output = fields.Nested(RecommendationResponseSchema, allow_none=True, required=True)
    error = fields.Nested(ProblemSchema, allow_none=True, required=True)


class BatchResponseSchema(ma.Schema):
    results = fields.List(fields.Nested(BatchResultSchema), required=True)


class SourcedValueSchema(ma.Schema):
    value = fields.Float(required=True)
    source = fields.String(required=True)
    note = fields.String()


class EvidenceSchema(ma.Schema):
    strength = fields.Float(required=True)
    grade = fields.String(required=True)
    source = fields.String(required=True)
    note = fields.String()


class CitationSchema(ma.Schema):
    id = fields.String(required=True)
    title = fields.String(required=True)
    authors = fields.String()
    year = fields.Integer(required=True)
    url = fields.String(required=True)
    note = fields.String()


class FormSchema(ma.Schema):
    id = fields.String(required=True)
    name = fields.String(required=True, metadata={"description": "In English."})
    names = fields.Dict(keys=fields.String(), values=fields.String(),
                        metadata={"description": "The name per locale (en, de); answers use options.locale."})
    salt = fields.String()
    formula = fields.String()
    hydrate = fields.String()
    laxative = fields.Boolean(required=True)
    source = fields.String(required=True)
    note = fields.String()
    attributes = fields.Dict(keys=fields.String(), values=fields.Nested(SourcedValueSchema), required=True)
    evidence = fields.Dict(keys=fields.String(), values=fields.Nested(EvidenceSchema), required=True)
    citations = fields.Dict(keys=fields.String(), values=fields.Nested(CitationSchema))


class FormListSchema(ma.Schema):
    knowledge_base_version = fields.String(required=True)
    forms = fields.List(fields.Nested(FormSchema), required=True)


class HealthSchema(ma.Schema):
    status = fields.String(required=True)
    knowledge_base_version = fields.String()
    model_version = fields.String()
    checks = fields.Dict()
