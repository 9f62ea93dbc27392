import zoneinfo
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property

from django.db.models import QuerySet

from artists.models import Artist
from artists.selectors import artists_visible_to
from schedules.models import Schedule, ScheduleRun
from schedules.slots import upcoming_slots, wall_time


def schedules_visible_to(*, user) -> QuerySet[Schedule]:
    """Schedules of the artists this user may see."""
    return Schedule.objects.filter(artist__in=artists_visible_to(user=user))


def schedule_runs_visible_to(*, user) -> QuerySet[ScheduleRun]:
    """Runs of the schedules this user may see."""
    return ScheduleRun.objects.filter(schedule__artist__in=artists_visible_to(user=user))


# --- the calendar -----------------------------------------------------------------------------

# Every rule recurs within 62 days (day 31), so this finds an artist's next slots of any schedule.
NEXT_SLOTS_HORIZON = timedelta(days=62)
RECENT_RUNS_LIMIT = 50
RECENT_RUNS_PERIOD = timedelta(days=30)
WEEK = 7  # up to this many days, markers carry their titles


@dataclass(frozen=True)
class Slot:
    """One upcoming slot of one schedule, with its instant in the display zone and in the schedule's own."""

    schedule: Schedule
    at: datetime  # UTC
    local: datetime  # in the calendar's display zone
    own: datetime  # in the schedule's own zone
    day: int = 0  # column of the calendar (0 = today in the display zone)
    offset: float = 0.0  # where it lies in the calendar's window, in % of its width
    track: int = 0  # row of its lane it is drawn on, so that labels never overlap
    flip: bool = False  # near the right edge: label drawn to the left of the marker

    @property
    def in_display_zone(self) -> bool:
        """The schedule's own zone is the one the calendar is drawn in: no second time to show."""
        return self.schedule.timezone == self.local.tzinfo.key


@dataclass
class Lane:
    """One artist's row of the calendar."""

    artist: Artist
    schedules: list[Schedule] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)

    @property
    def active_schedules(self) -> list[Schedule]:
        return [s for s in self.schedules if s.active]

    @property
    def paused_schedules(self) -> list[Schedule]:
        return [s for s in self.schedules if not s.active]

    @property
    def tracks(self) -> int:
        return max((s.track for s in self.slots), default=-1) + 1


@dataclass(frozen=True)
class Day:
    date: date
    hours: int  # 23 or 25 on a day the display zone changes its clocks: its column is that much narrower or wider
    is_today: bool
    is_weekend: bool


@dataclass
class Calendar:
    """What /schedules/ draws: lanes of upcoming slots over `days` days, and the recent runs."""

    zone: zoneinfo.ZoneInfo
    now: datetime
    start: datetime  # midnight today in the display zone
    end: datetime  # midnight after the last day
    days: list[Day]
    lanes: list[Lane]
    runs: list[ScheduleRun]
    now_offset: float  # where "now" lies in the window, in %

    @property
    def local_now(self) -> datetime:
        return self.now.astimezone(self.zone)

    @property
    def utc_offset(self) -> str:
        """The display zone's offset now, as "UTC+08:00"."""
        offset = self.local_now.strftime("%z")
        return f"UTC{offset[:3]}:{offset[3:]}"

    @cached_property
    def slots(self) -> list[Slot]:
        """Every upcoming slot, in time order (the list beside the drawing)."""
        return sorted((s for lane in self.lanes for s in lane.slots), key=lambda s: (s.at, s.schedule.title))

    @property
    def has_schedules(self) -> bool:
        return any(lane.schedules for lane in self.lanes)


def _fires(schedule: Schedule) -> bool:
    return schedule.active and schedule.artist.active


def _upcoming(schedule: Schedule, *, now: datetime, until: datetime) -> list[datetime]:
    """The slots the scheduler will fire after `now`, up to `until`: none for a paused schedule or artist.

    From the scheduler's cursor when it lies ahead of `now` (a slot before it is already handled).
    """
    if not _fires(schedule):
        return []
    start = now
    if schedule.next_slot_at is not None and schedule.next_slot_at > now:
        start = schedule.next_slot_at - timedelta(microseconds=1)
    return upcoming_slots(schedule, now=start, until=until)


