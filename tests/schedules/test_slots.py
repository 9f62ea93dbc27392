"""The slot engine: when a schedule fires, in its own IANA zone, across DST changes (no database).

The property tests compare schedules.slots with an oracle built a different way: it turns wall times
into instants using only UTC -> local conversions (never zoneinfo's `fold` rules), so a mistake in
the engine's wall-time arithmetic cannot hide in the oracle too.
"""

import functools
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from schedules.models import WEEKDAYS, Schedule
from schedules.slots import next_slot, slots_between, upcoming_slots

ZONES = ["Asia/Shanghai", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago", "UTC"]
EARLIEST, LATEST = datetime(1986, 1, 1, tzinfo=UTC), datetime(2036, 1, 1, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def routine(**rule) -> Schedule:
    return Schedule(
        **{"kind": Schedule.Kind.ROUTINE, "period": Schedule.Period.WEEKLY, "timezone": "UTC", "title": "t", **rule}
    )


def daily(times: list[str], timezone: str) -> Schedule:
    return routine(weekdays=list(WEEKDAYS), times=times, timezone=timezone)


def monthly(days: list[int], times: list[str], timezone: str = "UTC") -> Schedule:
    return routine(period=Schedule.Period.MONTHLY, month_days=days, times=times, timezone=timezone)


def one_off(trigger_at: datetime) -> Schedule:
    return Schedule(kind=Schedule.Kind.ONE_OFF, trigger_at=trigger_at, times=[], weekdays=[], title="t")


def local_walls(slots, zone: str) -> list[str]:
    return [f"{s.astimezone(zoneinfo.ZoneInfo(zone)):%Y-%m-%d %H:%M %z}" for s in slots]


# --------------------------------------------------------------------------- the oracle


@functools.cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """Every instant between 1986 and 2036 at which the zone's UTC offset changes (to the minute)."""
    zone = zoneinfo.ZoneInfo(zone_name)
    found = []
    t, step = EARLIEST, timedelta(hours=6)
    while t < LATEST:
        if t.astimezone(zone).utcoffset() != (t + step).astimezone(zone).utcoffset():
            low, high = t, t + step  # the offset changes in (low, high]: bisect to the minute
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid == low:
                    break
                if low.astimezone(zone).utcoffset() == mid.astimezone(zone).utcoffset():
                    low = mid
                else:
                    high = mid
            found.append(high)
        t += step
    return tuple(found)


def instant_of(wall: datetime, zone: zoneinfo.ZoneInfo) -> tuple[datetime, bool]:
    """(the instant a naive wall time names, whether the clocks skipped it), from UTC -> local only.

    A repeated wall time names its first occurrence; a skipped one names the instant as far past the
    jump as the wall time was past its start (02:30 skipped from 02:00 to 03:00 -> 03:30).
    """
    offsets = {(wall.replace(tzinfo=UTC) + timedelta(hours=h)).astimezone(zone).utcoffset() for h in range(-36, 37, 3)}
    candidates = sorted(
        instant
        for offset in offsets
        if (instant := (wall - offset).replace(tzinfo=UTC)).astimezone(zone).replace(tzinfo=None) == wall
    )
    if candidates:
        return candidates[0], False
    assert len(offsets) == 2, f"the oracle expects one transition near {wall} in {zone}"
    return (wall - min(offsets)).replace(tzinfo=UTC), True  # clocks go forward: the smaller offset is "before"


def day_matches(schedule: Schedule, day: date) -> bool:
    if schedule.period == Schedule.Period.WEEKLY:
        return day.strftime("%A").lower() in schedule.weekdays
    return day.day in schedule.month_days


def hh_mm(text: str) -> tuple[int, int]:
    hours, minutes = text.split(":")
    return int(hours), int(minutes)


def expected_slots(schedule: Schedule, start: datetime, end: datetime) -> set[datetime]:
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    day = start.astimezone(zone).date() - timedelta(days=2)
    found = set()
    while day <= end.astimezone(zone).date() + timedelta(days=2):
        if day_matches(schedule, day):
            for text in schedule.times:
                instant, _ = instant_of(datetime(day.year, day.month, day.day, *hh_mm(text)), zone)
                if start < instant <= end:
                    found.add(instant)
        day += timedelta(days=1)
    return found


def matches_rule(schedule: Schedule, slot: datetime) -> bool:
    """The slot's local wall time in the schedule's zone is one of its times on a matching day (its first
    occurrence), or the DST-shifted instant of such a time that the clocks skipped."""
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    local = slot.astimezone(zone)
    on_a_rule_day = day_matches(schedule, local.date()) and (local.hour, local.minute) in map(hh_mm, schedule.times)
    if on_a_rule_day and instant_of(local.replace(tzinfo=None), zone) == (slot, False):
        return True
    for day in (local.date() - timedelta(days=1), local.date()):
        if not day_matches(schedule, day):
            continue
        for text in schedule.times:
            instant, skipped = instant_of(datetime(day.year, day.month, day.day, *hh_mm(text)), zone)
            if skipped and instant == slot:
                return True
    return False


def dst_case(schedule: Schedule, slot: datetime) -> str:
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    local = slot.astimezone(zone)
    for day in (local.date() - timedelta(days=1), local.date()):
        for text in schedule.times:
            if instant_of(datetime(day.year, day.month, day.day, *hh_mm(text)), zone) == (slot, True):
                return "slot of a skipped wall time"
    wall = local.replace(tzinfo=None)
    if any((slot + timedelta(minutes=m)).astimezone(zone).replace(tzinfo=None) == wall for m in (30, 60)):
        return "slot of a repeated wall time"
    return "ordinary slot"


# --------------------------------------------------------------------------- strategies

hours = st.one_of(st.sampled_from([0, 1, 2, 3, 23]), st.integers(0, 23))  # DST changes happen at night
minutes = st.one_of(st.sampled_from([0, 15, 30, 45, 59]), st.integers(0, 59))
times = st.builds(lambda h, m, padded: f"{h:02d}:{m:02d}" if padded else f"{h}:{m:02d}", hours, minutes, st.booleans())


@st.composite
def routines(draw, *, zone_name: str | None = None, aim_at: datetime | None = None) -> Schedule:
    """A weekly or monthly rule; aimed at a DST change, it also fires on that day within 90 minutes of it."""
    zone_name = zone_name or draw(st.sampled_from(ZONES))
    weekdays = set(draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7)))
    month_days = set(draw(st.lists(st.one_of(st.integers(28, 31), st.integers(1, 31)), min_size=1, max_size=6)))
    rule_times = draw(st.lists(times, min_size=1, max_size=4))
    if aim_at is not None:
        zone = zoneinfo.ZoneInfo(zone_name)
        # The wall clock as it read just before the change, then up to 90 minutes either side of it.
        wall = (aim_at - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None) + timedelta(minutes=1)
        wall += timedelta(minutes=draw(st.integers(-90, 90)))
        weekdays.add(WEEKDAYS[wall.weekday()])
        month_days.add(wall.day)
        rule_times.append(f"{wall:%H:%M}")
    return routine(
        period=draw(st.sampled_from([Schedule.Period.WEEKLY, Schedule.Period.MONTHLY])),
        weekdays=sorted(weekdays, key=WEEKDAYS.index),
        month_days=sorted(month_days),
        times=rule_times,
        timezone=zone_name,
    )


