"""The schedules calendar: what fires in the next days, per artist, and what the scheduler did."""

import functools
import zoneinfo

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from artists.selectors import artists_visible_to
from schedules.selectors import calendar_for

DAY_CHOICES = (7, 30)


@functools.cache
def zone_names() -> list[str]:
    """Every IANA zone this machine knows, sorted (the page's time zone suggestions)."""
    return sorted(zoneinfo.available_timezones())


def display_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone named `name`, or None if it is not an IANA zone (never a file path or a folder)."""
    return zoneinfo.ZoneInfo(name) if name in zone_names() else None


@login_required
@require_GET
def calendar(request):
    days = int(request.GET["days"]) if request.GET.get("days") in {str(d) for d in DAY_CHOICES} else DAY_CHOICES[0]
    tz_name = request.GET.get("tz", "").strip()
    zone = display_zone(tz_name) if tz_name else None
    bad_tz = tz_name if tz_name and zone is None else ""
    if zone is None:
        zone = zoneinfo.ZoneInfo(settings.MCN_DEFAULT_SCHEDULE_TIMEZONE)
    artist = request.GET.get("artist", "")
    artist_id = int(artist) if artist.isdecimal() and len(artist) < 12 else None
    return render(
        request,
        "schedules/calendar.html",
        {
            "calendar": calendar_for(user=request.user, now=timezone.now(), days=days, zone=zone, artist_id=artist_id),
            "artists": artists_visible_to(user=request.user).order_by("stage_name", "pk"),
            "day_choices": DAY_CHOICES,
            "zone_names": zone_names(),
            "bad_tz": bad_tz,
            "selected": {"days": days, "tz": zone.key, "artist": str(artist_id or "")},
        },
    )
