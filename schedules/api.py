"""The integration API for schedules and what the scheduler did: /api/v1/schedules, /api/v1/schedule-runs.

Schedules are written through schedules.services.schedule_save (a new or changed rule counts from the next
slot after now), so the API, the admin and the scheduler agree on the cursor. Who sees which schedule is
schedules.selectors; another team's schedule is a 404. Reviewers read, producers and ops write, as in the admin.
Schedule runs are written by the scheduler only: read-only here.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from artists.api import LIST_ERRORS
from artists.models import Artist, Source
from artists.selectors import artists_visible_to
from mcn_site.lib.api import ERRORS, HasModelPermission, IdFilter, InstantRangeFilter
from schedules.models import WEEKDAYS, Schedule, ScheduleRun
from schedules.selectors import schedule_runs_visible_to, schedules_visible_to
from schedules.services import schedule_save
from schedules.slots import next_slot, wall_time

UPCOMING_SLOTS = 10
TIME_PATTERN = r"^([01]?[0-9]|2[0-3]):[0-5][0-9]\Z"  # \Z: "09:00\n" is not a time ($ would let it through)


def upcoming_slots(schedule: Schedule, *, now: datetime, limit: int = UPCOMING_SLOTS) -> list[datetime]:
    """The next `limit` slots the scheduler will fire, as UTC instants: none while it or its artist is paused.

    From the scheduler's cursor when it lies ahead of now (a slot before it is already handled), as the
    calendar counts them (schedules.selectors).
    """
    if not (schedule.active and schedule.artist.active):
        return []
    after = now
    if schedule.next_slot_at is not None and schedule.next_slot_at > now:
        after = schedule.next_slot_at - timedelta(microseconds=1)
    found: list[datetime] = []
    while len(found) < limit:
        slot = next_slot(schedule, after)
        if slot is None:
            break
        found.append(slot)
        after = slot
    return found


class VisibleArtistField(serializers.PrimaryKeyRelatedField):
    """An artist id the user may see: another team's artist reads as "does not exist", never as forbidden."""

    def get_queryset(self):
        request = self.context.get("request")
        if request is None:
            return Artist.objects.none()
        return artists_visible_to(user=request.user)


class SlotSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="The slot as an instant (UTC).")
    local = serializers.DateTimeField(help_text="The same instant in the schedule's own time zone.")


class WallClockDateTimeField(serializers.DateTimeField):
    """An instant with an offset as sent; one without stays naive, for Schedule.clean to read on the
    schedule's own wall clock (not in the server's zone)."""

    def enforce_timezone(self, value):
        return value if timezone.is_naive(value) else super().enforce_timezone(value)