@st.composite
def anywhen(draw) -> datetime:
    naive = draw(st.datetimes(min_value=datetime(1986, 1, 2), max_value=datetime(2035, 12, 1)))
    if draw(st.booleans()):
        naive = naive.replace(second=0, microsecond=0)  # whole minutes land on slots exactly
    return naive.replace(tzinfo=UTC)


@st.composite
def schedules_and_windows(draw, max_days: int = 40):
    """(rule, start, end): mostly a rule aimed at one of its zone's DST changes and a window near it."""
    zone_name = draw(st.sampled_from(ZONES))
    changes = transitions(zone_name)
    aim = draw(st.sampled_from(changes)) if changes and draw(st.integers(0, 3)) else None
    schedule = draw(routines(zone_name=zone_name, aim_at=aim))
    start = draw(anywhen()) if aim is None else aim - timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
    length = draw(st.one_of(st.integers(0, 3 * 24 * 60), st.integers(0, max_days * 24 * 60)))
    return schedule, start, start + timedelta(minutes=length)


property_settings = settings(max_examples=300, deadline=None)


# --------------------------------------------------------------------------- properties


@property_settings
@given(schedules_and_windows())
def test_every_slot_lies_in_its_window_matches_the_rule_and_comes_once(case):
    schedule, start, end = case

    slots = list(slots_between(schedule, start, end))

    assert all(start < slot <= end for slot in slots)
    assert all(slot.utcoffset() == timedelta(0) for slot in slots)
    assert all(a < b for a, b in pairwise(slots)), "slots must strictly increase"
    assert [slot for slot in slots if not matches_rule(schedule, slot)] == []
    assert set(slots) == expected_slots(schedule, start, end), "no slot of the rule may be left out"
    for slot in slots:  # --hypothesis-show-statistics shows how often the DST cases came up
        event(dst_case(schedule, slot))


