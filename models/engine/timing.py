"""When in the day to take magnesium so that it keeps every separation window of the
person's other medicines (hours before and after magnesium, from interactions.csv).

The day is a grid of 1,440 minutes. Each scheduled dose of an interacting medicine blocks
the minutes in which magnesium would come too soon after it (``before_magnesium_h``) or too
soon before it (``after_magnesium_h``), counting round the clock because the doses repeat
every day. What is left inside the waking hours is where magnesium may go; the suggestion is
the middle of the longest such stretch, the time with the most room on either side, or of the
longest stretch in the evening when the person takes magnesium for sleep. A medicine whose
label advises against magnesium at any time (management ``avoid``) leaves no time at all."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.base import KnowledgeBase, KnowledgeBaseError, hours_value
from formwise.models.knowledge.medicine_rows import normalize_medicine_name

MINUTES_PER_DAY = 24 * 60
DEFAULT_WAKING_HOURS = ("07:00", "22:00")
# Suggested times are rounded to this many minutes when the rounded time is still allowed.
SUGGESTION_STEP_MINUTES = 15
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# Texts the plan is written with (data/supplements/<supplement>/texts.csv).
TIMING_TEXT_KEYS = ("timing_suggested", "timing_free", "timing_impossible", "timing_unscheduled",
                    "timing_unrecognized", "timing_avoid", "timing_evening")


class TimingError(ValueError):
    """A clock time is not HH:MM (00:00 to 23:59)."""


def parse_clock(text: str) -> int:
    """Minutes after midnight for "HH:MM"."""
    match = _CLOCK.match(text) if isinstance(text, str) else None
    if not match:
        raise TimingError(f"'{text}' is not a time of day as HH:MM (00:00 to 23:59)")
    return int(match.group(1)) * 60 + int(match.group(2))


def format_clock(minutes: int) -> str:
    minutes = int(minutes) % MINUTES_PER_DAY
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class ScheduledMedicine:
    """One medicine with its daily times and the widest separation its ingredients need;
    ``avoid`` when any ingredient's label advises against magnesium at any time."""

    medication: str
    drug_classes: tuple[str, ...]
    times: tuple[int, ...]  # minutes after midnight
    before_magnesium_h: float
    after_magnesium_h: float
    avoid: bool = False

    @property
    def needs_separation(self) -> bool:
        return self.avoid or self.before_magnesium_h > 0 or self.after_magnesium_h > 0


def blocked_minutes(medicines: list[ScheduledMedicine]) -> np.ndarray:
    """bool (medicines, 1440): the minutes at which magnesium would break each medicine's
    separation window. Computed for every dose and minute at once."""
    if not medicines:
        return np.zeros((0, MINUTES_PER_DAY), dtype=bool)
    owner = np.concatenate([np.full(len(m.times), i) for i, m in enumerate(medicines)])
    doses = np.concatenate([np.asarray(m.times, dtype=np.int64) for m in medicines])
    before = np.array([m.before_magnesium_h * 60 for m in medicines])[owner]
    after = np.array([m.after_magnesium_h * 60 for m in medicines])[owner]
    grid = np.arange(MINUTES_PER_DAY)
    since_dose = (grid[None, :] - doses[:, None]) % MINUTES_PER_DAY  # magnesium this long after the dose
    until_dose = (doses[:, None] - grid[None, :]) % MINUTES_PER_DAY  # magnesium this long before the dose
    per_dose = (since_dose < before[:, None]) | (until_dose < after[:, None])
    blocked = np.zeros((len(medicines), MINUTES_PER_DAY), dtype=bool)
    np.logical_or.at(blocked, owner, per_dose)
    return blocked


def waking_minutes(start: int, end: int) -> np.ndarray:
    """The minutes from ``start`` to ``end`` inclusive, in order; past midnight when end < start."""
    length = (end - start) % MINUTES_PER_DAY
    if length == 0:
        length = MINUTES_PER_DAY - 1
    return (start + np.arange(length + 1)) % MINUTES_PER_DAY


def allowed_windows(allowed_in_order: np.ndarray, minutes_in_order: np.ndarray) -> list[tuple[int, int]]:
    """Runs of allowed minutes along the waking hours, as (first, last) minute pairs."""
    padded = np.concatenate([[False], allowed_in_order, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(minutes_in_order[a]), int(minutes_in_order[b - 1])) for a, b in zip(edges[::2], edges[1::2],
                                                                                       strict=True)]


