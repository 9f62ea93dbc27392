"""The schedule admin: per-artist visibility and the friendly editing of weekdays, times and month days."""

import zoneinfo
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mcn_site.lib import roles
from schedules.models import Schedule, ScheduleRun
from tests.admin import error_text, form_data, login
from tests.factories import make_artist, make_post, make_schedule, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:schedules_schedule_changelist")
ADD = reverse("admin:schedules_schedule_add")


def change_url(schedule: Schedule) -> str:
    return reverse("admin:schedules_schedule_change", args=[schedule.pk])


@pytest.fixture
def producer():
    return make_user(role=roles.PRODUCER)


@pytest.fixture
def artist(producer):
    return make_artist(members=[producer])


def _new_schedule_data(client, artist, **fields) -> dict:
    data = form_data(client.get(ADD, {"artist": artist.pk}))
    data.update({"title": "Morning news", **fields})
    return data


# --- who sees which schedule -------------------------------------------------------------


def test_a_producer_does_not_see_schedules_of_a_foreign_artist(producer, artist):
    mine = make_schedule(artist=artist, title="My slot")
    make_schedule(artist=make_artist(stage_name="Foreign Fei"), title="Their slot")
    response = login(producer).get(CHANGELIST)
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [mine]
    body = response.content.decode()
    assert "Their slot" not in body
    assert "Foreign Fei" not in body  # not even in the artist filter


def test_a_foreign_schedule_change_page_is_a_404(producer):
    foreign = make_schedule(artist=make_artist())
    client = login(producer)
    assert client.get(change_url(foreign)).status_code == 404
    assert client.get(reverse("admin:schedules_schedule_delete", args=[foreign.pk])).status_code == 404


def test_the_schedule_artist_dropdown_offers_only_member_artists(producer, artist):
    make_artist()
    response = login(producer).get(ADD)
    assert list(response.context["adminform"].form.fields["artist"].queryset) == [artist]


@pytest.mark.filterwarnings("error::django.core.paginator.UnorderedObjectListWarning")
def test_the_schedule_artist_autocomplete_returns_only_member_artists(producer, artist):
    make_artist()
    response = login(producer).get(
        reverse("admin:autocomplete"),
        {"app_label": "schedules", "model_name": "schedule", "field_name": "artist", "term": ""},
    )
    assert [r["id"] for r in response.json()["results"]] == [str(artist.pk)]


def test_a_member_producer_edits_the_schedule(producer, artist):
    schedule = make_schedule(artist=artist, title="Old")
    client = login(producer)
    data = form_data(client.get(change_url(schedule)))
    data["title"] = "New"
    response = client.post(change_url(schedule), data)
    assert response.status_code == 302, error_text(response)
    schedule.refresh_from_db()
    assert schedule.title == "New"


def test_ops_see_every_schedule():
    schedules = {make_schedule(artist=make_artist()), make_schedule(artist=make_artist())}
    response = login(make_user(role=roles.OPS)).get(CHANGELIST)
    assert set(response.context["cl"].result_list) == schedules


# --- the form -----------------------------------------------------------------------------


def test_weekdays_and_times_round_trip_through_the_form(producer, artist):
    client = login(producer)
    data = _new_schedule_data(client, artist, weekdays=["monday", "friday"], times="09:00, 18:30")
    response = client.post(ADD, data)
    assert response.status_code == 302, error_text(response)
    schedule = Schedule.objects.get(title="Morning news")
    assert (schedule.artist, schedule.weekdays, schedule.times) == (artist, ["monday", "friday"], ["09:00", "18:30"])

    page = client.get(change_url(schedule))
    shown = form_data(page)
    assert shown["weekdays"] == ["monday", "friday"]
    assert shown["times"] == "09:00, 18:30"
    assert 'type="checkbox" name="weekdays" value="friday"' in page.content.decode()
    # Saving the page unchanged keeps the same values.
    assert client.post(change_url(schedule), shown).status_code == 302
    schedule.refresh_from_db()
    assert (schedule.weekdays, schedule.times) == (["monday", "friday"], ["09:00", "18:30"])


def test_month_days_round_trip_through_the_form(producer, artist):
    client = login(producer)
    data = _new_schedule_data(client, artist, period="monthly", month_days="1, 15, 31", times="07:05")
    data.pop("weekdays", None)
    response = client.post(ADD, data)
    assert response.status_code == 302, error_text(response)
    schedule = Schedule.objects.get(title="Morning news")
    assert (schedule.period, schedule.month_days, schedule.times) == ("monthly", [1, 15, 31], ["07:05"])
    assert form_data(client.get(change_url(schedule)))["month_days"] == "1, 15, 31"


