"""Template tags for other apps' pages: `artists` may not import `schedules`, but its templates may load these."""

from django import template
from django.utils import timezone

from schedules.selectors import next_slots_for

register = template.Library()

NEXT_SLOTS = 10


@register.inclusion_tag("schedules/next_slots.html", takes_context=True)
def next_slots(context, artist, limit: int = NEXT_SLOTS):
    """`{% next_slots artist %}`: the artist's next slots across its active schedules, in their own time zones."""
    return {
        "artist": artist,
        "slots": next_slots_for(artist=artist, now=timezone.now(), limit=limit),
        "perms": context.get("perms"),
    }
