from django.db.models import QuerySet

from artists.selectors import artists_visible_to
from schedules.models import Schedule


def schedules_visible_to(*, user) -> QuerySet[Schedule]:
    """Schedules of the artists this user may see."""
    return Schedule.objects.filter(artist__in=artists_visible_to(user=user))
