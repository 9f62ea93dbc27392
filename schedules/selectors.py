from django.db.models import QuerySet

from artists.selectors import artists_visible_to
from schedules.models import Schedule, ScheduleRun


def schedules_visible_to(*, user) -> QuerySet[Schedule]:
    """Schedules of the artists this user may see."""
    return Schedule.objects.filter(artist__in=artists_visible_to(user=user))


def schedule_runs_visible_to(*, user) -> QuerySet[ScheduleRun]:
    """Runs of the schedules this user may see."""
    return ScheduleRun.objects.filter(schedule__artist__in=artists_visible_to(user=user))
