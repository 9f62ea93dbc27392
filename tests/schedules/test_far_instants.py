"""When a one-off fires: an instant out of range is refused at save and one already stored never breaks a
page; a trigger time without an offset is read on the schedule's own wall clock (API and admin)."""

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from mcn_site.lib import roles
from schedules.models import Schedule
from schedules.slots import FIRST_SLOT, LAST_SLOT, next_slot, slots_between, upcoming_slots, wall_time
from tests.admin import error_text, form_data, login
from tests.api.conftest import token_client
from tests.factories import make_artist, make_schedule, make_user
from tests.validation import clean_errors

END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
ADD = reverse("admin:schedules_schedule_add")
pytestmark = pytest.mark.django_db
OUT_OF_RANGE = "Pick a time from 2000-01-01 to 2099-12-31 (UTC): {} is out of range."


@pytest.fixture
def team() -> tuple:
    """A producer and the artist they work on."""
    producer = make_user(role=roles.PRODUCER)
    return producer, make_artist(members=[producer])


def one_off(artist, trigger_at, **extra) -> dict:
    return {"title": "Launch", "artist": artist.pk, "kind": "one_off", "trigger_at": trigger_at, **extra}


# --- refused at save ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger_at", "shown"),
    [
        (END_OF_TIME, "9999-12-31 23:59:59+00:00"),
        (datetime(2100, 1, 1, tzinfo=UTC), "2100-01-01 00:00:00+00:00"),
        (datetime(1999, 12, 31, 23, 59, tzinfo=UTC), "1999-12-31 23:59:00+00:00"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01 00:00:00+00:00"),
    ],
)
def test_a_trigger_time_outside_2000_to_2099_is_refused_naming_the_range(team, trigger_at, shown):
    _, artist = team
    schedule = Schedule(title="t", artist=artist, kind="one_off", trigger_at=trigger_at)

    assert clean_errors(schedule) == {"trigger_at": [OUT_OF_RANGE.format(shown)]}


def test_the_last_and_first_moments_of_the_range_are_accepted(team):
    _, artist = team
    for moment in (datetime(2000, 1, 1, tzinfo=UTC), datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)):
        assert clean_errors(Schedule(title="t", artist=artist, kind="one_off", trigger_at=moment)) == {}


@pytest.mark.parametrize(
    ("sent", "zone", "shown"),
    [
        ("9999-12-31T23:59:59Z", "Asia/Shanghai", "9999-12-31 23:59:59+00:00"),
        # Without an offset, in New York: in year 10000 in UTC, no such instant.
        ("9999-12-31T23:59:59", "America/New_York", "9999-12-31 23:59:59-05:00"),
    ],
)
def test_the_api_refuses_a_one_off_at_the_end_of_time_with_a_400_and_saves_nothing(team, sent, zone, shown):
    producer, artist = team

    response = token_client(producer).post("/api/v1/schedules/", one_off(artist, sent, timezone=zone), format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["trigger_at"] == [OUT_OF_RANGE.format(shown)]
    assert not Schedule.objects.exists()


def test_the_admin_refuses_a_one_off_at_the_end_of_time_with_the_message(team):
    producer, artist = team
    client = login(producer)
    data = form_data(client.get(ADD, {"artist": artist.pk}))
    data.update(title="Launch", kind="one_off", timezone="UTC", trigger_at_0="9999-12-31", trigger_at_1="23:59:59")

    response = client.post(ADD, data)

    assert response.status_code == 200
    assert error_text(response) == "trigger_at: " + OUT_OF_RANGE.format("9999-12-31 23:59:59+00:00")
    assert not Schedule.objects.exists()


# --- a row stored before the rule ---------------------------------------------------------------------


def test_pages_listing_a_one_off_stored_at_the_end_of_time_answer_200(team):
    producer, artist = team
    schedule = Schedule.objects.create(
        title="Far",
        artist=artist,
        kind="one_off",
        trigger_at=END_OF_TIME,
        next_slot_at=END_OF_TIME,
        timezone="Asia/Shanghai",
    )
    api = token_client(producer)

    listed = api.get("/api/v1/schedules/")
    assert listed.status_code == 200
    assert listed.json()["results"][0]["upcoming_slots"] == []  # past what a clock can show: no more slots
    assert api.get(f"/api/v1/schedules/{schedule.pk}/").status_code == 200
    client = login(producer)
    changelist = client.get(reverse("admin:schedules_schedule_changelist"))
    assert changelist.status_code == 200
    assert "9999-12-31 23:59 UTC" in changelist.content.decode()
    assert client.get(reverse("admin:schedules_schedule_change", args=[schedule.pk])).status_code == 200
    assert client.get("/schedules/").status_code == 200
    assert client.get(reverse("admin:artists_artist_change", args=[artist.pk])).status_code == 200


def routine(**rule) -> Schedule:
    return Schedule(**{"title": "t", "weekdays": ["monday"], "times": ["09:00"], "timezone": "UTC", **rule})


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule(title="t", kind="one_off", trigger_at=datetime.max.replace(tzinfo=UTC), timezone="Pacific/Kiritimati"),
        Schedule(title="t", kind="one_off", trigger_at=datetime.min.replace(tzinfo=UTC), timezone="Etc/GMT+12"),
        Schedule(title="t", kind="one_off", trigger_at=END_OF_TIME, timezone="Not/AZone"),
        routine(timezone="Pacific/Kiritimati"),
        routine(timezone="Etc/GMT+12", period="monthly", month_days=[1, 31]),
        routine(timezone="Not/AZone"),
        routine(times=["25:00", 9, None], weekdays="monday"),
        routine(weekdays=None, times=None),
        routine(period="monthly", month_days="1"),
    ],
    ids=lambda s: f"{s.kind}-{s.timezone}-{s.times}",
)
def test_slot_computation_never_raises_on_any_stored_value(schedule):
    edges = [datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC), FIRST_SLOT, LAST_SLOT]
    edges += [LAST_SLOT - timedelta(days=40), datetime(2026, 1, 1, tzinfo=UTC)]
    for after in edges:
        slot = next_slot(schedule, after)
        assert slot is None or (after < slot <= LAST_SLOT and wall_time(schedule, slot) is not None)
        for until in edges:
            if until - after < timedelta(days=400):  # a calendar's window, not every day of ten millennia
                assert all(FIRST_SLOT <= s <= LAST_SLOT for s in upcoming_slots(schedule, now=after, until=until))
                assert all(after < s <= until for s in slots_between(schedule, after, until))