@property_settings
@given(schedules_and_windows(max_days=20), st.data())
def test_slots_of_adjacent_windows_add_up_to_the_slots_of_their_union(case, data):
    schedule, start, end = case
    whole = list(slots_between(schedule, start, end))
    if whole and data.draw(st.booleans()):
        middle = data.draw(st.sampled_from(whole))  # a border exactly on a slot: it belongs to the first window
    else:
        middle = start + (end - start) * data.draw(st.floats(0, 1))

    first, second = list(slots_between(schedule, start, middle)), list(slots_between(schedule, middle, end))

    assert first + second == whole


@property_settings
@given(schedules_and_windows())
def test_next_slot_is_after_its_argument_and_is_the_first_slot_of_the_window_after_it(case):
    schedule, after, _ = case

    following = next_slot(schedule, after)

    assert following is not None, "a routine rule always has a next slot"
    assert following > after
    # Day 31 recurs within 62 days: a window of 70 days after `after` holds at least one slot.
    assert following == next(iter(slots_between(schedule, after, after + timedelta(days=70))))


@property_settings
@given(schedules_and_windows(max_days=10))
def test_upcoming_slots_are_the_slots_after_now_up_to_until(case):
    schedule, start, end = case

    assert upcoming_slots(schedule, now=start, until=end) == list(slots_between(schedule, start, end))


def test_the_oracle_finds_the_dst_changes_of_each_zone():
    """Guards the property tests: their windows cluster around these instants."""
    assert utc(2026, 3, 8, 7) in transitions("America/New_York")
    assert utc(2026, 10, 25, 1) in transitions("Europe/Berlin")
    assert utc(2026, 10, 3, 15, 30) in transitions("Australia/Lord_Howe")
    assert utc(1988, 4, 16, 18) in transitions("Asia/Shanghai")
    assert [t for t in transitions("Asia/Shanghai") if t.year > 1991] == []
    assert transitions("UTC") == ()


# --------------------------------------------------------------------------- DST, explicitly


