"""The scoring loop, compiled with numba: scores, safety masks, ranking, caveats and doses
for every profile, in one pass over the profiles.

Why compiled: NumPy costs a few microseconds per array operation whatever the array's size,
and scoring took some forty of them, most of one answer's engine time; one compiled call does
the same work for one profile in a few microseconds, and a million profiles in a fraction of
a second, through the same code. What each table means, and which rule of the contract it
carries, is documented where models/engine/scoring.py builds it from data/; this module only reads
the tables. ``cache=True`` keeps the machine code next to this file (or in
``NUMBA_CACHE_DIR``), so a process compiles once per machine, not once per start."""

from __future__ import annotations

import math
import os
import stat
import tempfile
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
from numba.core.caching import FunctionCache

PRIVATE_CACHE_PREFIX = "formwise-numba-"


def _cache_probe():
    """A function of this file, for asking numba where this file's cache would go."""


def _private_cache_dir() -> str:
    """A cache folder only this user can write: ``formwise-numba-<uid>`` in the system's
    temporary folder, or a fresh one when that name is taken by another user or is open to
    others (a cache holds machine code that the process would run)."""
    path = Path(tempfile.gettempdir()) / f"{PRIVATE_CACHE_PREFIX}{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        details = path.lstat()
        if (stat.S_ISDIR(details.st_mode) and details.st_uid == os.getuid()
                and not details.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return str(path)
    except OSError:
        pass
    return tempfile.mkdtemp(prefix=PRIVATE_CACHE_PREFIX)


def use_writable_cache() -> None:
    """numba refuses to compile a ``cache=True`` function when it finds nowhere to write
    the cache: not beside this file (a read-only install) and not in the user's home (none,
    or read-only, as for a service account in a locked-down container). Then, and only
    when the operator has not chosen a folder (``NUMBA_CACHE_DIR``), the cache goes to a
    private folder in the temporary folder instead of the import failing."""
    if numba.config.CACHE_DIR:
        return
    try:
        FunctionCache(_cache_probe)
    except RuntimeError:
        numba.config.CACHE_DIR = _private_cache_dir()


use_writable_cache()  # before the decorators below look for their cache


class ScoringTables(NamedTuple):
    """Everything the loop reads besides the profiles (Engine._scoring_tables builds it)."""

    band_upper_edges: np.ndarray  # float64 (B,): a known eGFR's band is the first edge above it
    dialysis_band: int  # the band row of a profile on dialysis; row B is "eGFR unknown"
    ages: int  # rows of the per-age tables (0..120)
    key_utility: np.ndarray  # float64 (keys, F): utility of everything but the words
    word_products: np.ndarray  # float64 (words, F + 2): utility, then the GI triggers
    key_exclusion_bits: np.ndarray  # uint8 (keys, F)
    key_caveat_bits: np.ndarray  # int64 (keys,): the answer caveats the key raises, bit a = caveat a
    word_caveat_bits: np.ndarray  # int64 (words,): the answer caveats each word raises
    key_caution: np.ndarray  # bool (keys, F)
    key_kidney_moderate: np.ndarray  # bool (keys,)
    laxative: np.ndarray  # bool (F,)
    avoided_bit: int  # exclusion bit of a form the user avoids
    gi_exclusion_bits: np.ndarray  # uint8 (F,): bits set when the profile's gut excludes laxatives
    worsens_diarrhea_bit: int  # exclusion bit when only laxative forms are left for a sensitive gut
    class_severity: np.ndarray  # int8 (interaction classes,)
    class_caveat_column: np.ndarray  # int64 (interaction classes,): an answer caveat the class raises, -1 none
    caveat_severity: np.ndarray  # int8 (caveats,)
    caveat_escalated_severity: np.ndarray  # int8 (caveats,): severity from caveat_escalated_from_age on, -1 none
    caveat_escalated_from_age: np.ndarray  # int64 (caveats,)
    caveat_exclusion_bits: np.ndarray  # int64 (caveats,): the exclusion bit a critical caveat sets on every form
    interaction_column: int
    unrecognized_column: int
    serum_thresholds: np.ndarray  # float64 (2,): serum magnesium above [0] and below [1] raise these caveats
    serum_high_column: int
    serum_low_column: int
    occasional: np.ndarray  # bool (F,): forms that are not daily supplements (rule 8)
    occasional_goal_word: int  # the word (row of word_products) that allows them, -1 none
    not_for_daily_use_bit: int
    elemental_max_by_age: np.ndarray  # float64 (ages, F), NaN where there is no dose
    elemental_min_by_age: np.ndarray  # float64 (ages, F)
    start_dose_by_age: np.ndarray  # float64 (ages,)
    unit_elemental_mg: np.ndarray  # float64 (F,)
    allowed_units_by_setting: np.ndarray  # int (settings,): max_units_per_day as given -> units allowed
    burden_by_age_and_units: np.ndarray  # bool (ages, units, F)
    static_form_caveat_bits: np.ndarray  # int64 (F,): the form caveats that depend on the form alone, as bits
    worsens_diarrhea_column: int  # form-caveat columns set per profile
    high_unit_burden_column: int
    worsens_diarrhea_warns: bool  # whether those two form caveats call for caution
    high_unit_burden_warns: bool
    age_factors: np.ndarray  # bool (ages, 2): (child, older adult), the age's profile factors
    below_share: np.ndarray  # float64 (1,): the share of a form's score one ranked just below it gets (rules 5, 8)


class PackedTables(NamedTuple):
    """ScoringTables as four arrays, which is how the loop takes them: numba checks the type
    of every argument on every call, and a tuple of some forty tables cost more to check than the
    loop took to score one profile (about 13 us with cold caches; three plain arrays, 3.6 us).
    ``pack_tables`` makes it; the loop's first step, ``unpack_tables``, gives the named
    tables back as views."""

    floats: np.ndarray  # float64 (1-D): the float64 tables, one after the other
    small: np.ndarray  # uint8 (1-D): the uint8 and bool tables
    ints: np.ndarray  # int64 (1-D): the integer tables and every scalar
    layout: np.ndarray  # int64 (fields, 4): per ScoringTables field, its offset and shape (unused axes 0)


def pack_tables(tables: ScoringTables) -> PackedTables:
    """Each table goes to the buffer of its kind: float64 arrays to ``floats``, bool and uint8
    arrays to ``small``, integer arrays and all scalars (bool ones as 0/1) to ``ints``."""
    parts: dict[str, list[np.ndarray]] = {"floats": [], "small": [], "ints": []}
    sizes = dict.fromkeys(parts, 0)
    layout = np.zeros((len(ScoringTables._fields), 4), dtype=np.int64)
    for slot, value in enumerate(tables):
        array = np.asarray(value)
        if array.ndim == 0:
            buffer, array = "ints", array.astype(np.int64).reshape(1)
        elif array.dtype == np.float64:
            buffer = "floats"
        elif array.dtype in (np.bool_, np.uint8):
            buffer, array = "small", array.view(np.uint8) if array.dtype == np.bool_ else array
        elif array.dtype.kind == "i":
            buffer, array = "ints", array.astype(np.int64)
        else:
            raise TypeError(f"table {ScoringTables._fields[slot]} has dtype {array.dtype}, which no buffer holds")
        layout[slot, 0] = sizes[buffer]
        layout[slot, 1: 1 + array.ndim] = array.shape
        parts[buffer].append(np.ascontiguousarray(array).ravel())
        sizes[buffer] += array.size
    joined = {name: np.concatenate(arrays) if arrays else np.empty(0) for name, arrays in parts.items()}
    return PackedTables(joined["floats"].astype(np.float64), joined["small"].astype(np.uint8),
                        joined["ints"].astype(np.int64), layout)


# The three view helpers are inlined where they are used: compiled as functions of their
# own (one per buffer type), they had made the first start 5 s longer (13.7 against 8.2 s).
@numba.njit(cache=True, nogil=True, inline="always")
def _1d(buffer, layout, slot):
    start = layout[slot, 0]
    return buffer[start: start + layout[slot, 1]]


@numba.njit(cache=True, nogil=True, inline="always")
def _2d(buffer, layout, slot):
    start, rows, columns = layout[slot, 0], layout[slot, 1], layout[slot, 2]
    return buffer[start: start + rows * columns].reshape((rows, columns))


@numba.njit(cache=True, nogil=True, inline="always")
def _3d(buffer, layout, slot):
    start, rows, columns, depth = layout[slot, 0], layout[slot, 1], layout[slot, 2], layout[slot, 3]
    return buffer[start: start + rows * columns * depth].reshape((rows, columns, depth))


@numba.njit(cache=True, nogil=True)
def unpack_tables(floats, small, ints, layout):
    """The named tables, as views into the buffers ``pack_tables`` filled: one line per
    ScoringTables field, in its order (tests/models/engine/test_kernel_tables.py checks each
    comes back with its values, shape and dtype)."""
    return ScoringTables(
        _1d(floats, layout, 0),  # band_upper_edges
        ints[layout[1, 0]],  # dialysis_band
        ints[layout[2, 0]],  # ages
        _2d(floats, layout, 3),  # key_utility
        _2d(floats, layout, 4),  # word_products
        _2d(small, layout, 5),  # key_exclusion_bits
        _1d(ints, layout, 6),  # key_caveat_bits
        _1d(ints, layout, 7),  # word_caveat_bits
        _2d(small, layout, 8).view(np.bool_),  # key_caution
        _1d(small, layout, 9).view(np.bool_),  # key_kidney_moderate
        _1d(small, layout, 10).view(np.bool_),  # laxative
        ints[layout[11, 0]],  # avoided_bit
        _1d(small, layout, 12),  # gi_exclusion_bits
        ints[layout[13, 0]],  # worsens_diarrhea_bit
        _1d(ints, layout, 14),  # class_severity
        _1d(ints, layout, 15),  # class_caveat_column
        _1d(ints, layout, 16),  # caveat_severity
        _1d(ints, layout, 17),  # caveat_escalated_severity
        _1d(ints, layout, 18),  # caveat_escalated_from_age
        _1d(ints, layout, 19),  # caveat_exclusion_bits
        ints[layout[20, 0]],  # interaction_column
        ints[layout[21, 0]],  # unrecognized_column
        _1d(floats, layout, 22),  # serum_thresholds
        ints[layout[23, 0]],  # serum_high_column
        ints[layout[24, 0]],  # serum_low_column
        _1d(small, layout, 25).view(np.bool_),  # occasional
        ints[layout[26, 0]],  # occasional_goal_word
        ints[layout[27, 0]],  # not_for_daily_use_bit
        _2d(floats, layout, 28),  # elemental_max_by_age
        _2d(floats, layout, 29),  # elemental_min_by_age
        _1d(floats, layout, 30),  # start_dose_by_age
        _1d(floats, layout, 31),  # unit_elemental_mg
        _1d(ints, layout, 32),  # allowed_units_by_setting
        _3d(small, layout, 33).view(np.bool_),  # burden_by_age_and_units
        _1d(ints, layout, 34),  # static_form_caveat_bits
        ints[layout[35, 0]],  # worsens_diarrhea_column
        ints[layout[36, 0]],  # high_unit_burden_column
        ints[layout[37, 0]] != 0,  # worsens_diarrhea_warns
        ints[layout[38, 0]] != 0,  # high_unit_burden_warns
        _2d(small, layout, 39).view(np.bool_),  # age_factors
        _1d(floats, layout, 40),  # below_share
    )


# The profiles, as formwise.models.engine.features.ProfileBatch holds them: columns of its whole numbers
# (int16), of its measurements (float64, NaN when unknown), and the first columns of its
# flags (bool), which then hold the profile's words (conditions, then goals: the rows of
# ``word_products``), its interaction classes and the forms it avoids.
AGE, SEX, MAX_UNITS = range(3)
EGFR, SERUM_MAGNESIUM = range(2)
MEASUREMENTS = 2
PREGNANT, BREASTFEEDING, DIALYSIS, UNRECOGNIZED = range(4)
WORDS = 4

# The loop's per-form outputs, as planes of one float64 array (planes, profiles, forms):
# each plane is a contiguous (profiles x forms) matrix for the batch paths, and one
# profile's values for every form come out of it in one call (models/engine/answers.py).
SCORE, EXCLUSION_BITS, CAUTION, ELEMENTAL_MIN, ELEMENTAL_MAX, FORM_CAVEAT_BITS = range(6)
FORM_PLANES = 6
# The loop's per-profile outputs, as columns of one int64 array (profiles, columns): these
# six, then the form positions best first (eligible ones lead). FEATURE_BITS holds the
# profile factors the weights act on (formwise.models.knowledge.base.FEATURE_NAMES), bit k for factor k:
# every factor is a yes/no fact about the profile. ESCALATED_CAVEAT_BITS marks the raised
# caveats that carry their higher severity at this age (ScoringTables.caveat_escalated_severity).
(ELIGIBLE_COUNT, INTERACTION_SEVERITY, MAX_SEVERITY, KIDNEY_MODERATE, CAVEAT_BITS, FEATURE_BITS,
 ESCALATED_CAVEAT_BITS) = range(7)
ORDER = 7
CRITICAL = 2  # the severity rank of "critical" (formwise.models.knowledge.vocabulary.SEVERITIES)


class ScoredArrays(NamedTuple):
    """What the loop returns: two arrays instead of a dozen, because handing each array
    back to Python costs about half a microsecond, and a dozen of them were most of the
    loop's own time for one profile. formwise.models.engine.scoring.ScoredBatch names their parts."""

    per_form: np.ndarray  # float64 (FORM_PLANES, n, F): SCORE ... FORM_CAVEAT_BITS
    per_profile: np.ndarray  # int64 (n, ORDER + F): ELIGIBLE_COUNT ... FEATURE_BITS, then ORDER


@numba.njit(cache=True, nogil=True)
def _minimum(a: float, b: float) -> float:
    """np.minimum for two numbers: NaN (no dose) wins."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return a if a <= b else b


@numba.njit(cache=True, nogil=True)
def score_profiles(whole_numbers, measurements, flags, floats, small, ints, layout):
    """The engine's arrays for n profiles (see formwise.models.engine.scoring.ScoredBatch for their meaning);
    the last four arguments are the PackedTables."""
    tables = unpack_tables(floats, small, ints, layout)
    n, n_forms = measurements.shape[0], tables.key_utility.shape[1]
    n_words, n_classes = tables.word_products.shape[0], tables.class_severity.shape[0]
    classes_start = WORDS + n_words
    forms_start = classes_start + n_classes
    if flags.shape[1] != forms_start + n_forms or flags.shape[0] != n or whole_numbers.shape[0] != n \
            or whole_numbers.shape[1] != 3 or measurements.shape[1] != MEASUREMENTS:
        raise ValueError("the profile batch was not made for this engine's vocabulary and forms")
    n_caveats = tables.caveat_severity.shape[0]
    n_bands = tables.band_upper_edges.shape[0]
    n_settings = tables.allowed_units_by_setting.shape[0]
    unknown_band = n_bands
    products = tables.word_products
    serum_high_above, serum_low_below = tables.serum_thresholds[0], tables.serum_thresholds[1]

    per_form = np.empty((FORM_PLANES, n, n_forms))
    per_profile = np.empty((n, ORDER + n_forms), dtype=np.int64)
    scores, order = per_form[SCORE], per_profile[:, ORDER:]
    bits = np.empty(n_forms, dtype=np.uint8)  # one profile's exclusion bits
    sums = np.empty(products.shape[1])  # one profile's word products
    sort_keys = np.empty(n_forms)

    for i in range(n):
        profile_age = whole_numbers[i, AGE]
        units_setting = whole_numbers[i, MAX_UNITS]
        if profile_age < 0 or profile_age >= tables.ages:
            raise IndexError("age outside the knowledge base's age tables")
        if units_setting < 0 or units_setting >= n_settings:
            raise IndexError("max_units_per_day outside the knowledge base's unit tables")
        egfr, serum_magnesium = measurements[i, EGFR], measurements[i, SERUM_MAGNESIUM]

        # ---- the profile key: kidney band, age, pregnancy, breastfeeding ---------------
        if flags[i, DIALYSIS]:
            band = tables.dialysis_band
        elif math.isnan(egfr):
            band = unknown_band
        else:  # a known eGFR (0..250) lies below the last edge, which the loader checks exceeds 250
            band = 0
            while band < n_bands and tables.band_upper_edges[band] <= egfr:
                band += 1
        key = ((band * tables.ages + profile_age) * 2 + flags[i, PREGNANT]) * 2 + flags[i, BREASTFEEDING]

        # ---- utility and score: the key's row plus the rows of the profile's words -------
        sums[:] = 0.0
        word_caveats = 0
        for w in range(n_words):
            if flags[i, WORDS + w]:
                sums += products[w]
                word_caveats |= tables.word_caveat_bits[w]
        gi_exclude = sums[n_forms] > 0
        gi_sensitive = sums[n_forms + 1] > 0
        for f in range(n_forms):
            utility = sums[f] + tables.key_utility[key, f]
            scores[i, f] = 1.0 / (np.exp(-utility) + 1.0)

        # ---- caveats: from the key, the words, the medicines and the serum level -------
        severity = np.int8(-1)
        class_caveats = 0
        for class_position in range(n_classes):
            if flags[i, classes_start + class_position]:
                if tables.class_severity[class_position] > severity:
                    severity = tables.class_severity[class_position]
                if tables.class_caveat_column[class_position] >= 0:
                    class_caveats |= 1 << tables.class_caveat_column[class_position]
        per_profile[i, INTERACTION_SEVERITY] = severity
        caveat_bits = tables.key_caveat_bits[key] | word_caveats | class_caveats
        if severity >= 0:
            caveat_bits |= 1 << tables.interaction_column
        if flags[i, UNRECOGNIZED]:
            caveat_bits |= 1 << tables.unrecognized_column
        if serum_magnesium > serum_high_above:  # False when unknown (NaN)
            caveat_bits |= 1 << tables.serum_high_column
        if serum_magnesium < serum_low_below:
            caveat_bits |= 1 << tables.serum_low_column
        highest = np.int8(-1)
        escalated_bits = 0
        critical_exclusion = 0
        for a in range(n_caveats):
            if not (caveat_bits >> a) & 1:
                continue
            if a == tables.interaction_column:
                caveat_level = severity
            else:
                caveat_level = tables.caveat_severity[a]
                if tables.caveat_escalated_severity[a] >= 0 and profile_age >= tables.caveat_escalated_from_age[a]:
                    caveat_level = tables.caveat_escalated_severity[a]
                    escalated_bits |= 1 << a
            if caveat_level > highest:
                highest = caveat_level
            if caveat_level == CRITICAL:  # rule 1: a critical caveat excludes every form
                critical_exclusion |= tables.caveat_exclusion_bits[a]
        per_profile[i, CAVEAT_BITS] = caveat_bits
        per_profile[i, ESCALATED_CAVEAT_BITS] = escalated_bits
        per_profile[i, MAX_SEVERITY] = highest
        per_profile[i, KIDNEY_MODERATE] = tables.key_kidney_moderate[key]
        per_profile[i, FEATURE_BITS] = _feature_bits(whole_numbers, flags, i, n_words, tables.key_kidney_moderate[key],
                                                     tables.age_factors)

        # ---- hard safety rules: masks applied after scoring ------------------------------
        occasional_allowed = tables.occasional_goal_word >= 0 and flags[i, WORDS + tables.occasional_goal_word]
        for f in range(n_forms):
            form_bits = tables.key_exclusion_bits[key, f] | critical_exclusion
            if flags[i, forms_start + f]:
                form_bits |= tables.avoided_bit
            if gi_exclude:
                form_bits |= tables.gi_exclusion_bits[f]
            if tables.occasional[f] and not occasional_allowed:  # rule 8 (the age limit is in the key)
                form_bits |= tables.not_for_daily_use_bit
            bits[f] = form_bits
        # Rule 5: with diarrhoea, IBS-D or a sensitive stomach no laxative form ranks first.
        # Eligible laxative forms are scaled (keeping their order) to score below the best
        # eligible non-laxative form; with none, they are excluded.
        if gi_sensitive:
            best_other, best_laxative = -np.inf, -np.inf
            for f in range(n_forms):
                if bits[f] == 0:
                    if tables.laxative[f]:
                        best_laxative = max(best_laxative, scores[i, f])
                    else:
                        best_other = max(best_other, scores[i, f])
            if best_laxative > -np.inf:
                if best_other == -np.inf:
                    for f in range(n_forms):
                        if bits[f] == 0 and tables.laxative[f]:
                            bits[f] |= tables.worsens_diarrhea_bit
                else:
                    factor = min(1.0, tables.below_share[0] * best_other / best_laxative)
                    for f in range(n_forms):
                        if bits[f] == 0 and tables.laxative[f]:
                            scores[i, f] *= factor
        # Rule 8: an occasional-use form (Epsom salt) ranks below every other eligible
        # laxative form: scaled under the lowest of them.
        occasional_eligible = False
        for f in range(n_forms):
            if bits[f] == 0 and tables.occasional[f]:
                occasional_eligible = True
        if occasional_eligible:  # most profiles have excluded it already
            lowest_laxative = np.inf
            for f in range(n_forms):
                if bits[f] == 0 and tables.laxative[f] and not tables.occasional[f]:
                    lowest_laxative = min(lowest_laxative, scores[i, f])
            if lowest_laxative < np.inf:
                for f in range(n_forms):
                    if bits[f] == 0 and tables.occasional[f] and scores[i, f] > 0.0:
                        scores[i, f] *= min(1.0, tables.below_share[0] * lowest_laxative / scores[i, f])

        # ---- ranking: eligible forms by score, best first; ties keep knowledge-base order --
        eligible = 0
        for f in range(n_forms):
            if bits[f] == 0:
                sort_keys[f] = -scores[i, f]
                eligible += 1
            else:
                sort_keys[f] = np.inf
            # insertion sort: stable, and the fastest for a dozen forms
            position = f
            while position > 0 and sort_keys[order[i, position - 1]] > sort_keys[f]:
                order[i, position] = order[i, position - 1]
                position -= 1
            order[i, position] = f
        per_profile[i, ELIGIBLE_COUNT] = eligible
        for f in range(n_forms):
            per_form[EXCLUSION_BITS, i, f] = bits[f]

        # ---- dose, capped by the age's supplemental upper limit, and per-form caveats ------
        allowed_units = tables.allowed_units_by_setting[units_setting]
        for f in range(n_forms):
            most = tables.elemental_max_by_age[profile_age, f]
            least = tables.elemental_min_by_age[profile_age, f]
            if units_setting > 0:
                most = np.floor(_minimum(most, units_setting * tables.unit_elemental_mg[f]))
                least = _minimum(tables.start_dose_by_age[profile_age], most)
            per_form[ELEMENTAL_MAX, i, f] = most
            per_form[ELEMENTAL_MIN, i, f] = least
            worsens = gi_sensitive and tables.laxative[f]
            burden = tables.burden_by_age_and_units[profile_age, allowed_units, f]
            caveat_flags = tables.static_form_caveat_bits[f]
            if worsens:
                caveat_flags |= 1 << tables.worsens_diarrhea_column
            if burden:
                caveat_flags |= 1 << tables.high_unit_burden_column
            per_form[FORM_CAVEAT_BITS, i, f] = caveat_flags
            per_form[CAUTION, i, f] = (tables.key_caution[key, f] or (tables.worsens_diarrhea_warns and worsens)
                                       or (tables.high_unit_burden_warns and burden))

    return ScoredArrays(per_form, per_profile)


@numba.njit(cache=True, nogil=True)
def _feature_bits(whole_numbers, flags, i, n_words, kidney_moderate, age_factors):
    """Profile ``i``'s factors (formwise.models.knowledge.base.FEATURE_NAMES) as bits, bit k for factor k:
    always, the words (conditions, then goals), then the derived factors (kidney function
    moderately reduced, pregnant or breastfeeding, child, older adult)."""
    profile_age = whole_numbers[i, AGE]
    if profile_age < 0 or profile_age >= age_factors.shape[0]:
        raise IndexError("age outside the age-factor table")
    bits = 1
    for w in range(n_words):
        if flags[i, WORDS + w]:
            bits |= 1 << (1 + w)
    derived = 1 + n_words
    if kidney_moderate:
        bits |= 1 << derived
    if flags[i, PREGNANT] or flags[i, BREASTFEEDING]:
        bits |= 1 << (derived + 1)
    if age_factors[profile_age, 0]:
        bits |= 1 << (derived + 2)
    if age_factors[profile_age, 1]:
        bits |= 1 << (derived + 3)
    return bits


@numba.njit(cache=True, nogil=True)
def fill_features(whole_numbers, flags, n_words, kidney_moderate, age_factors, out):
    """The feature matrix into ``out`` (n x len(formwise.models.knowledge.base.FEATURE_NAMES)), 1.0 where a
    factor applies: what the scoring loop records as FEATURE_BITS, for profiles that are not
    scored (the engine's key tables are built from it, before there is anything to score with)."""
    for i in range(whole_numbers.shape[0]):
        bits = _feature_bits(whole_numbers, flags, i, n_words, kidney_moderate[i], age_factors)
        for k in range(out.shape[1]):
            out[i, k] = 1.0 if bits >> k & 1 else 0.0