def test_a_slot_past_the_last_showable_instant_is_no_more_slots():
    schedule = routine(weekdays=list(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")))

    last = next_slot(schedule, LAST_SLOT - timedelta(days=1))

    assert last is not None and last <= LAST_SLOT
    assert next_slot(schedule, last) is None


# --- a trigger time without an offset is on the schedule's wall clock ---------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        # Winter (EST, UTC-5) and summer (EDT, UTC-4) in New York, not in the server's UTC.
        ("2026-01-15T09:00:00", datetime(2026, 1, 15, 14, 0, tzinfo=UTC)),
        ("2026-07-01T09:00", datetime(2026, 7, 1, 13, 0, tzinfo=UTC)),
        # 02:30 does not exist on 8 March 2026 (clocks jump 02:00 -> 03:00): the offset before the jump,
        # as a routine's skipped time (schedules.slots), i.e. 03:30 EDT.
        ("2026-03-08T02:30:00", datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
        # 01:30 happens twice on 1 November 2026: the first one (EDT).
        ("2026-11-01T01:30:00", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
        # With an offset, the instant as sent.
        ("2026-07-01T09:00:00+02:00", datetime(2026, 7, 1, 7, 0, tzinfo=UTC)),
        ("2026-07-01T09:00:00Z", datetime(2026, 7, 1, 9, 0, tzinfo=UTC)),
    ],
)
def test_the_api_reads_a_trigger_time_without_offset_in_the_schedules_zone(team, sent, stored):
    producer, artist = team
    api = token_client(producer)

    response = api.post("/api/v1/schedules/", one_off(artist, sent, timezone="America/New_York"), format="json")

    assert response.status_code == 201, response.content
    schedule = Schedule.objects.get()
    assert schedule.trigger_at == stored
    assert response.json()["trigger_at"] == stored.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_api_edit_reads_a_naive_trigger_time_in_the_zone_sent_with_it(team):
    producer, artist = team
    schedule = make_schedule(artist=artist, kind="one_off", trigger_at=datetime(2026, 7, 1, tzinfo=UTC))

    response = token_client(producer).patch(
        f"/api/v1/schedules/{schedule.pk}/", {"trigger_at": "2026-07-02T08:00", "timezone": "Asia/Tokyo"}, format="json"
    )

    assert response.status_code == 200, response.content
    schedule.refresh_from_db()
    assert schedule.trigger_at == datetime(2026, 7, 1, 23, 0, tzinfo=UTC)


def test_the_schema_says_a_trigger_time_without_offset_is_read_in_the_schedules_zone(team):
    producer, _ = team
    schema = token_client(producer).get("/api/schema/", {"format": "json"}).json()

    described = schema["components"]["schemas"]["Schedule"]["properties"]["trigger_at"]["description"]
    assert "Without an offset" in described and "`timezone`" in described


def test_the_admin_reads_and_shows_the_trigger_time_on_the_schedules_wall_clock(team):
    producer, artist = team
    client = login(producer)
    data = form_data(client.get(ADD, {"artist": artist.pk}))
    data.update(
        title="Launch", kind="one_off", timezone="America/New_York", trigger_at_0="2026-03-08", trigger_at_1="02:30"
    )

    response = client.post(ADD, data)

    assert response.status_code == 302, error_text(response)
    schedule = Schedule.objects.get()
    assert schedule.trigger_at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT: the jump, as a routine's
    page = form_data(client.get(reverse("admin:schedules_schedule_change", args=[schedule.pk])))
    assert (page["trigger_at_0"], page["trigger_at_1"]) == ("2026-03-08", "03:30:00")
    # Saved again unchanged, it stays the same instant.
    response = client.post(reverse("admin:schedules_schedule_change", args=[schedule.pk]), page)
    assert response.status_code == 302, error_text(response)
    schedule.refresh_from_db()
    assert schedule.trigger_at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert schedule.trigger_at.astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:30 EDT"
