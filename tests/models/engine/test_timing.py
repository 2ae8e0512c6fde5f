"""The timing plan: when magnesium keeps every separation window of the scheduled medicines."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formwise.models.engine.timing import (
    MINUTES_PER_DAY,
    ScheduledMedicine,
    TimingError,
    blocked_minutes,
    format_clock,
    parse_clock,
)
from formwise.models.knowledge.loading import default_knowledge_base
from formwise.models.recommender import Recommender

KB = default_knowledge_base()
RECOMMENDER = Recommender(KB)


def plan(medications, schedule, waking_hours=None, locale="en"):
    answer = RECOMMENDER.recommend([{"age": 50, "medications": medications}], locale=locale, schedule=schedule,
                                   waking_hours=waking_hours)[0]
    return answer["timing"]


def separation_ok(magnesium: int, dose: int, before_h: float, after_h: float) -> bool:
    """The rule written out directly, one minute and one daily dose at a time."""
    since_dose = (magnesium - dose) % MINUTES_PER_DAY
    until_dose = (dose - magnesium) % MINUTES_PER_DAY
    return since_dose >= before_h * 60 and until_dose >= after_h * 60


def test_clock_times_round_trip_and_bad_ones_are_refused():
    assert parse_clock("00:00") == 0 and parse_clock("23:59") == 1439 and parse_clock("07:30") == 450
    assert format_clock(450) == "07:30" and format_clock(1440 + 61) == "01:01"
    for bad in ("24:00", "7:30", "07:60", "", None, "0730"):
        with pytest.raises(TimingError):
            parse_clock(bad)


def test_one_dose_blocks_the_window_before_and_after_it():
    doxycycline = ScheduledMedicine("doxycycline", ("tetracycline",), (parse_clock("08:00"),), 2, 4)
    blocked = blocked_minutes([doxycycline])[0]
    assert blocked[parse_clock("08:00")]  # not together
    assert blocked[parse_clock("09:59")] and not blocked[parse_clock("10:00")]  # antibiotic 2 h before
    assert blocked[parse_clock("04:01")] and not blocked[parse_clock("04:00")]  # antibiotic 4 h after
    assert blocked.sum() == 6 * 60 - 1  # 04:01 to 09:59


def test_windows_wrap_round_midnight():
    late = ScheduledMedicine("levothyroxine", ("levothyroxine",), (parse_clock("23:00"),), 4, 4)
    blocked = blocked_minutes([late])[0]
    assert blocked[parse_clock("01:00")] and blocked[parse_clock("19:30")]
    assert not blocked[parse_clock("03:00")] and not blocked[parse_clock("19:00")]


def test_no_separation_means_nothing_is_blocked():
    omeprazole = ScheduledMedicine("omeprazole", ("ppi",), (parse_clock("08:00"),), 0, 0)
    assert not blocked_minutes([omeprazole]).any()


def test_the_suggestion_respects_every_window_of_the_recognised_medicines():
    timing = plan(["doxycycline", "Synthroid"], {"doxycycline": ["08:00", "20:00"], "levothyroxine": "07:00"})
    assert timing["possible"] is True
    assert timing["unscheduled_medications"] == [] and timing["unrecognized_schedule_entries"] == []
    windows = {item["medication"]: item for item in timing["medications"]}
    # emc 2678 4.5: tetracycline and magnesium 2 to 3 hours or more apart (3 used); SYNTHROID: 4 hours.
    assert windows["doxycycline"]["separation_hours"] == {"before_magnesium": 3, "after_magnesium": 3}
    assert windows["levothyroxine"]["drug_classes"] == ["levothyroxine"]
    (suggested,) = timing["suggested_times"]
    assert suggested == "14:00"  # the middle of 11:00-17:00, the longest free stretch
    assert timing["allowed_windows"] == [{"start": "11:00", "end": "17:00"}]
    minute = parse_clock(suggested)
    assert separation_ok(minute, parse_clock("07:00"), 4, 4)
    assert all(separation_ok(minute, parse_clock(t), 3, 3) for t in ("08:00", "20:00"))
    assert "14:00" in timing["text"] and "doxycycline" in timing["text"]


def test_no_possible_time_is_said_plainly_with_the_conflicting_medicines_named():
    timing = plan(["levothyroxine", "doxycycline"], {"levothyroxine": "09:00", "doxycycline": "12:00"},
                  waking_hours={"start": "08:00", "end": "13:00"})
    assert timing["possible"] is False and timing["suggested_times"] == [] and timing["allowed_windows"] == []
    assert timing["conflicting_medications"] == ["levothyroxine", "doxycycline"]
    assert "08:00" in timing["text"] and "13:00" in timing["text"]
    assert "levothyroxine" in timing["text"] and "doxycycline" in timing["text"]


def test_medicines_without_times_and_unknown_schedule_entries_are_named_not_dropped():
    timing = plan(["ciprofloxacin", "omeprazole", "Synthroid"], {"levothyroxine": "07:00", "wonderpill": "09:00"})
    assert timing["unscheduled_medications"] == ["ciprofloxacin"]  # omeprazole needs no separation
    assert timing["unrecognized_schedule_entries"] == ["wonderpill"]
    assert "ciprofloxacin" in timing["text"] and "wonderpill" in timing["text"]


def test_medicines_that_need_no_separation_leave_the_day_free():
    timing = plan(["omeprazole"], {"omeprazole": "08:00"})
    assert timing["possible"] is True and timing["allowed_windows"] == [{"start": "07:00", "end": "22:00"}]
    assert timing["medications"][0]["separation_hours"] == {"before_magnesium": 0, "after_magnesium": 0}


def test_waking_hours_may_run_past_midnight():
    timing = plan(["levothyroxine"], {"levothyroxine": "20:00"}, waking_hours={"start": "18:00", "end": "02:00"})
    assert timing["waking_hours"] == {"start": "18:00", "end": "02:00"}
    assert timing["allowed_windows"] == [{"start": "00:00", "end": "02:00"}]


def test_the_plan_is_written_in_the_answer_language():
    english = plan(["levothyroxine"], {"levothyroxine": "07:00"})
    german = plan(["levothyroxine"], {"levothyroxine": "07:00"}, locale="de")
    assert german["suggested_times"] == english["suggested_times"]
    assert german["text"].startswith("Nehmen Sie Magnesium um") and english["text"].startswith("Take magnesium at")


def test_without_a_schedule_there_is_no_timing():
    assert "timing" not in RECOMMENDER.recommend([{"age": 50, "medications": ["doxycycline"]}])[0]


def label_hours(name: str) -> SimpleNamespace:
    """The widest hours data/ gives any ingredient of the medicine (its own label, else its class)."""
    medicines = RECOMMENDER.engine.medicines
    rows = [KB.interaction_for(*medicines.components[c]) for c in medicines.resolve(name).components]
    return SimpleNamespace(before_magnesium_h=max(r.before_magnesium_h for r in rows),
                           after_magnesium_h=max(r.after_magnesium_h for r in rows))


clock = st.integers(0, MINUTES_PER_DAY - 1).map(format_clock)
schedules = st.dictionaries(st.sampled_from(["doxycycline", "levothyroxine", "ciprofloxacin", "gabapentin",
                                             "alendronate", "dolutegravir"]),
                            st.lists(clock, min_size=1, max_size=3), max_size=4)


@settings(max_examples=60, deadline=None)
@given(schedule=schedules, start=clock, end=clock)
def test_every_allowed_minute_keeps_every_window(schedule, start, end):
    if start == end:
        return
    timing = plan(list(schedule), schedule, waking_hours={"start": start, "end": end})
    rules = [(parse_clock(t), label_hours(name)) for name, times in schedule.items() for t in times]
    waking_start, waking_length = parse_clock(start), (parse_clock(end) - parse_clock(start)) % MINUTES_PER_DAY
    free_minutes = [(waking_start + offset) % MINUTES_PER_DAY for offset in range(waking_length + 1)
                    if all(separation_ok((waking_start + offset) % MINUTES_PER_DAY, dose, i.before_magnesium_h,
                                         i.after_magnesium_h) for dose, i in rules)]
    window_minutes = sum((parse_clock(w["end"]) - parse_clock(w["start"])) % MINUTES_PER_DAY + 1
                         for w in timing["allowed_windows"])
    assert window_minutes == len(free_minutes)  # no free minute is missed
    for window in timing["allowed_windows"]:
        first, last = parse_clock(window["start"]), parse_clock(window["end"])
        for offset in range((last - first) % MINUTES_PER_DAY + 1):
            minute = (first + offset) % MINUTES_PER_DAY
            assert (minute - waking_start) % MINUTES_PER_DAY <= waking_length
            assert all(separation_ok(minute, dose, i.before_magnesium_h, i.after_magnesium_h) for dose, i in rules)
    for suggested in timing["suggested_times"]:
        minute = parse_clock(suggested)
        assert all(separation_ok(minute, dose, i.before_magnesium_h, i.after_magnesium_h) for dose, i in rules)
    assert timing["possible"] == bool(timing["allowed_windows"])