def _lay_out(slots: list[Slot], *, label_width: float) -> list[Slot]:
    """Give each slot a track: the first one whose last label ends before this label starts."""
    ends: list[float] = []
    laid = []
    for slot in sorted(slots, key=lambda s: s.at):
        flip = slot.offset + label_width > 100
        left = slot.offset - label_width if flip else slot.offset
        track = next((i for i, end in enumerate(ends) if end <= left), len(ends))
        if track == len(ends):
            ends.append(0.0)
        ends[track] = left + label_width
        laid.append(replace(slot, track=track, flip=flip))
    return laid


def calendar_for(*, user, now: datetime, days: int, zone: zoneinfo.ZoneInfo, artist_id: int | None = None) -> Calendar:
    """The calendar of the artists `user` may see (one of them with `artist_id`) from today for `days` days.

    Three queries whatever the number of artists, schedules and runs.
    """
    local_now = now.astimezone(zone)
    today = local_now.date()
    # Midnights in the display zone; a day with a DST change is 23 or 25 hours long, and drawn so.
    start = datetime.combine(today, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=days), time(), tzinfo=zone).astimezone(UTC)
    width = (end - start).total_seconds()

    def offset(moment: datetime) -> float:
        return round(100 * (moment - start).total_seconds() / width, 3)

    artists = artists_visible_to(user=user).order_by("stage_name", "pk")
    schedules = schedules_visible_to(user=user).select_related("artist").order_by("title", "pk")
    runs = schedule_runs_visible_to(user=user).select_related("schedule__artist", "post")
    if artist_id is not None:
        artists = artists.filter(pk=artist_id)
        schedules = schedules.filter(artist_id=artist_id)
        runs = runs.filter(schedule__artist_id=artist_id)
    lanes = {artist.pk: Lane(artist=artist) for artist in artists}
    for schedule in schedules:
        lane = lanes.get(schedule.artist_id)
        if lane is None:  # made visible between the two queries
            continue
        schedule.artist = lane.artist
        lane.schedules.append(schedule)
        # Up to the last instant of the last day: a slot at the next midnight belongs to no column.
        for at in _upcoming(schedule, now=now, until=end - timedelta(microseconds=1)):
            local = at.astimezone(zone)
            lane.slots.append(
                Slot(
                    schedule=schedule,
                    at=at,
                    local=local,
                    own=wall_time(schedule, at) or at,
                    day=(local.date() - today).days,
                    offset=offset(at),
                )
            )
    # How wide a marker is drawn (calendar.css: .slot max-width): its time and title, up to 1.4 days, in
    # the week view; a dot, half a day, in the month view.
    label_width = (140 if days <= WEEK else 50) / days
    for lane in lanes.values():
        lane.slots = _lay_out(lane.slots, label_width=label_width)
    calendar_days = []
    for n in range(days):
        day = today + timedelta(days=n)
        midnight = datetime.combine(day, time(), tzinfo=zone)
        following = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
        hours = round((following.astimezone(UTC) - midnight.astimezone(UTC)).total_seconds() / 3600)
        calendar_days.append(Day(date=day, hours=hours, is_today=n == 0, is_weekend=day.weekday() >= 5))
    return Calendar(
        zone=zone,
        now=now,
        start=start,
        end=end,
        days=calendar_days,
        lanes=list(lanes.values()),
        runs=list(runs.filter(slot_at__gte=now - RECENT_RUNS_PERIOD, slot_at__lte=now)[:RECENT_RUNS_LIMIT]),
        now_offset=offset(now),
    )


@dataclass(frozen=True)
class NextSlot:
    schedule: Schedule
    at: datetime  # UTC
    own: datetime  # in the schedule's own zone


def next_slots_for(*, artist: Artist, now: datetime, limit: int = 10) -> list[NextSlot]:
    """The artist's next `limit` slots across its active schedules (none while the artist is inactive)."""
    if not artist.active:
        return []
    found = []
    for schedule in artist.schedules.filter(active=True).order_by("title", "pk"):
        schedule.artist = artist
        found += [
            NextSlot(schedule=schedule, at=at, own=wall_time(schedule, at) or at)
            for at in _upcoming(schedule, now=now, until=now + NEXT_SLOTS_HORIZON)[:limit]
        ]
    return sorted(found, key=lambda s: (s.at, s.schedule.title))[:limit]
