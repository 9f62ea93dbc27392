"""The calendar page (/schedules/) and the artist admin's next slots: who sees what, where each slot lands."""

import re
import zoneinfo
from datetime import date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from mcn_site.lib import roles
from schedules.models import Schedule, ScheduleRun
from tests.admin import login
from tests.factories import make_artist, make_post, make_schedule, make_schedule_run, make_user

pytestmark = pytest.mark.django_db

CALENDAR = reverse("schedules:calendar")
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
# One marker of the timeline: the day it is drawn on (display zone) and the time on its label.
MARKER = re.compile(
    r'<li class="slot[^"]*"[^>]*data-day="(?P<day>[\d-]+)" data-schedule="(?P<schedule>\d+)">'
    r'.*?<time datetime="[^"]+">(?P<time>\d\d:\d\d)</time>',
    re.S,
)


@pytest.fixture
def producer():
    return make_user(role=roles.PRODUCER, username="paula")


@pytest.fixture
def artist(producer):
    return make_artist(members=[producer], stage_name="Luna Chen", colour="#db2777")


def markers(body: str, schedule: Schedule) -> list[tuple[date, str]]:
    return [
        (date.fromisoformat(m["day"]), m["time"]) for m in MARKER.finditer(body) if m["schedule"] == str(schedule.pk)
    ]


def columns(body: str) -> int:
    """How many day columns the timeline has."""
    return len(re.findall(r'class="tl-day[ "]', body))


def one_off(artist, *, at: datetime, **extra) -> Schedule:
    return make_schedule(artist=artist, kind=Schedule.Kind.ONE_OFF, trigger_at=at, weekdays=[], times=[], **extra)


# --- who may see it --------------------------------------------------------------------------


def test_an_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get(CALENDAR)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={CALENDAR}"


def test_a_producer_does_not_see_schedules_or_runs_of_an_artist_they_are_not_a_member_of(producer, artist):
    mine = make_schedule(artist=artist, title="Luna morning show")
    theirs = make_schedule(artist=make_artist(stage_name="Foreign Fei"), title="Fei secret show")
    make_schedule_run(schedule=mine, slot_at=timezone.now() - timedelta(hours=2))
    make_schedule_run(
        schedule=theirs,
        slot_at=timezone.now() - timedelta(hours=2),
        post=make_post(artist=theirs.artist, title="Fei secret post"),
    )

    body = login(producer).get(CALENDAR).content.decode()

    assert "Luna Chen" in body and "Luna morning show" in body
    assert "Foreign Fei" not in body and "Fei secret" not in body


def test_asking_for_a_foreign_artist_by_id_shows_nothing_of_it(producer, artist):
    foreign = make_artist(stage_name="Foreign Fei")
    make_schedule(artist=foreign, title="Fei secret show")

    body = login(producer).get(CALENDAR, {"artist": foreign.pk}).content.decode()

    assert "Fei secret show" not in body and "Foreign Fei" not in body
    assert "None of your artists has this id" in body


def test_ops_see_every_artists_schedules():
    make_schedule(artist=make_artist(stage_name="Luna Chen"), title="Luna morning show")
    make_schedule(artist=make_artist(stage_name="Kai Nova"), title="Kai tech digest")

    body = login(make_user(role=roles.OPS)).get(CALENDAR).content.decode()

    assert "Luna morning show" in body and "Kai tech digest" in body


def test_the_artist_filter_keeps_one_artists_lane(producer, artist):
    other = make_artist(members=[producer], stage_name="Kai Nova")
    make_schedule(artist=artist, title="Luna morning show")
    make_schedule(artist=other, title="Kai tech digest")

    body = login(producer).get(CALENDAR, {"artist": other.pk}).content.decode()

    assert "Kai tech digest" in body and "Luna morning show" not in body


# --- where slots land --------------------------------------------------------------------------


def test_a_shanghai_morning_slot_is_drawn_on_the_previous_evening_in_berlin(producer, artist):
    # 05:00 in Shanghai is 21:00 UTC the day before: 22:00 (winter) or 23:00 (summer) in Berlin.
    schedule = make_schedule(
        artist=artist, title="Mon and Thu 05:00", weekdays=["monday", "thursday"], times=["05:00"],
        timezone="Asia/Shanghai",
    )  # fmt: skip

    body = login(producer).get(CALENDAR, {"tz": "Europe/Berlin"}).content.decode()

    drawn = markers(body, schedule)
    assert 1 <= len(drawn) <= 3  # Monday and Thursday: twice a week, seen from today's midnight for 7 days
    for day, label in drawn:
        assert day.strftime("%A") in ("Sunday", "Wednesday")
        slot = datetime.combine(day + timedelta(days=1), datetime.min.time().replace(hour=5), tzinfo=SHANGHAI)
        assert label == f"{slot.astimezone(BERLIN):%H:%M}" and label in ("22:00", "23:00")
        # The screen reader text says both: the display zone's time and the schedule's own.
        assert f"{day:%A} {day.day} {day:%B}, {label} Europe/Berlin" in body
    assert "05:00 Asia/Shanghai" in body
    assert "Drawn in <strong>Europe/Berlin</strong>" in body