@pytest.mark.parametrize(
    ("zone", "day", "time", "expected", "why"),
    [
        ("America/New_York", date(2026, 3, 8), "02:30", utc(2026, 3, 8, 7, 30), "skipped: 03:30 EDT"),
        ("America/New_York", date(2026, 11, 1), "01:30", utc(2026, 11, 1, 5, 30), "repeated: first, 01:30 EDT"),
        ("Europe/Berlin", date(2026, 3, 29), "02:30", utc(2026, 3, 29, 1, 30), "skipped: 03:30 CEST"),
        ("Europe/Berlin", date(2026, 10, 25), "02:30", utc(2026, 10, 25, 0, 30), "repeated: first, 02:30 CEST"),
        ("Asia/Shanghai", date(1988, 4, 17), "02:30", utc(1988, 4, 16, 18, 30), "skipped: 03:30 CDT (+09)"),
        ("Asia/Shanghai", date(1988, 9, 11), "01:30", utc(1988, 9, 10, 16, 30), "repeated: first, 01:30 +09"),
        ("Asia/Shanghai", date(1990, 4, 15), "02:30", utc(1990, 4, 14, 18, 30), "skipped: 03:30 +09"),
        ("Asia/Shanghai", date(1990, 9, 16), "01:30", utc(1990, 9, 15, 16, 30), "repeated: first, 01:30 +09"),
        ("Australia/Lord_Howe", date(2026, 10, 4), "02:15", utc(2026, 10, 3, 15, 45), "skipped 30 min: 02:45"),
        ("Australia/Lord_Howe", date(2026, 4, 5), "01:45", utc(2026, 4, 4, 14, 45), "repeated: first, +11"),
    ],
)
def test_a_slot_on_a_dst_change_day_fires_once_at_the_documented_instant(zone, day, time, expected, why):
    schedule = daily([time], zone)
    local_midnight = datetime(day.year, day.month, day.day, tzinfo=zoneinfo.ZoneInfo(zone))

    slots = list(slots_between(schedule, local_midnight, local_midnight + timedelta(hours=24)))

    assert slots == [expected], why


def test_new_york_slots_around_both_changes_keep_their_wall_time_and_fire_once_each():
    schedule = routine(weekdays=["sunday"], times=["01:30", "02:30"], timezone="America/New_York")

    spring = list(slots_between(schedule, utc(2026, 3, 1), utc(2026, 3, 16)))
    autumn = list(slots_between(schedule, utc(2026, 10, 25), utc(2026, 11, 9)))

    assert local_walls(spring, "America/New_York") == [
        "2026-03-01 01:30 -0500",
        "2026-03-01 02:30 -0500",
        "2026-03-08 01:30 -0500",
        "2026-03-08 03:30 -0400",  # 02:30 did not exist that night
        "2026-03-15 01:30 -0400",
        "2026-03-15 02:30 -0400",
    ]
    assert local_walls(autumn, "America/New_York") == [
        "2026-10-25 01:30 -0400",
        "2026-10-25 02:30 -0400",
        "2026-11-01 01:30 -0400",  # the first 01:30 only, not the one an hour later
        "2026-11-01 02:30 -0500",
        "2026-11-08 01:30 -0500",
        "2026-11-08 02:30 -0500",
    ]


def test_a_skipped_time_and_the_time_it_becomes_fire_once_together():
    schedule = routine(weekdays=["sunday"], times=["02:30", "03:30"], timezone="Europe/Berlin")

    slots = list(slots_between(schedule, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)))

    assert slots == [utc(2026, 3, 29, 1, 30)]


def test_the_repeated_hour_fires_once_per_time_in_order():
    schedule = routine(weekdays=["sunday"], times=["01:15", "01:45"], timezone="America/New_York")

    slots = list(slots_between(schedule, utc(2026, 11, 1), utc(2026, 11, 2)))

    assert slots == [utc(2026, 11, 1, 5, 15), utc(2026, 11, 1, 5, 45)]


def test_shanghai_has_no_dst_now_so_a_daily_slot_is_exactly_24_hours_apart_all_year():
    schedule = daily(["09:30"], "Asia/Shanghai")

    slots = list(slots_between(schedule, utc(2025, 12, 31, 16), utc(2026, 12, 31, 16)))

    assert len(slots) == 365
    assert slots[0] == utc(2026, 1, 1, 1, 30)
    assert {b - a for a, b in pairwise(slots)} == {timedelta(hours=24)}


def test_shanghai_slots_followed_its_historical_dst_in_1988():
    schedule = daily(["09:30"], "Asia/Shanghai")

    slots = list(slots_between(schedule, utc(1987, 12, 31, 16), utc(1988, 12, 31, 16)))

    gaps = [b - a for a, b in pairwise(slots)]
    assert len(slots) == 366
    assert gaps.count(timedelta(hours=23)) == 1  # 17 April 1988, clocks forward
    assert gaps.count(timedelta(hours=25)) == 1  # 11 September 1988, clocks back
    assert {f"{s.astimezone(zoneinfo.ZoneInfo('Asia/Shanghai')):%H:%M}" for s in slots} == {"09:30"}


