import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from schedules.models import Schedule
from tests.factories import make_artist, make_schedule
from tests.validation import clean_errors

pytestmark = pytest.mark.django_db


def weekly(**extra) -> Schedule:
    return Schedule(
        **{"title": "Morning show", "artist": make_artist(), "weekdays": ["monday"], "times": ["09:00"], **extra}
    )


def monthly(**extra) -> Schedule:
    return weekly(**{"period": Schedule.Period.MONTHLY, "weekdays": [], "month_days": [1, 15], **extra})


# Routine: weekly


def test_weekly_routine_with_weekdays_and_times_is_accepted():
    schedule = weekly(weekdays=["monday", "thursday", "sunday"], times=["00:00", "9:30", "18:30", "23:59"])

    assert clean_errors(schedule) == {}


def test_routine_with_bad_times_is_refused_listing_each_bad_one():
    schedule = weekly(times=["09:00", "9.30", "24:00", "18:60", "noon"])

    assert clean_errors(schedule) == {"times": ["Not HH:MM times (00:00 to 23:59): 9.30, 24:00, 18:60, noon."]}


def test_routine_at_24_00_is_refused():
    schedule = weekly(times=["24:00"])

    assert clean_errors(schedule) == {"times": ["Not HH:MM times (00:00 to 23:59): 24:00."]}


def test_routine_with_a_time_that_is_not_text_is_refused():
    schedule = weekly(times=[900, True])

    assert clean_errors(schedule) == {"times": ["Not HH:MM times (00:00 to 23:59): 900, True."]}


@pytest.mark.parametrize("times", [[], "09:00"])
def test_routine_without_a_list_of_times_is_refused(times):
    schedule = weekly(times=times)

    assert clean_errors(schedule) == {"times": ['Give at least one time as "HH:MM", e.g. ["09:00", "18:30"].']}


def test_weekly_routine_with_an_unknown_weekday_is_refused_naming_it():
    schedule = weekly(weekdays=["monday", "Funday", "Tuesday"])

    assert clean_errors(schedule) == {"weekdays": ["Unknown weekdays: Funday, Tuesday. Use monday ... sunday."]}


def test_weekly_routine_without_weekdays_is_refused():
    schedule = weekly(weekdays=[])

    assert clean_errors(schedule) == {"weekdays": ["Pick at least one weekday."]}


# Routine: monthly


def test_monthly_routine_with_days_1_to_31_is_accepted():
    schedule = monthly(month_days=[1, 15, 31])

    assert clean_errors(schedule) == {}


def test_monthly_routine_ignores_weekdays():
    schedule = monthly(weekdays=["funday"])

    assert clean_errors(schedule) == {}


@pytest.mark.parametrize(("days", "shown"), [([0], "0"), ([32], "32"), ([1, 0, 32, 31], "0, 32")])
def test_monthly_routine_with_a_day_outside_1_to_31_is_refused(days, shown):
    schedule = monthly(month_days=days)

    assert clean_errors(schedule) == {"month_days": [f"Days of the month run from 1 to 31; not: {shown}."]}


def test_monthly_routine_with_a_bool_day_is_refused():
    schedule = monthly(month_days=[True, 2])

    assert clean_errors(schedule) == {"month_days": ["Days of the month run from 1 to 31; not: True."]}


def test_monthly_routine_with_a_day_given_as_text_is_refused():
    schedule = monthly(month_days=["1"])

    assert clean_errors(schedule) == {"month_days": ["Days of the month run from 1 to 31; not: 1."]}


def test_monthly_routine_without_days_is_refused():
    schedule = monthly(month_days=[])

    assert clean_errors(schedule) == {"month_days": ["Pick at least one day of the month (1..31)."]}


def test_routine_reports_every_bad_field_at_once():
    schedule = weekly(times=["25:00"], weekdays=["someday"], timezone="Nowhere/City")

    assert clean_errors(schedule) == {
        "timezone": ["“Nowhere/City” is not an IANA time zone such as Asia/Shanghai or Europe/Paris."],
        "times": ["Not HH:MM times (00:00 to 23:59): 25:00."],
        "weekdays": ["Unknown weekdays: someday. Use monday ... sunday."],
    }


# One-off


def test_one_off_with_trigger_time_is_accepted_without_times_or_days():
    schedule = weekly(
        kind=Schedule.Kind.ONE_OFF, weekdays=[], times=[], trigger_at=timezone.now() + dt.timedelta(days=1)
    )

    assert clean_errors(schedule) == {}


def test_one_off_without_trigger_time_is_refused():
    schedule = weekly(kind=Schedule.Kind.ONE_OFF, trigger_at=None)

    assert clean_errors(schedule) == {"trigger_at": ["A one-off schedule needs a trigger time."]}


def test_database_refuses_a_one_off_without_trigger_time():
    artist = make_artist()

    # Straight to the database, past the model's validation: the constraint itself refuses it.
    with pytest.raises(IntegrityError, match="schedule_one_off_has_trigger"), transaction.atomic():
        Schedule.objects.create(
            title="Flash", artist=artist, kind=Schedule.Kind.ONE_OFF, trigger_at=None, times=["09:00"]
        )


def test_database_accepts_a_routine_without_trigger_time():
    schedule = make_schedule(artist=make_artist(), kind=Schedule.Kind.ROUTINE, trigger_at=None)

    assert Schedule.objects.filter(pk=schedule.pk).exists()


# Time zone


@pytest.mark.parametrize("name", ["Asia/Shanghai", "Europe/Paris", "UTC"])
def test_iana_timezone_is_accepted(name):
    assert clean_errors(weekly(timezone=name)) == {}


@pytest.mark.parametrize("name", ["Mars/Olympus", "GMT+8", "../etc/passwd", "Europe/Paris/"])
def test_unknown_timezone_is_refused_naming_it(name):
    schedule = weekly(timezone=name)

    assert clean_errors(schedule) == {
        "timezone": [f"“{name}” is not an IANA time zone such as Asia/Shanghai or Europe/Paris."]
    }


@pytest.mark.parametrize("name", ["Asia", "America"])
def test_timezone_region_folder_is_refused_not_crashing(name):
    schedule = weekly(timezone=name)

    assert clean_errors(schedule) == {
        "timezone": [f"“{name}” is not an IANA time zone such as Asia/Shanghai or Europe/Paris."]
    }


def test_default_timezone_comes_from_settings(settings):
    settings.MCN_DEFAULT_SCHEDULE_TIMEZONE = "Europe/Paris"

    schedule = make_schedule(artist=make_artist())

    assert Schedule().timezone == "Europe/Paris"
    assert Schedule.objects.get(pk=schedule.pk).timezone == "Europe/Paris"


def test_default_timezone_is_the_configured_one(settings):
    assert Schedule().timezone == settings.MCN_DEFAULT_SCHEDULE_TIMEZONE
