"""Who may see which artist. Views, API, admin and consumers all ask here."""

from django.db.models import QuerySet

from artists.models import Artist
from mcn_site.lib.roles import is_ops


def artists_visible_to(*, user) -> QuerySet[Artist]:
    """Every artist for ops; for anyone else only the artists they are a member of."""
    if is_ops(user):
        return Artist.objects.all()
    if not user.is_authenticated:
        return Artist.objects.none()
    return Artist.objects.with_member(user)