def test_lord_howe_slots_keep_their_wall_time_across_its_half_hour_changes():
    schedule = daily(["09:30"], "Australia/Lord_Howe")

    slots = list(slots_between(schedule, utc(2026, 1, 1), utc(2027, 1, 1)))
    gaps = [b - a for a, b in pairwise(slots)]

    assert gaps.count(timedelta(hours=24, minutes=30)) == 1  # April: back 30 minutes
    assert gaps.count(timedelta(hours=23, minutes=30)) == 1  # October: forward 30 minutes
    assert {f"{s.astimezone(zoneinfo.ZoneInfo('Australia/Lord_Howe')):%H:%M}" for s in slots} == {"09:30"}


# --------------------------------------------------------------------------- monthly days 29-31


def test_monthly_29_30_31_skips_february_of_a_common_year_without_moving_to_march():
    schedule = monthly([29, 30, 31], ["10:00"])

    slots = list(slots_between(schedule, utc(2027, 1, 15), utc(2027, 3, 31, 23)))

    assert [f"{s:%m-%d}" for s in slots] == ["01-29", "01-30", "01-31", "03-29", "03-30", "03-31"]


def test_monthly_29_30_31_fires_on_the_29th_of_february_in_a_leap_year():
    schedule = monthly([29, 30, 31], ["10:00"])

    slots = list(slots_between(schedule, utc(2028, 2, 1), utc(2028, 3, 2)))

    assert [f"{s:%m-%d}" for s in slots] == ["02-29"]


def test_monthly_31_skips_april_and_is_not_moved_to_may_1st():
    schedule = monthly([31], ["10:00"])

    slots = list(slots_between(schedule, utc(2026, 3, 1), utc(2026, 6, 1)))

    assert slots == [utc(2026, 3, 31, 10), utc(2026, 5, 31, 10)]


def test_monthly_30_next_slot_after_january_30th_is_march_30th():
    schedule = monthly([30], ["10:00"], timezone="Asia/Shanghai")

    assert next_slot(schedule, utc(2027, 1, 30, 2)) == utc(2027, 3, 30, 2)


def test_monthly_31_next_slot_reaches_two_months_ahead():
    schedule = monthly([31], ["23:59"], timezone="America/New_York")

    assert next_slot(schedule, utc(2027, 2, 1, 5)) == utc(2027, 4, 1, 3, 59)  # 31 March 23:59 EDT


# --------------------------------------------------------------------------- one-off


def test_one_off_window_before_its_time_holds_nothing_and_next_slot_is_its_time():
    schedule = one_off(utc(2026, 3, 10, 7))

    assert list(slots_between(schedule, utc(2026, 3, 9), utc(2026, 3, 10, 6, 59))) == []
    assert next_slot(schedule, utc(2026, 3, 1)) == utc(2026, 3, 10, 7)


def test_one_off_fires_in_the_window_that_ends_at_its_time_and_never_after():
    schedule = one_off(datetime(2026, 3, 10, 15, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai")))

    assert list(slots_between(schedule, utc(2026, 3, 10), utc(2026, 3, 10, 7))) == [utc(2026, 3, 10, 7)]
    assert list(slots_between(schedule, utc(2026, 3, 10, 7), utc(2027, 1, 1))) == []
    assert next_slot(schedule, utc(2026, 3, 10, 7)) is None
    assert next_slot(schedule, utc(2030, 1, 1)) is None


def test_one_off_slot_is_reported_in_utc():
    (slot,) = slots_between(
        one_off(datetime(2026, 3, 10, 15, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))),
        utc(2026, 3, 1),
        utc(2026, 4, 1),
    )

    assert slot.tzinfo == UTC


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)))
@settings(max_examples=100, deadline=None)
def test_next_slot_of_a_one_off_is_its_time_until_it_passes(after):
    trigger = utc(2026, 3, 10, 7)

    assert next_slot(one_off(trigger), after) == (trigger if after < trigger else None)
