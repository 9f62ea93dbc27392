"""Schedules: rules that create draft posts for an artist at set times."""

import re
import string
import zoneinfo
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from artists.models import SANITY_ID_HELP, sanity_id_unique
from mcn_site.lib.text import NulFreeText

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
TIME_RE = re.compile(r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$")


TITLE_FIELDS = ("artist", "schedule", "date", "time", "weekday")
# When a trigger time may lie (UTC). Wider is a typo (9999-12-31), and near the ends of what Python
# can hold, its wall-clock time in some zone does not exist (schedules.slots treats those as no slot).
TRIGGER_RANGE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _as_typed(name: str, spec: str, conversion: str | None) -> str:
    """A placeholder as it was written: {name}, {name!r}, {name:>9}."""
    return "{%s%s%s}" % (name, f"!{conversion}" if conversion else "", f":{spec}" if spec else "")  # noqa: UP031


def title_template_problem(template: str) -> str:
    """Why `template` is not a title template ("" when it is): only plain {name}s of TITLE_FIELDS.

    No format spec or conversion: `{artist:>100000000}` would build a 100 MB title at every firing.
    """
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as error:  # a lone "{" or "}"
        return f"{error} (write {{{{ and }}}} for a brace in the title)"
    bad = [
        _as_typed(name, spec, conversion)
        for _literal, name, spec, conversion in pieces
        if name is not None and (name not in TITLE_FIELDS or spec or conversion)
    ]
    return f"not allowed: {', '.join(bad)}" if bad else ""


def title_render(template: str, values: dict[str, str]) -> str:
    """The title made from `template`; a placeholder it cannot fill stays as typed (rows saved before the
    rule), so the result is never longer than the template and the values together."""
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError:
        return template
    out = []
    for literal, name, spec, conversion in pieces:
        out.append(literal)
        if name is None:
            continue
        if name in values and not spec and not conversion:
            out.append(values[name])
        else:
            out.append(_as_typed(name, spec, conversion))
    return "".join(out)


def default_timezone() -> str:
    return settings.MCN_DEFAULT_SCHEDULE_TIMEZONE


class ScheduleQuerySet(models.QuerySet):
    def due(self, *, now) -> "ScheduleQuerySet":
        """Active schedules whose next slot has come, or whose next slot was never computed."""
        return self.filter(Q(next_slot_at__lte=now) | Q(next_slot_at__isnull=True), active=True)


class Schedule(NulFreeText, models.Model):
    class Kind(models.TextChoices):
        ROUTINE = "routine", "Routine"
        ONE_OFF = "one_off", "One-off"

    class Period(models.TextChoices):
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"

    title = models.CharField(max_length=200)
    artist = models.ForeignKey("artists.Artist", on_delete=models.CASCADE, related_name="schedules")
    active = models.BooleanField(default=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.ROUTINE)
    period = models.CharField(max_length=20, choices=Period.choices, default=Period.WEEKLY)
    weekdays = models.JSONField(default=list, blank=True, help_text='Weekly: e.g. ["monday", "thursday"].')
    month_days = models.JSONField(
        default=list,
        blank=True,
        help_text="Monthly: days 1..31. A day the month does not have (31 in April) is skipped.",
    )
    times = models.JSONField(default=list, blank=True, help_text='Routine: one or more "HH:MM" times.')
    # A naive value (as typed in the admin or sent without an offset) is read in `timezone` by clean().
    trigger_at = models.DateTimeField(null=True, blank=True, help_text="One-off: when to fire.")
    timezone = models.CharField(
        max_length=64, default=default_timezone, help_text="IANA time zone the times are in, e.g. Asia/Shanghai."
    )
    source_override = models.ManyToManyField(
        "artists.Source", blank=True, related_name="+", help_text="Leave empty to use the artist's default sources."
    )
    title_template = models.CharField(
        max_length=200,
        default="{artist} · {date}",
        help_text="Title of each post it makes. Fills in {artist}, {schedule}, {date}, {time} and {weekday} "
        "(the slot's, in the schedule's time zone).",
    )
    brief = models.TextField(blank=True, help_text="What its posts are about; the director writes from this.")
    auto_generate = models.BooleanField(default=False, help_text="Write the storyboard as soon as the post is made.")
    last_executed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The scheduler's cursor: the first slot not yet handled. Set by schedules.services.schedule_save
    # from "now" whenever the rule changes, so an edit takes effect from the next slot.
    next_slot_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sanity_id = models.CharField(max_length=200, blank=True, editable=False, help_text=SANITY_ID_HELP)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["artist", "title"]
        indexes = [
            # The scheduler's tick: Schedule.objects.due(now=...), active and next_slot_at <= now.
            models.Index(fields=["active", "next_slot_at"], name="schedule_due_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="one_off") | Q(trigger_at__isnull=False), name="schedule_one_off_has_trigger"
            ),
            sanity_id_unique("schedule_sanity_id_unique"),
        ]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        errors: dict[str, str] = {}
        # OSError: a region such as "Asia" is a folder of zones, not a zone, and opening it fails.
        try:
            zone = zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            zone = None
            errors["timezone"] = f"“{self.timezone}” is not an IANA time zone such as Asia/Shanghai or Europe/Paris."
        if problem := title_template_problem(self.title_template):
            names = ", ".join("{%s}" % name for name in TITLE_FIELDS)  # noqa: UP031 - braces are the point
            errors["title_template"] = f"Use only these placeholders, each as plain {{name}}: {names} ({problem})."
        if self.trigger_at is not None and (problem := self._place_trigger(zone)):
            errors["trigger_at"] = problem
        if self.kind == self.Kind.ONE_OFF:
            if self.trigger_at is None:
                errors["trigger_at"] = "A one-off schedule needs a trigger time."
        else:
            errors.update(self._routine_errors())
        if errors:
            raise ValidationError(errors)

    def _place_trigger(self, zone: zoneinfo.ZoneInfo | None) -> str:
        """Read a naive trigger time on the schedule's wall clock (API and admin send one as typed); return
        why it cannot be used, or "". A time the clocks skip or repeat is taken as schedules.slots takes
        a routine's: the offset before the change."""
        moment = self.trigger_at
        if moment.tzinfo is None or moment.utcoffset() is None:
            if zone is None:
                return ""  # the time zone's own error says what to fix
            moment = moment.replace(tzinfo=zone)
        earliest, latest = TRIGGER_RANGE
        if not earliest <= moment < latest:
            return (
                f"Pick a time from {earliest:%Y-%m-%d} to {latest.year - 1}-12-31 (UTC): "
                f"{moment.isoformat(sep=' ', timespec='seconds')} is out of range."
            )
        self.trigger_at = moment.astimezone(UTC)
        return ""

    def _routine_errors(self) -> dict[str, str]:
        errors = {}
        times = self.times if isinstance(self.times, list) else None
        if not times:
            errors["times"] = 'Give at least one time as "HH:MM", e.g. ["09:00", "18:30"].'
        else:
            bad = [str(t) for t in times if not isinstance(t, str) or not TIME_RE.match(t)]
            if bad:
                errors["times"] = f"Not HH:MM times (00:00 to 23:59): {', '.join(bad)}."
        if self.period == self.Period.WEEKLY:
            days = self.weekdays if isinstance(self.weekdays, list) else None
            if not days:
                errors["weekdays"] = "Pick at least one weekday."
            else:
                bad = [str(d) for d in days if d not in WEEKDAYS]
                if bad:
                    errors["weekdays"] = f"Unknown weekdays: {', '.join(bad)}. Use monday ... sunday."
        else:
            days = self.month_days if isinstance(self.month_days, list) else None
            if not days:
                errors["month_days"] = "Pick at least one day of the month (1..31)."
            else:
                bad = [str(d) for d in days if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 31]
                if bad:
                    errors["month_days"] = f"Days of the month run from 1 to 31; not: {', '.join(bad)}."
        return errors


class ScheduleRun(models.Model):
    """What the scheduler did with one slot of one schedule: exactly one row per slot."""

    class Outcome(models.TextChoices):
        CREATED = "created", "Post created"
        MISSED = "missed", "Missed (scheduler was down)"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="runs")
    slot_at = models.DateTimeField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    post = models.ForeignKey("posts.Post", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-slot_at", "-id"]
        constraints = [
            # Exactly once per slot, however many scheduler processes tick at the same moment.
            models.UniqueConstraint(fields=["schedule", "slot_at"], name="schedule_run_once_per_slot"),
            models.CheckConstraint(
                condition=Q(outcome__in=["created", "missed", "skipped", "failed"]), name="schedule_run_outcome_valid"
            ),
        ]
        indexes = [
            # The calendar's past runs, newest first, across the visible artists' schedules.
            models.Index(fields=["slot_at"], name="schedule_run_slot_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.schedule} @ {self.slot_at:%Y-%m-%d %H:%M} UTC: {self.get_outcome_display()}"