def suggest_time(windows: list[tuple[int, int]]) -> int:
    """The middle of the longest window (the earliest of equals), rounded to the quarter
    hour when that stays inside the window."""
    def length(window):
        return (window[1] - window[0]) % MINUTES_PER_DAY

    first, last = max(windows, key=length)  # max keeps the first of equal lengths
    middle = (first + length((first, last)) // 2) % MINUTES_PER_DAY
    rounded = int(round(middle / SUGGESTION_STEP_MINUTES) * SUGGESTION_STEP_MINUTES) % MINUTES_PER_DAY
    inside = (rounded - first) % MINUTES_PER_DAY <= length((first, last))
    return rounded if inside else middle


class TimingPlanner:
    """Matches a schedule to the recognised medicines and plans magnesium around them."""

    def __init__(self, knowledge_base: KnowledgeBase, medicine_index):
        self.kb = knowledge_base
        self.medicines = medicine_index
        # A batch shares one schedule and repeats the same few medicine lists: plan each once.
        self._cached_plan = lru_cache(maxsize=1024)(self._plan)
        for key in TIMING_TEXT_KEYS:
            if key not in knowledge_base.texts:
                raise KnowledgeBaseError("texts.csv", None, "key", f"no text for '{key}'")

    def _ingredients(self, name: str) -> tuple[str, ...] | None:
        resolved = self.medicines.resolve(name)
        if resolved is None:
            return None
        return tuple(sorted({self.medicines.components[c][0] for c in resolved.components}))

    def scheduled_medicines(self, recognized: list[tuple[str, tuple[int, ...]]], schedule: dict[str, list[str]]):
        """(scheduled medicines, recognised medicines that need separation but have no time,
        schedule entries that name no known medicine). A schedule entry matches a medicine
        of the profile by its typed name or by the same ingredients ("Synthroid" and
        "levothyroxine"); an entry for a known medicine missing from the profile still counts."""
        scheduled: list[ScheduledMedicine] = []
        unrecognized: list[str] = []
        matched_profile_names: set[str] = set()
        for entry, times in schedule.items():
            key = normalize_medicine_name(entry)
            ingredients = self._ingredients(entry)
            components: list[int] = []
            for name, parts in recognized:
                if normalize_medicine_name(name) == key or (ingredients and self._ingredients(name) == ingredients):
                    components.extend(parts)
                    matched_profile_names.add(name)
            if not components:
                resolved = self.medicines.resolve(entry)
                if resolved is None:
                    unrecognized.append(entry)
                    continue
                components.extend(resolved.components)
            scheduled.append(self._scheduled(entry, components, times))
        unscheduled = []
        for name, parts in recognized:
            if name in matched_profile_names or name in unscheduled:
                continue
            if self._scheduled(name, list(parts), []).needs_separation:
                unscheduled.append(name)
        return scheduled, unscheduled, unrecognized

    def _scheduled(self, name: str, components: list[int], times: list[str]) -> ScheduledMedicine:
        """The medicine's ingredients' own figures: the widest gap any of them asks for."""
        drug_classes = tuple(dict.fromkeys(vocab.INTERACTION_CLASSES[self.medicines.component_class[c]]
                                           for c in components))
        interactions = [self.medicines.component_interaction[c] for c in dict.fromkeys(components)]
        return ScheduledMedicine(
            medication=name,
            drug_classes=drug_classes,
            times=tuple(sorted({parse_clock(t) for t in times})),
            before_magnesium_h=max(i.before_magnesium_h for i in interactions),
            after_magnesium_h=max(i.after_magnesium_h for i in interactions),
            avoid=any(i.management == "avoid" for i in interactions),
        )

    def plan(self, recognized: list[tuple[str, tuple[int, ...]]], schedule: dict[str, list[str]],
             waking_hours: dict | None, locale: str, evening: bool = False) -> dict:
        """The ``timing`` object of an answer (see README, "Timing plan"); ``evening``: the
        person takes magnesium for sleep, so an allowed evening time is suggested first."""
        waking = waking_hours or {}
        key = (tuple((name, tuple(components)) for name, components in recognized),
               tuple((name, tuple(times)) for name, times in schedule.items()),
               waking.get("start", DEFAULT_WAKING_HOURS[0]), waking.get("end", DEFAULT_WAKING_HOURS[1]), locale,
               evening)
        return copy.deepcopy(self._cached_plan(*key))

    def _plan(self, recognized: tuple, schedule: tuple, start_text: str, end_text: str, locale: str,
              evening: bool) -> dict:
        start, end = parse_clock(start_text), parse_clock(end_text)
        scheduled, unscheduled, unrecognized = self.scheduled_medicines(list(recognized), dict(schedule))
        # A medicine to avoid magnesium with, scheduled or not, leaves no time: its label
        # advises against taking them together and staggered alike.
        avoided = list(dict.fromkeys([m.medication for m in scheduled if m.avoid]
                                     + [name for name in unscheduled
                                        if self._scheduled(name, list(dict(recognized)[name]), []).avoid]))
        unscheduled = [name for name in unscheduled if name not in avoided]
        constraining = [m for m in scheduled if m.needs_separation and m.times and not m.avoid]
        blocked = blocked_minutes(constraining)
        day = waking_minutes(start, end)
        allowed = ~blocked[:, day].any(axis=0) & (not avoided)
        windows = allowed_windows(allowed, day)
        evening_windows = self._evening(windows, start, end) if evening else []
        suggested = [suggest_time(evening_windows or windows)] if windows else []
        conflicting = [m.medication for m, row in zip(constraining, blocked[:, day], strict=True) if row.any()]

        texts = []
        window_text = ", ".join(format_clock(a) if a == b else f"{format_clock(a)}–{format_clock(b)}"
                                for a, b in windows)
        if avoided:
            texts.append(self._text("timing_avoid", locale, medicines=", ".join(avoided)))
        elif not windows:
            texts.append(self._text("timing_impossible", locale, start=format_clock(start), end=format_clock(end),
                                    medicines=", ".join(conflicting)))
        elif conflicting:
            texts.append(self._text("timing_suggested", locale, time=format_clock(suggested[0]),
                                    windows=window_text, medicines=", ".join(conflicting)))
        else:
            texts.append(self._text("timing_free", locale, time=format_clock(suggested[0]), windows=window_text))
        if evening_windows and suggested:
            texts.append(self._text("timing_evening", locale, time=format_clock(suggested[0])))
        if unscheduled:
            texts.append(self._text("timing_unscheduled", locale, medicines=", ".join(unscheduled)))
        if unrecognized:
            texts.append(self._text("timing_unrecognized", locale, medicines=", ".join(unrecognized)))

        return {
            "possible": bool(windows),
            "suggested_times": [format_clock(t) for t in suggested],
            "allowed_windows": [{"start": format_clock(a), "end": format_clock(b)} for a, b in windows],
            "waking_hours": {"start": format_clock(start), "end": format_clock(end)},
            "medications": [
                {"medication": m.medication, "drug_classes": list(m.drug_classes),
                 "times": [format_clock(t) for t in m.times],
                 "management": "avoid" if m.avoid else ("separate" if m.needs_separation else "monitor"),
                 "separation_hours": None if m.avoid else {"before_magnesium": hours_value(m.before_magnesium_h),
                                                           "after_magnesium": hours_value(m.after_magnesium_h)}}
                for m in scheduled
            ],
            "conflicting_medications": (avoided or conflicting) if not windows else [],
            "unscheduled_medications": unscheduled,
            "unrecognized_schedule_entries": unrecognized,
            "text": " ".join(texts),
        }

    def _evening(self, windows: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
        """The parts of the allowed windows from the evening's start (rules.toml) to the end of
        the waking hours."""
        evening_start = parse_clock(self.kb.rules["timing"]["evening_from"])
        position = {minute: i for i, minute in enumerate(waking_minutes(start, end).tolist())}
        if evening_start not in position:
            return []
        first_evening = position[evening_start]
        parts = []
        for first, last in windows:
            if position[last] < first_evening:
                continue
            parts.append((first if position[first] >= first_evening else evening_start, last))
        return parts

    def _text(self, key: str, locale: str, **values) -> str:
        texts = self.kb.texts[key]
        return (texts.get(locale) or texts[vocab.DEFAULT_LOCALE]).format(**values)