class ScheduleSerializer(serializers.ModelSerializer):
    artist = VisibleArtistField(queryset=Artist.objects.all())
    trigger_at = WallClockDateTimeField(
        required=False,
        allow_null=True,
        help_text="One-off: when to fire, ISO 8601, from 2000-01-01 to 2099-12-31. Without an offset "
        '("2026-03-08T02:30") it is read in the schedule\'s `timezone`; answers carry it in UTC.',
    )
    weekdays = serializers.ListField(
        child=serializers.ChoiceField(choices=WEEKDAYS), required=False, help_text='Weekly: e.g. ["monday"].'
    )
    month_days = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=31),
        required=False,
        help_text="Monthly: days 1..31. A day the month does not have (31 in April) is skipped.",
    )
    times = serializers.ListField(
        child=serializers.RegexField(TIME_PATTERN, max_length=5),
        required=False,
        help_text='Routine: one or more "HH:MM" times in the schedule\'s time zone.',
    )
    source_override = serializers.PrimaryKeyRelatedField(many=True, required=False, queryset=Source.objects.all())
    upcoming_slots = serializers.SerializerMethodField(help_text=f"The next {UPCOMING_SLOTS} slots.")

    class Meta:
        model = Schedule
        fields = [
            "id",
            "title",
            "artist",
            "active",
            "kind",
            "period",
            "weekdays",
            "month_days",
            "times",
            "trigger_at",
            "timezone",
            "source_override",
            "title_template",
            "brief",
            "auto_generate",
            "next_slot_at",
            "upcoming_slots",
            "last_executed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["next_slot_at", "last_executed_at", "created_at", "updated_at"]

    @extend_schema_field(SlotSerializer(many=True))
    def get_upcoming_slots(self, schedule: Schedule) -> list[dict]:
        now = self.context.get("now") or timezone.now()
        at = serializers.DateTimeField()
        return [
            {"at": at.to_representation(slot), "local": (wall_time(schedule, slot) or slot).isoformat()}
            for slot in upcoming_slots(schedule, now=now)
        ]


class ScheduleFilter(filters.FilterSet):
    artist = IdFilter(field_name="artist_id")

    class Meta:
        model = Schedule
        fields = ["artist", "active", "kind", "period"]


class ScheduleRunSerializer(serializers.ModelSerializer):
    artist = serializers.IntegerField(source="schedule.artist_id", read_only=True)
    schedule_title = serializers.CharField(source="schedule.title", read_only=True)

    class Meta:
        model = ScheduleRun
        fields = ["id", "schedule", "schedule_title", "artist", "slot_at", "outcome", "post", "detail", "created_at"]


class ScheduleRunFilter(filters.FilterSet):
    schedule = IdFilter(field_name="schedule_id")
    artist = IdFilter(field_name="schedule__artist_id")
    slot_at = InstantRangeFilter(
        field_name="slot_at", label="Slot from (slot_at_after) and up to (slot_at_before), inclusive, ISO 8601."
    )

    class Meta:
        model = ScheduleRun
        fields = ["schedule", "artist", "outcome", "slot_at"]


SCHEDULE_EXAMPLE = OpenApiExample(
    "Mondays and Thursdays at 09:00 Shanghai time",
    request_only=True,
    value={
        "title": "Morning markets",
        "artist": 1,
        "kind": "routine",
        "period": "weekly",
        "weekdays": ["monday", "thursday"],
        "times": ["09:00"],
        "timezone": "Asia/Shanghai",
        "brief": "Three things that moved the market overnight.",
        "auto_generate": True,
    },
)
WRITE_ERRORS = {k: ERRORS[k] for k in [400, 401, 403, 404]}


@extend_schema_view(
    list=extend_schema(
        tags=["schedules"],
        summary="List schedules",
        description="Schedules of the artists you work on, each with its next slots.",
        responses={200: ScheduleSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        tags=["schedules"],
        summary="One schedule with its next slots",
        responses={200: ScheduleSerializer, 401: ERRORS[401], 404: ERRORS[404]},
    ),
    create=extend_schema(
        tags=["schedules"],
        summary="Add a schedule",
        description="Its first slot is the first one after now. A bad time zone, time or weekday is a 400 naming "
        "the field.",
        examples=[SCHEDULE_EXAMPLE],
        responses={201: ScheduleSerializer, 400: ERRORS[400], 401: ERRORS[401], 403: ERRORS[403]},
    ),
    update=extend_schema(
        tags=["schedules"],
        summary="Replace a schedule",
        description="A changed rule takes effect from the next slot after now.",
        responses={200: ScheduleSerializer, **WRITE_ERRORS},
    ),
    partial_update=extend_schema(
        tags=["schedules"],
        summary="Change a schedule",
        description="A changed rule takes effect from the next slot after now; pause with `active: false`.",
        responses={200: ScheduleSerializer, **WRITE_ERRORS},
    ),
    destroy=extend_schema(
        tags=["schedules"],
        summary="Delete a schedule",
        description="Its run history goes with it; the posts it made stay.",
        responses={204: None, 401: ERRORS[401], 403: ERRORS[403], 404: ERRORS[404]},
    ),
)
class ScheduleViewSet(viewsets.ModelViewSet):
    serializer_class = ScheduleSerializer
    queryset = Schedule.objects.all()  # the model for HasModelPermission; rows come from get_queryset
    permission_classes = [HasModelPermission]
    lookup_value_converter = "int"
    filterset_class = ScheduleFilter
    ordering_fields = ["title", "next_slot_at", "created_at", "id"]
    ordering = ["title", "id"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular building the schema
            return Schedule.objects.none()
        return schedules_visible_to(user=self.request.user).select_related("artist").prefetch_related("source_override")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        schedule = self._save(Schedule(), serializer.validated_data)
        return Response(self.get_serializer(schedule).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        schedule = self.get_object()
        serializer = self.get_serializer(schedule, data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        schedule = self._save(schedule, serializer.validated_data)
        return Response(self.get_serializer(schedule).data)

    @staticmethod
    def _save(schedule: Schedule, data: dict) -> Schedule:
        """Through the service: validated by the model (400 with its field errors), the cursor moved from now."""
        sources = data.pop("source_override", None)
        for name, value in data.items():
            setattr(schedule, name, value)
        # The model's ValidationError (full_clean in the service) is a 400 naming its fields (mcn_site.lib.api).
        with transaction.atomic():
            schedule = schedule_save(schedule=schedule)
            if sources is not None:
                schedule.source_override.set(sources)
        return schedule


@extend_schema_view(
    list=extend_schema(
        tags=["schedules"],
        summary="What the scheduler did with each slot",
        description="One row per slot of each schedule you may see, newest slot first: a post created, missed "
        "(the scheduler was down), skipped (the artist is inactive) or failed. Filter by a slot range with "
        "`slot_at_after` and `slot_at_before`.",
        responses={200: ScheduleRunSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        tags=["schedules"],
        summary="One schedule run",
        responses={200: ScheduleRunSerializer, 401: ERRORS[401], 404: ERRORS[404]},
    ),
)
class ScheduleRunViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ScheduleRunSerializer
    queryset = ScheduleRun.objects.all()
    permission_classes = [HasModelPermission]
    lookup_value_converter = "int"
    filterset_class = ScheduleRunFilter
    ordering_fields = ["slot_at", "id"]
    ordering = ["-slot_at", "-id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ScheduleRun.objects.none()
        return schedule_runs_visible_to(user=self.request.user).select_related("schedule")


router = SimpleRouter(use_regex_path=False)  # <int:pk>, as the posts API: "abc" is a 404 before any view
router.register("schedules", ScheduleViewSet, basename="schedule")
router.register("schedule-runs", ScheduleRunViewSet, basename="schedule-run")

urlpatterns = router.urls
