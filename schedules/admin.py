from datetime import datetime

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AdminSplitDateTime
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from artists.selectors import artists_visible_to
from mcn_site.lib.admin import ScopedAdmin, ScopedRelatedFieldListFilter, badge
from mcn_site.lib.forms import AdminModelForm, CommaSeparatedField
from schedules.models import WEEKDAYS, Schedule, ScheduleRun
from schedules.selectors import schedule_runs_visible_to, schedules_visible_to
from schedules.services import schedule_save
from schedules.slots import wall_time

RECENT_RUNS = 20
OUTCOME_COLOURS = {
    ScheduleRun.Outcome.CREATED: "#16a34a",
    ScheduleRun.Outcome.MISSED: "#d97706",
    ScheduleRun.Outcome.SKIPPED: "#9ca3af",
    ScheduleRun.Outcome.FAILED: "#dc2626",
}


def _local(schedule: Schedule, moment) -> str:
    shown = wall_time(schedule, moment)
    if shown is None:
        return "–" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"
    return f"{shown:%a %Y-%m-%d %H:%M} ({schedule.timezone})"


def outcome_badge(run: ScheduleRun) -> str:
    return badge(run.get_outcome_display(), OUTCOME_COLOURS[run.outcome])


def post_link(run: ScheduleRun) -> str:
    if run.post_id is None:
        return "–"
    return format_html('<a href="{}">{}</a>', reverse("posts:storyboard", args=[run.post_id]), run.post)


class WallClockDateTimeField(forms.SplitDateTimeField):
    """A date and a time as typed, without a zone: Schedule.clean reads them in the schedule's time zone
    (the server's zone, which Django's own field would apply, is not the schedule's)."""

    def compress(self, data_list):
        if not data_list:
            return None
        if data_list[0] in self.empty_values:
            raise forms.ValidationError(self.error_messages["invalid_date"], code="invalid_date")
        if data_list[1] in self.empty_values:
            raise forms.ValidationError(self.error_messages["invalid_time"], code="invalid_time")
        return datetime.combine(*data_list)


class ScheduleForm(AdminModelForm):
    trigger_at = WallClockDateTimeField(
        required=False,
        widget=AdminSplitDateTime,
        help_text="One-off: when to fire, in the schedule's time zone.",
    )
    weekdays = forms.MultipleChoiceField(
        choices=[(d, d.title()) for d in WEEKDAYS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Weekly schedules fire on these days.",
    )
    month_days = CommaSeparatedField(
        item=int,
        help_text="Monthly schedules: days 1..31, separated by commas. "
        "A day the month does not have (31 in April) is skipped that month.",
    )
    times = CommaSeparatedField(
        help_text='Routine schedules: one or more "HH:MM" times, e.g. 09:00, 18:30, in the schedule\'s time zone. '
        "On the night clocks go forward, a time that does not exist (02:30) fires once, an hour later on the "
        "clock; on the night they go back, a time that happens twice fires once, the first time."
    )

    class Meta:
        model = Schedule
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        shown = wall_time(self.instance, self.instance.trigger_at)
        if shown is not None:  # shown on the schedule's wall clock, as it is typed
            self.initial["trigger_at"] = shown.replace(tzinfo=None)


@admin.register(Schedule)
class ScheduleAdmin(ScopedAdmin):
    form = ScheduleForm
    scope = staticmethod(schedules_visible_to)
    scoped_fields = {"artist": artists_visible_to}
    list_display = [
        "state",
        "title",
        "artist",
        "kind",
        "when",
        "timezone",
        "next_slot",
        "auto_generate",
        "last_executed_at",
    ]
    list_display_links = ["title"]
    list_filter = ["active", "kind", "period", ("artist", ScopedRelatedFieldListFilter)]
    list_select_related = ["artist"]
    search_fields = ["title", "artist__stage_name", "sanity_id"]
    autocomplete_fields = ["artist"]
    filter_horizontal = ["source_override"]
    readonly_fields = ["next_slot", "recent_runs", "last_executed_at", "created_at", "updated_at", "sanity_id"]
    fieldsets = [
        (None, {"fields": ["title", "artist", "active", "kind", "timezone"]}),
        ("🔄 Routine", {"fields": ["period", "weekdays", "month_days", "times"]}),
        (
            "⚡️ One-off",
            {
                "fields": ["trigger_at"],
                "description": "A one-off whose time has already passed fires at once if it is within the "
                "scheduler's grace window (MCN_SCHEDULE_GRACE_MINUTES), otherwise it is recorded as missed.",
            },
        ),
        ("Content", {"fields": ["title_template", "brief", "source_override", "auto_generate"]}),
        (
            "System",
            {"fields": ["next_slot", "recent_runs", "last_executed_at", "created_at", "updated_at", "sanity_id"]},
        ),
    ]

    def save_model(self, request, obj, form, change):
        # Through the service: a new or changed rule takes effect from the next slot.
        schedule_save(schedule=obj)

    @admin.display(description="Recent runs")
    def recent_runs(self, schedule):
        runs = schedule.runs.select_related("post")[:RECENT_RUNS] if schedule.pk else []
        if not runs:
            return "None yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((_local(schedule, run.slot_at), outcome_badge(run), post_link(run), run.detail) for run in runs),
        )
        return format_html('<table class="schedule-runs"><tbody>{}</tbody></table>', rows)

    @admin.display(description="Next slot", ordering="next_slot_at")
    def next_slot(self, schedule):
        if not schedule.active:
            return "paused"
        return _local(schedule, schedule.next_slot_at)

    @admin.display(description="", ordering="active")
    def state(self, schedule):
        return badge("on", "#16a34a") if schedule.active else badge("off", "#9ca3af")

    @admin.display(description="When")
    def when(self, schedule):
        if schedule.kind == Schedule.Kind.ONE_OFF:
            return _local(schedule, schedule.trigger_at)
        days = (
            ", ".join(d[:3].title() for d in schedule.weekdays)
            if schedule.period == Schedule.Period.WEEKLY
            else "days " + ", ".join(str(d) for d in schedule.month_days)
        )
        return f"{days} at {', '.join(schedule.times)}"


@admin.register(ScheduleRun)
class ScheduleRunAdmin(ScopedAdmin):
    """What the scheduler did with each slot; written by the scheduler only."""

    scope = staticmethod(schedule_runs_visible_to)
    list_display = ["slot_at", "schedule", "artist", "outcome_badge", "post_link", "detail"]
    list_filter = ["outcome"]
    list_select_related = ["schedule__artist", "post"]
    search_fields = ["schedule__title", "schedule__artist__stage_name"]
    date_hierarchy = "slot_at"

    outcome_badge = admin.display(description="Outcome", ordering="outcome")(staticmethod(outcome_badge))
    post_link = admin.display(description="Post")(staticmethod(post_link))

    @admin.display(description="Artist", ordering="schedule__artist__stage_name")
    def artist(self, run):
        return run.schedule.artist

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
