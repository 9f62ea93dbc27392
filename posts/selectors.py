from django.db.models import QuerySet

from artists.selectors import artists_visible_to
from posts.models import Post, PostEvent, Shot


def posts_visible_to(*, user) -> QuerySet[Post]:
    """Posts of the artists this user may see."""
    return Post.objects.filter(artist__in=artists_visible_to(user=user))


def shots_visible_to(*, user) -> QuerySet[Shot]:
    return Shot.objects.filter(post__artist__in=artists_visible_to(user=user))


def post_events_visible_to(*, user) -> QuerySet[PostEvent]:
    return PostEvent.objects.filter(post__artist__in=artists_visible_to(user=user))