def test_a_time_that_is_not_hh_mm_shows_the_error(producer, artist):
    client = login(producer)
    response = client.post(ADD, _new_schedule_data(client, artist, weekdays=["monday"], times="09:00, 25:00"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "Not HH:MM times (00:00 to 23:59): 25:00." in errors["times"]
    assert not Schedule.objects.exists()


def test_month_days_that_are_not_numbers_show_the_error(producer, artist):
    client = login(producer)
    data = _new_schedule_data(client, artist, period="monthly", month_days="1, fifteen", times="09:00")
    response = client.post(ADD, data)
    assert response.status_code == 200
    # Only the parse error: not also "pick at least one day", which would judge the old value.
    assert response.context["adminform"].form.errors["month_days"] == [
        "Separate the values with commas, e.g. 1, 15, 28."
    ]


def test_a_month_day_out_of_range_shows_the_error(producer, artist):
    client = login(producer)
    data = _new_schedule_data(client, artist, period="monthly", month_days="0, 32", times="09:00")
    response = client.post(ADD, data)
    assert response.status_code == 200
    assert "1 to 31" in response.context["adminform"].form.errors["month_days"][0]


def test_a_weekly_schedule_without_weekdays_shows_the_error(producer, artist):
    client = login(producer)
    data = _new_schedule_data(client, artist, times="09:00")
    data.pop("weekdays", None)
    response = client.post(ADD, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["weekdays"] == ["Pick at least one weekday."]


def test_a_one_off_without_trigger_time_shows_the_error(producer, artist):
    client = login(producer)
    data = _new_schedule_data(client, artist, kind="one_off", trigger_at_0="", trigger_at_1="")
    response = client.post(ADD, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["trigger_at"] == ["A one-off schedule needs a trigger time."]
    assert not Schedule.objects.exists()


def test_a_one_off_with_a_trigger_time_is_saved(producer, artist):
    client = login(producer)
    data = _new_schedule_data(client, artist, kind="one_off", trigger_at_0="2030-01-02", trigger_at_1="08:30:00")
    response = client.post(ADD, data)
    assert response.status_code == 302, error_text(response)
    schedule = Schedule.objects.get()
    assert schedule.kind == "one_off" and schedule.trigger_at is not None


def test_an_unknown_time_zone_shows_the_error(producer, artist):
    client = login(producer)
    data = _new_schedule_data(client, artist, weekdays=["monday"], times="09:00", timezone="Mars/Olympus")
    response = client.post(ADD, data)
    assert response.status_code == 200
    assert "is not an IANA time zone" in response.context["adminform"].form.errors["timezone"][0]


# --- when it fires next, and what it did -------------------------------------------------


def test_a_schedule_saved_in_the_admin_shows_its_next_slot_in_its_own_zone(producer, artist):
    client = login(producer)
    data = _new_schedule_data(client, artist, weekdays=["monday", "thursday"], times="09:30", timezone="Asia/Shanghai")
    assert client.post(ADD, data).status_code == 302
    schedule = Schedule.objects.get(title="Morning news")
    local = schedule.next_slot_at.astimezone(zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert local.strftime("%a %H:%M") in {"Mon 09:30", "Thu 09:30"}
    assert timezone.now() < schedule.next_slot_at <= timezone.now() + timedelta(days=4)

    listing = client.get(CHANGELIST).content.decode()
    assert f"{local:%a %Y-%m-%d %H:%M} (Asia/Shanghai)" in listing


def test_changing_the_times_in_the_admin_moves_the_next_slot(producer, artist):
    client = login(producer)
    schedule = make_schedule(artist=artist, weekdays=["monday"], times=["09:00"], timezone="Europe/Berlin")
    data = form_data(client.get(change_url(schedule)))
    data.update(weekdays=["tuesday"], times="18:45")
    assert client.post(change_url(schedule), data).status_code == 302
    schedule.refresh_from_db()
    local = schedule.next_slot_at.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert local.strftime("%a %H:%M") == "Tue 18:45"


def test_a_paused_schedule_has_no_next_slot(producer, artist):
    client = login(producer)
    schedule = make_schedule(artist=artist)
    data = form_data(client.get(change_url(schedule)))
    data.pop("active")
    assert client.post(change_url(schedule), data).status_code == 302
    schedule.refresh_from_db()
    assert schedule.next_slot_at is None
    assert "paused" in client.get(CHANGELIST).content.decode()


def test_the_schedule_page_lists_its_runs_with_links_to_their_posts(producer, artist):
    schedule = make_schedule(artist=artist, title_template="{artist} news {date}")
    post = make_post(artist=artist, title="Made by the scheduler")
    schedule.runs.create(slot_at=timezone.now(), outcome=ScheduleRun.Outcome.CREATED, post=post)
    schedule.runs.create(
        slot_at=timezone.now() - timedelta(days=1), outcome=ScheduleRun.Outcome.MISSED, detail="Scheduler was down."
    )
    body = login(producer).get(change_url(schedule)).content.decode()
    assert "Made by the scheduler" in body and f"/posts/{post.pk}/" in body
    assert "Missed (scheduler was down)" in body and "Scheduler was down." in body


def test_schedule_runs_of_a_foreign_artist_are_not_listed(producer, artist):
    mine = make_schedule(artist=artist, title="Mine")
    theirs = make_schedule(artist=make_artist(stage_name="Foreign Fei"), title="Theirs")
    for schedule in (mine, theirs):
        schedule.runs.create(slot_at=timezone.now(), outcome=ScheduleRun.Outcome.SKIPPED)
    client = login(producer)
    response = client.get(reverse("admin:schedules_schedulerun_changelist"))
    assert [run.schedule for run in response.context["cl"].result_list] == [mine]
    foreign = theirs.runs.get()
    assert client.get(reverse("admin:schedules_schedulerun_change", args=[foreign.pk])).status_code == 404
