"""When in the day to take magnesium so that it keeps every separation window of the
person's other medicines (hours before and after magnesium, from interactions.csv).

The day is a grid of 1,440 minutes. Each scheduled dose of an interacting medicine blocks
the minutes in which magnesium would come too soon after it (``before_magnesium_h``) or too
soon before it (``after_magnesium_h``), counting round the clock because the doses repeat
every day. What is left inside the waking hours is where magnesium may go; the suggestion is
the middle of the longest such stretch, the time with the most room on either side."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models import vocabulary as vocab
from models.knowledge import KnowledgeBase, KnowledgeBaseError, normalize_medicine_name

MINUTES_PER_DAY = 24 * 60
DEFAULT_WAKING_HOURS = ("07:00", "22:00")
# Suggested times are rounded to this many minutes when the rounded time is still allowed.
SUGGESTION_STEP_MINUTES = 15
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# Texts the plan is written with (data/supplements/<supplement>/texts.csv).
TIMING_TEXT_KEYS = ("timing_suggested", "timing_free", "timing_impossible", "timing_unscheduled",
                    "timing_unrecognized")


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
    """One medicine with its daily times and the widest separation its classes need."""

    medication: str
    drug_classes: tuple[str, ...]
    times: tuple[int, ...]  # minutes after midnight
    before_magnesium_h: float
    after_magnesium_h: float

    @property
    def needs_separation(self) -> bool:
        return self.before_magnesium_h > 0 or self.after_magnesium_h > 0


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
        medicine = self.medicines.lookup(name)
        return medicine.ingredients if medicine is not None else None

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
            classes: list[int] = []
            for name, positions in recognized:
                if normalize_medicine_name(name) == key or (ingredients and self._ingredients(name) == ingredients):
                    classes.extend(positions)
                    matched_profile_names.add(name)
            if not classes:
                positions = self.medicines.resolve(entry)
                if positions is None:
                    unrecognized.append(entry)
                    continue
                classes.extend(positions)
            scheduled.append(self._scheduled(entry, classes, times))
        unscheduled = []
        for name, positions in recognized:
            if name in matched_profile_names or name in unscheduled:
                continue
            if self._scheduled(name, list(positions), []).needs_separation:
                unscheduled.append(name)
        return scheduled, unscheduled, unrecognized

    def _scheduled(self, name: str, class_positions: list[int], times: list[str]) -> ScheduledMedicine:
        drug_classes = tuple(dict.fromkeys(vocab.INTERACTION_CLASSES[p] for p in class_positions))
        interactions = [self.kb.interactions[c] for c in drug_classes]
        return ScheduledMedicine(
            medication=name,
            drug_classes=drug_classes,
            times=tuple(sorted({parse_clock(t) for t in times})),
            before_magnesium_h=max(i.before_magnesium_h for i in interactions),
            after_magnesium_h=max(i.after_magnesium_h for i in interactions),
        )

    def plan(self, recognized: list[tuple[str, tuple[int, ...]]], schedule: dict[str, list[str]],
             waking_hours: dict | None, locale: str) -> dict:
        """The ``timing`` object of an answer (see README, "Timing plan")."""
        waking = waking_hours or {}
        key = (tuple((name, tuple(classes)) for name, classes in recognized),
               tuple((name, tuple(times)) for name, times in schedule.items()),
               waking.get("start", DEFAULT_WAKING_HOURS[0]), waking.get("end", DEFAULT_WAKING_HOURS[1]), locale)
        return copy.deepcopy(self._cached_plan(*key))

    def _plan(self, recognized: tuple, schedule: tuple, start_text: str, end_text: str, locale: str) -> dict:
        start, end = parse_clock(start_text), parse_clock(end_text)
        scheduled, unscheduled, unrecognized = self.scheduled_medicines(list(recognized), dict(schedule))
        constraining = [m for m in scheduled if m.needs_separation and m.times]
        blocked = blocked_minutes(constraining)
        day = waking_minutes(start, end)
        allowed = ~blocked[:, day].any(axis=0)
        windows = allowed_windows(allowed, day)
        suggested = [suggest_time(windows)] if windows else []
        conflicting = [m.medication for m, row in zip(constraining, blocked[:, day], strict=True) if row.any()]

        texts = []
        window_text = ", ".join(format_clock(a) if a == b else f"{format_clock(a)}–{format_clock(b)}"
                                for a, b in windows)
        if not windows:
            texts.append(self._text("timing_impossible", locale, start=format_clock(start), end=format_clock(end),
                                    medicines=", ".join(conflicting)))
        elif conflicting:
            texts.append(self._text("timing_suggested", locale, time=format_clock(suggested[0]),
                                    windows=window_text, medicines=", ".join(conflicting)))
        else:
            texts.append(self._text("timing_free", locale, time=format_clock(suggested[0]), windows=window_text))
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
                 "separation_hours": {"before_magnesium": m.before_magnesium_h,
                                      "after_magnesium": m.after_magnesium_h}}
                for m in scheduled
            ],
            "conflicting_medications": conflicting if not windows else [],
            "unscheduled_medications": unscheduled,
            "unrecognized_schedule_entries": unrecognized,
            "text": " ".join(texts),
        }

    def _text(self, key: str, locale: str, **values) -> str:
        texts = self.kb.texts[key]
        return (texts.get(locale) or texts[vocab.DEFAULT_LOCALE]).format(**values)
