"""When a schedule fires: its slots, as UTC instants, computed in the schedule's own time zone.

Pure functions over a schedule's rule fields (no database). A slot is a wall-clock time on a
matching day in the schedule's IANA zone, turned into one instant:

- a time that does not exist that day (02:30 on a spring-forward night) fires once, at the same
  offset before the change, i.e. as many minutes later on the clock as the clocks jumped (03:30);
- a time that happens twice (01:30 on a fall-back night) fires once, at its first occurrence;
- a day the month does not have (31 in April, 29 in February of a common year) is skipped.

Total over whatever a row holds: a slot outside [FIRST_SLOT, LAST_SLOT] (a one-off at 9999-12-31, a
cursor at datetime.max) is "no more slots", and a rule field no form would accept (an unknown zone,
"25:00", a weekday that is not one) contributes no slot. Nothing here raises on a stored value.
"""

import zoneinfo
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from schedules.models import TIME_RE, WEEKDAYS, Schedule

# Every instant in this range has a wall-clock time in every zone (UTC offsets stay within a day), even
# with the day of margin slots_between searches on either side, so a slot can always be shown in the
# schedule's zone and the calendar's. schedules.models refuses a trigger time far inside it at save
# (Schedule.clean); rows stored before that, or written around it, meet these bounds.
FIRST_SLOT = datetime.min.replace(tzinfo=UTC) + timedelta(days=3)
LAST_SLOT = datetime.max.replace(tzinfo=UTC) - timedelta(days=3)
# Far enough to reach the next slot of any valid rule: day 31 recurs within 62 days.
_SEARCH_WINDOW = timedelta(days=35)
_SEARCH_WINDOWS = 3


def zone_of(schedule: Schedule) -> zoneinfo.ZoneInfo | None:
    """The schedule's IANA zone, or None when the stored name is not one (it then has no slots)."""
    try:
        return zoneinfo.ZoneInfo(schedule.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        return None


def wall_time(schedule: Schedule, moment: datetime | None) -> datetime | None:
    """`moment` on the schedule's wall clock, or None when there is no such time to show."""
    zone = zone_of(schedule)
    if moment is None or zone is None or not FIRST_SLOT <= moment <= LAST_SLOT:
        return None
    return moment.astimezone(zone)


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _times(schedule: Schedule) -> list[tuple[int, int]]:
    times = [t for t in _list(schedule.times) if isinstance(t, str) and TIME_RE.match(t)]
    return sorted({(int(t[:-3]), int(t[-2:])) for t in times})


def _day_matches(schedule: Schedule, day: date) -> bool:
    if schedule.period == Schedule.Period.WEEKLY:
        return WEEKDAYS[day.weekday()] in _list(schedule.weekdays)
    return day.day in _list(schedule.month_days)


def slots_between(schedule: Schedule, start: datetime, end: datetime) -> Iterator[datetime]:
    """Yield the schedule's slots `s` with `start < s <= end`, ascending, each once, in UTC."""
    start, end = max(start, FIRST_SLOT - timedelta(microseconds=1)), min(end, LAST_SLOT)
    if start >= end:
        return
    if schedule.kind == Schedule.Kind.ONE_OFF:
        if schedule.trigger_at is not None and start < schedule.trigger_at <= end:
            yield schedule.trigger_at.astimezone(UTC)
        return
    zone, times = zone_of(schedule), _times(schedule)
    if zone is None or not times:
        return
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
        return next(slots_between(schedule, after, LAST_SLOT), None) if trigger is not None else None
    start = max(after, FIRST_SLOT - timedelta(microseconds=1))
    for _ in range(_SEARCH_WINDOWS):
        if start >= LAST_SLOT:
            return None
        end = start + min(_SEARCH_WINDOW, LAST_SLOT - start)
        for slot in slots_between(schedule, start, end):
            return slot
        start = end
    return None


def upcoming_slots(schedule: Schedule, *, now: datetime, until: datetime) -> list[datetime]:
    """Slots the schedule will fire after `now` up to `until` (for calendars and the admin)."""
    return list(slots_between(schedule, now, until))
