"""The public contract's fixed vocabularies (../shared/contract.md). Words may be added,
never renamed or removed, so they live in code that every layer imports."""

SEXES = ("unspecified", "female", "male")

CONDITIONS = (
    "constipation",
    "diarrhea",
    "ibs_d",
    "sensitive_stomach",
    "leg_cramps",
    "muscle_spasms",
    "insomnia",
    "anxiety",
    "fatigue",
    "fibromyalgia",
    "migraine",
    "malabsorption",
    "low_magnesium",
    "myasthenia_gravis",
    "heart_block",
)

GOALS = (
    "general",
    "sleep",
    "relaxation",
    "cramps",
    "energy",
    "constipation_relief",
    "repletion",
    "migraine_prevention",
)

SEVERITIES = ("info", "warning", "critical")

INTERACTION_CLASSES = (
    "bisphosphonate",
    "tetracycline",
    "fluoroquinolone",
    "levothyroxine",
    "integrase_inhibitor",
    "gabapentin",
    "ppi",
    "loop_diuretic",
    "thiazide_diuretic",
    "potassium_sparing_diuretic",
    "digoxin",
    # v1.1: classes whose product labels name magnesium or polyvalent-cation antacids, and
    # medicines that contain magnesium themselves.
    "eltrombopag",
    "penicillamine",
    "rilpivirine",
    "mycophenolate",
    "hydroxychloroquine",
    "cephalosporin_oral",
    "statin_rosuvastatin",
    "cation_exchange_resin",
    "magnesium_product",
)
# How an interaction is handled (v1.1): a time gap, watching levels or effects, or not at all.
MANAGEMENTS = ("separate", "monitor", "avoid")

# Top-level caveat codes, in the order an answer lists them.
ANSWER_CAVEATS = (
    "consult_clinician",
    "kidney_impairment_severe",
    "kidney_impairment_moderate",
    "kidney_function_unknown",
    "serum_magnesium_high",
    "serum_magnesium_low",
    "infant",
    "child_dose_limit",
    "pregnancy",
    "breastfeeding",
    "cramps_evidence_limited",
    "dose_above_upper_limit_in_studies",
    "myasthenia_gravis",
    "heart_block",
    "medication_interaction",
    "duplicate_magnesium",
    "medication_unrecognized",
)

FORM_CAVEATS = ("laxative_effect", "may_worsen_diarrhea", "low_absorption", "high_unit_burden",
                "occasional_use_only")

# Codes that explain why a form is excluded. Safety codes come first. A critical answer
# caveat excludes every form under its own code (rule 1), so each has one here.
EXCLUSION_CODES = (
    "infant",
    "kidney_impairment_severe",
    "serum_magnesium_high",
    "kidney_impairment_moderate",
    "kidney_function_unknown",
    "may_worsen_diarrhea",
    "not_for_daily_use",
    "avoided_by_user",
)

# The contract's forms that must exist, and the laxative forms of safety rule 5.
REQUIRED_FORMS = (
    "citrate",
    "glycinate",
    "oxide",
    "malate",
    "chloride",
    "lactate",
    "taurate",
    "l_threonate",
    "carbonate",
    "hydroxide",
)
CONTRACT_LAXATIVE_FORMS = ("citrate", "oxide", "hydroxide", "sulfate")
# Safety rule 5: with any of these conditions no laxative form is ranked first. What each does
# is data (gi_rules.csv); the loader checks that every one of them has a row there.
CONTRACT_GI_SENSITIVE_CONDITIONS = ("diarrhea", "ibs_d", "sensitive_stomach")
# Safety rules 2 and 7: forms the moderate kidney band must exclude, and those excluded from
# age 65 while kidney function is unknown (each only where the knowledge base has the form).
CONTRACT_MODERATE_KIDNEY_EXCLUDED = ("oxide", "hydroxide", "sulfate")
CONTRACT_UNKNOWN_KIDNEY_EXCLUDED = ("oxide", "hydroxide", "sulfate")
CONTRACT_UNKNOWN_KIDNEY_FROM_AGE = 65
# Safety rule 8: forms that are not daily supplements, and when they may be recommended.
CONTRACT_OCCASIONAL_FORMS = ("sulfate",)
CONTRACT_OCCASIONAL_GOAL = "constipation_relief"
CONTRACT_OCCASIONAL_MIN_AGE = 12

LOCALES = ("en", "de")
DEFAULT_LOCALE = "en"


def resolve_locale(requested: str) -> str:
    """The locale answered in: the requested one when there are texts for it, else English."""
    primary = requested.replace("_", "-").split("-")[0].lower()
    return primary if primary in LOCALES else DEFAULT_LOCALE