def test_the_calendar_is_drawn_in_the_default_zone_unless_told(producer, artist, settings):
    settings.MCN_DEFAULT_SCHEDULE_TIMEZONE = "Asia/Shanghai"
    schedule = make_schedule(artist=artist, weekdays=["monday", "thursday"], times=["09:30"], timezone="Asia/Shanghai")

    body = login(producer).get(CALENDAR).content.decode()

    assert "Drawn in <strong>Asia/Shanghai</strong> (UTC+08:00)" in body
    drawn = markers(body, schedule)
    assert drawn and all(day.strftime("%A") in ("Monday", "Thursday") and label == "09:30" for day, label in drawn)


def test_the_week_view_stops_after_seven_days_and_the_month_view_shows_thirty(producer, artist):
    now = timezone.now()
    soon = one_off(artist, at=now + timedelta(days=2), title="Soon special")
    later = one_off(artist, at=now + timedelta(days=20), title="Later special")
    client = login(producer)

    week = client.get(CALENDAR).content.decode()
    month = client.get(CALENDAR, {"days": 30}).content.decode()

    assert len(markers(week, soon)) == 1 and markers(week, later) == []
    assert len(markers(month, soon)) == 1 and len(markers(month, later)) == 1
    assert columns(week) == 7 and columns(month) == 30


@pytest.mark.parametrize("days", ["14", "abc", "-7", "7.0", ""])
def test_any_other_number_of_days_shows_the_week(producer, artist, days):
    response = login(producer).get(CALENDAR, {"days": days})

    assert response.status_code == 200
    assert columns(response.content.decode()) == 7


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "Asia", "../../etc/passwd", "/etc/localtime", "europe/berlin"])
def test_a_time_zone_that_does_not_exist_falls_back_to_the_default_with_a_notice(producer, artist, tz, settings):
    settings.MCN_DEFAULT_SCHEDULE_TIMEZONE = "Asia/Tokyo"
    response = login(producer).get(CALENDAR, {"tz": tz})

    body = response.content.decode()
    assert response.status_code == 200
    assert "is not a time zone.</strong> Showing Asia/Tokyo instead" in body and 'role="alert"' in body
    assert "Drawn in <strong>Asia/Tokyo</strong>" in body


def test_a_valid_time_zone_shows_no_notice(producer, artist):
    body = login(producer).get(CALENDAR, {"tz": "America/New_York"}).content.decode()

    assert "is not a time zone." not in body
    assert "Drawn in <strong>America/New_York</strong>" in body


def test_a_paused_schedule_and_an_inactive_artist_show_no_upcoming_slot(producer, artist):
    paused = make_schedule(artist=artist, title="Paused show", active=False, weekdays=list(_every_day()))
    resting = make_artist(members=[producer], stage_name="Resting Rui", active=False)
    idle = make_schedule(artist=resting, title="Resting show", weekdays=list(_every_day()))

    body = login(producer).get(CALENDAR).content.decode()

    assert markers(body, paused) == [] and markers(body, idle) == []
    assert "1 paused" in body and "artist inactive" in body


def _every_day():
    return ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


# --- past runs --------------------------------------------------------------------------------


def test_past_runs_show_newest_first_with_outcome_detail_and_a_link_to_the_post(producer, artist):
    schedule = make_schedule(artist=artist, title="Luna morning show")
    post = make_post(artist=artist, title="Luna · 2026-12-07")
    now = timezone.now()
    make_schedule_run(schedule=schedule, slot_at=now - timedelta(days=3), outcome=ScheduleRun.Outcome.MISSED,
                      detail="The scheduler was not running within 1:00:00 of this slot.")  # fmt: skip
    make_schedule_run(schedule=schedule, slot_at=now - timedelta(hours=1), post=post)

    body = login(producer).get(CALENDAR).content.decode()

    assert f'href="{reverse("posts:storyboard", args=[post.pk])}">Luna · 2026-12-07</a>' in body
    assert body.index("Post created") < body.index("Missed (scheduler was down)")
    assert "outcome-created" in body and "outcome-missed" in body
    assert "The scheduler was not running within 1:00:00 of this slot." in body


