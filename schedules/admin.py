from django import forms
from django.contrib import admin

from artists.selectors import artists_visible_to
from mcn_site.lib.admin import ScopedAdmin, ScopedRelatedFieldListFilter, badge
from mcn_site.lib.forms import AdminModelForm, CommaSeparatedField
from schedules.models import WEEKDAYS, Schedule
from schedules.selectors import schedules_visible_to


class ScheduleForm(AdminModelForm):
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
    times = CommaSeparatedField(help_text='Routine schedules: one or more "HH:MM" times, e.g. 09:00, 18:30.')

    class Meta:
        model = Schedule
        fields = "__all__"


@admin.register(Schedule)
class ScheduleAdmin(ScopedAdmin):
    form = ScheduleForm
    scope = staticmethod(schedules_visible_to)
    scoped_fields = {"artist": artists_visible_to}
    list_display = ["state", "title", "artist", "kind", "when", "timezone", "auto_generate", "last_executed_at"]
    list_display_links = ["title"]
    list_filter = ["active", "kind", "period", ("artist", ScopedRelatedFieldListFilter)]
    list_select_related = ["artist"]
    search_fields = ["title", "artist__stage_name"]
    autocomplete_fields = ["artist"]
    filter_horizontal = ["source_override"]
    readonly_fields = ["last_executed_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["title", "artist", "active", "kind", "timezone"]}),
        ("🔄 Routine", {"fields": ["period", "weekdays", "month_days", "times"]}),
        ("⚡️ One-off", {"fields": ["trigger_at"]}),
        ("Content", {"fields": ["source_override", "auto_generate"]}),
        ("System", {"fields": ["last_executed_at", "created_at", "updated_at"]}),
    ]

    @admin.display(description="", ordering="active")
    def state(self, schedule):
        return badge("on", "#16a34a") if schedule.active else badge("off", "#9ca3af")

    @admin.display(description="When")
    def when(self, schedule):
        if schedule.kind == Schedule.Kind.ONE_OFF:
            return schedule.trigger_at
        days = (
            ", ".join(d[:3].title() for d in schedule.weekdays)
            if schedule.period == Schedule.Period.WEEKLY
            else "days " + ", ".join(str(d) for d in schedule.month_days)
        )
        return f"{days} at {', '.join(schedule.times)}"
