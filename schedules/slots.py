"""When a schedule fires: its slots, as UTC instants, computed in the schedule's own time zone.

Pure functions over a schedule's rule fields (no database). A slot is a wall-clock time on a
matching day in the schedule's IANA zone, turned into one instant:

- a time that does not exist that day (02:30 on a spring-forward night) fires once, at the same
  offset before the change, i.e. as many minutes later on the clock as the clocks jumped (03:30);
- a time that happens twice (01:30 on a fall-back night) fires once, at its first occurrence;
- a day the month does not have (31 in April, 29 in February of a common year) is skipped.
"""

import zoneinfo
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from schedules.models import WEEKDAYS, Schedule

# Far enough to reach the next slot of any valid rule: day 31 recurs within 62 days.
_SEARCH_WINDOW = timedelta(days=35)
_SEARCH_WINDOWS = 3


def _times(schedule: Schedule) -> list[tuple[int, int]]:
    return sorted({(int(t[:-3]), int(t[-2:])) for t in schedule.times})


def _day_matches(schedule: Schedule, day: date) -> bool:
    if schedule.period == Schedule.Period.WEEKLY:
        return WEEKDAYS[day.weekday()] in schedule.weekdays
    return day.day in schedule.month_days


def slots_between(schedule: Schedule, start: datetime, end: datetime) -> Iterator[datetime]:
    """Yield the schedule's slots `s` with `start < s <= end`, ascending, each once, in UTC."""
    if schedule.kind == Schedule.Kind.ONE_OFF:
        if schedule.trigger_at is not None and start < schedule.trigger_at <= end:
            yield schedule.trigger_at.astimezone(UTC)
        return
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    times = _times(schedule)
    # One day of margin either side: a local day can start up to 14 h away from UTC midnight.
    day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date() + timedelta(days=1)
    slots = set()  # two wall times can name one instant (02:30 skipped is 03:30 that night)
    while day <= last_day:
        if _day_matches(schedule, day):
            for hour, minute in times:
                # fold=0: the first of a repeated time; for a skipped time, the offset before the jump.
                slot = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)
                if start < slot <= end:
                    slots.add(slot)
        day += timedelta(days=1)
    # Sorted as instants, not as wall times: a skipped 02:30 lands after 03:00 that night.
    yield from sorted(slots)


def next_slot(schedule: Schedule, after: datetime) -> datetime | None:
    """The first slot strictly after `after`, or None when the schedule has no more (a past one-off)."""
    if schedule.kind == Schedule.Kind.ONE_OFF:
        # Its one slot may lie any distance ahead, beyond the search windows below.
        trigger = schedule.trigger_at
        return trigger.astimezone(UTC) if trigger is not None and trigger > after else None
    start = after
    for _ in range(_SEARCH_WINDOWS):
        end = start + _SEARCH_WINDOW
        for slot in slots_between(schedule, start, end):
            return slot
        start = end
    return None


def upcoming_slots(schedule: Schedule, *, now: datetime, until: datetime) -> list[datetime]:
    """Slots the schedule will fire after `now` up to `until` (for calendars and the admin)."""
    return list(slots_between(schedule, now, until))