def test_runs_older_than_thirty_days_are_not_listed(producer, artist):
    schedule = make_schedule(artist=artist)
    make_schedule_run(schedule=schedule, slot_at=timezone.now() - timedelta(days=40), detail="Long ago run")

    body = login(producer).get(CALENDAR).content.decode()

    assert "Long ago run" not in body and "No runs in the last 30 days" in body


# --- empty states -----------------------------------------------------------------------------


def test_without_schedules_the_page_says_how_to_add_one(producer, artist):
    body = login(producer).get(CALENDAR).content.decode()

    assert "No schedules yet" in body
    assert f'href="{reverse("admin:schedules_schedule_add")}"' in body


def test_a_reviewer_is_not_offered_to_add_a_schedule():
    reviewer = make_user(role=roles.REVIEWER)
    make_artist(members=[reviewer])

    body = login(reviewer).get(CALENDAR).content.decode()

    assert "No schedules yet" in body and reverse("admin:schedules_schedule_add") not in body


def test_a_user_without_artists_is_told_why_the_page_is_empty():
    body = login(make_user(role=roles.PRODUCER)).get(CALENDAR).content.decode()

    assert "not a member of any artist" in body


def test_the_nav_marks_the_calendar_and_the_post_list_links_to_it(producer, artist):
    client = login(producer)

    calendar = client.get(CALENDAR).content.decode()
    posts = client.get(reverse("posts:list")).content.decode()

    assert f'href="{CALENDAR}" aria-current="page">Calendar</a>' in calendar
    assert f'href="{CALENDAR}">Upcoming from schedules →</a>' in posts


# --- queries ----------------------------------------------------------------------------------


def _calendar_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(CALENDAR, {"days": 30}).status_code == 200
    return len(queries)


def test_the_number_of_queries_does_not_grow_with_artists_schedules_and_runs(producer, artist):
    client = login(producer)
    schedule = make_schedule(artist=artist, weekdays=_every_day())
    make_schedule_run(schedule=schedule, slot_at=timezone.now() - timedelta(days=1), post=make_post(artist=artist))
    few = _calendar_queries(client)

    for n in range(4):
        other = make_artist(members=[producer], stage_name=f"Extra {n}")
        for m in range(3):
            extra = make_schedule(artist=other, weekdays=_every_day(), times=["08:00", "20:00"])
            make_schedule_run(
                schedule=extra, slot_at=timezone.now() - timedelta(hours=m + 1), post=make_post(artist=other)
            )
        make_schedule(artist=other, active=False)

    assert _calendar_queries(client) == few


# --- the artist admin's next slots ---------------------------------------------------------------


def test_the_artist_admin_page_lists_the_next_slots_in_the_schedules_own_zone(producer, artist):
    at = (timezone.now() + timedelta(days=3)).replace(second=0, microsecond=0)
    special = one_off(artist, at=at, title="Launch special", timezone="America/New_York")
    weekly = make_schedule(artist=artist, title="Weekly show", weekdays=_every_day(), times=["09:30"],
                           timezone="Asia/Shanghai")  # fmt: skip
    make_schedule(artist=artist, title="Paused show", active=False)

    body = login(producer).get(reverse("admin:artists_artist_change", args=[artist.pk])).content.decode()

    assert "Next slots" in body
    local = at.astimezone(zoneinfo.ZoneInfo("America/New_York"))
    assert f"{local:%a %Y-%m-%d %H:%M}</time> <span" in body and "America/New_York" in body
    assert reverse("admin:schedules_schedule_change", args=[special.pk]) in body
    assert reverse("admin:schedules_schedule_change", args=[weekly.pk]) in body
    assert body.count(">Weekly show</a>") == 9  # ten slots in all: the one-off and nine daily ones
    assert "Paused show</a>" not in body
    assert f"{CALENDAR}?artist={artist.pk}" in body


def test_the_artist_admin_page_of_an_inactive_artist_says_nothing_fires(producer):
    artist = make_artist(members=[producer], active=False)
    make_schedule(artist=artist, title="Weekly show")

    body = login(producer).get(reverse("admin:artists_artist_change", args=[artist.pk])).content.decode()

    assert "is inactive: its schedules fire nothing" in body and ">Weekly show</a>" not in body


def test_the_artist_add_page_has_no_next_slots():
    body = login(make_user(role=roles.OPS)).get(reverse("admin:artists_artist_add")).content.decode()

    assert "Next slots" not in body
