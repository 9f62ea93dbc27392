"""Schedule writes and the scheduler's tick: each slot of each schedule handled exactly once."""

import logging
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from artists.models import Source
from posts.director.jobs import storyboard_generate
from posts.services import post_create
from posts.webhooks import schedule_fired
from schedules.models import WEEKDAYS, Schedule, ScheduleRun, title_render
from schedules.slots import next_slot, slots_between

log = logging.getLogger(__name__)

# The fields that make up "when it fires": changing any of them restarts the cursor from now.
RULE_FIELDS = ("active", "kind", "period", "weekdays", "month_days", "times", "trigger_at", "timezone")
# Slots older than this are not even recorded as missed: after a long outage, the calendar shows
# the last month of misses, not years of them.
MISSED_LOOKBACK = timedelta(days=31)
# Due schedules whose sources are read together (one IN list: SQLite caps the parameters of a query).
SOURCES_BATCH = 500


def _rule(schedule: Schedule) -> tuple:
    return tuple(getattr(schedule, name) for name in RULE_FIELDS)


def _first_slot(schedule: Schedule, *, now: datetime) -> datetime | None:
    if schedule.kind == Schedule.Kind.ONE_OFF:
        # A one-off keeps its own time even if it has passed: within the grace window it still
        # fires, older it is recorded as missed. Unless that slot was handled already.
        handled = schedule.pk and schedule.runs.filter(slot_at=schedule.trigger_at).exists()
        return None if handled else schedule.trigger_at
    return next_slot(schedule, now)


@transaction.atomic
def schedule_save(*, schedule: Schedule, now: datetime | None = None) -> Schedule:
    """Validate and save a schedule. A new or changed rule takes effect from the next slot after `now`."""
    now = now or timezone.now()
    schedule.full_clean()
    # Race: a tick may have handled a slot since this copy was read (an admin form). Locked, the row
    # gives the scheduler's fields as they are now; saving the copy's would move the cursor back to a
    # handled slot and forget last_executed_at. (of=self: the default ordering joins the artist.)
    locked = Schedule.objects.select_for_update(of=("self",))
    before = locked.filter(pk=schedule.pk).first() if schedule.pk else None
    if before is not None:
        schedule.next_slot_at, schedule.last_executed_at = before.next_slot_at, before.last_executed_at
    if before is None or _rule(before) != _rule(schedule):
        schedule.next_slot_at = _first_slot(schedule, now=now) if schedule.active else None
    schedule.save()
    return schedule


@dataclass
class TickResult:
    created: list[int] = field(default_factory=list)  # post ids
    missed: int = 0
    skipped: int = 0
    failed: int = 0
    schedules: int = 0

    def __str__(self) -> str:
        return (
            f"{self.schedules} schedules due: {len(self.created)} posts created, {self.missed} missed, "
            f"{self.skipped} skipped, {self.failed} failed"
        )


def schedule_tick(*, now: datetime | None = None, grace: timedelta | None = None) -> TickResult:
    """Handle every slot that has come: fire those within `grace` of `now`, record older ones as missed.

    Safe to run in any number of processes at once and to repeat: a slot's ScheduleRun row is unique
    per (schedule, slot) and is written in the same transaction as the post it creates.
    """
    now = now or timezone.now()
    grace = settings.MCN_SCHEDULE_GRACE if grace is None else grace
    result = TickResult()
    # A one-off without a cursor has no slot left (fired, or older than MISSED_LOOKBACK: schedule_save
    # always gives a pending one its trigger time). Left "due", it would cost every tick a locked read
    # forever. A routine schedule always has a next slot: without a cursor it was never computed.
    due = Schedule.objects.due(now=now).exclude(kind=Schedule.Kind.ONE_OFF, next_slot_at__isnull=True)
    due_ids = list(due.values_list("pk", flat=True))
    for start in range(0, len(due_ids), SOURCES_BATCH):
        batch = due_ids[start : start + SOURCES_BATCH]
        sources = _sources_of(batch)
        for schedule_id in batch:
            _handle_due(schedule_id=schedule_id, now=now, grace=grace, result=result, sources=sources)
    return result


def _sources_of(schedule_ids: list[int]) -> dict[int, list[Source]]:
    """Each schedule's sources (its override, else its artist's defaults), read for a batch in three queries.

    Read before the schedules are locked: sources are configuration, and a source edited during the
    tick is picked up by the next one. Per schedule these were two queries (bench B8).
    """
    schedules = Schedule.objects.filter(pk__in=schedule_ids).select_related("artist").order_by()
    schedules = schedules.prefetch_related("source_override", "artist__default_sources")
    return {s.pk: list(s.source_override.all()) or list(s.artist.default_sources.all()) for s in schedules}


@transaction.atomic
def _handle_due(
    *, schedule_id: int, now: datetime, grace: timedelta, result: TickResult, sources: dict[int, list[Source]]
) -> None:
    # Race: another scheduler may be handling this schedule right now. skip_locked lets each
    # process take different schedules; the unique slot constraint covers databases without row locks.
    locked = Schedule.objects.select_for_update(
        skip_locked=connection.features.has_select_for_update_skip_locked, of=("self",)
    )
    schedule = locked.select_related("artist").filter(pk=schedule_id).due(now=now).first()
    if schedule is None:
        return
    result.schedules += 1
    if schedule.next_slot_at is None:
        # Saved without schedule_save (a bulk load): start from now, with no backlog.
        Schedule.objects.filter(pk=schedule.pk).update(next_slot_at=_first_slot(schedule, now=now))
        return
    start = max(schedule.next_slot_at - timedelta(microseconds=1), now - MISSED_LOOKBACK)
    fired = False
    for slot in slots_between(schedule, start, now):
        outcome = _handle_slot(
            schedule=schedule, slot=slot, now=now, grace=grace, result=result, sources=sources.get(schedule.pk, [])
        )
        fired = fired or outcome == ScheduleRun.Outcome.CREATED
    following = next_slot(schedule, now)
    changes = {"next_slot_at": following}
    if fired:
        changes["last_executed_at"] = now
    Schedule.objects.filter(pk=schedule.pk).update(**changes)


def _handle_slot(
    *, schedule: Schedule, slot: datetime, now: datetime, grace: timedelta, result: TickResult, sources: list[Source]
) -> str:
    if not schedule.artist.active:
        outcome, detail = ScheduleRun.Outcome.SKIPPED, f"{schedule.artist} is inactive."
    elif now - slot > grace:
        outcome, detail = ScheduleRun.Outcome.MISSED, f"The scheduler was not running within {grace} of this slot."
    else:
        outcome, detail = ScheduleRun.Outcome.CREATED, ""
    try:
        with transaction.atomic():
            run = ScheduleRun.objects.create(schedule=schedule, slot_at=slot, outcome=outcome, detail=detail)
    except IntegrityError:
        return ""  # another tick handled this slot first
    if outcome == ScheduleRun.Outcome.CREATED:
        try:
            with transaction.atomic():
                run.post = _make_post(schedule=schedule, slot=slot, sources=sources)
                if schedule.auto_generate:
                    job = storyboard_generate(post_id=run.post.pk, actor=None)
                    run.detail = f"Director queued (job {job.pk})."
        except Exception as error:  # a bad schedule must not stop the others; the run says why
            log.exception("schedule %s slot %s: could not create its post", schedule.pk, slot.isoformat())
            outcome = run.outcome = ScheduleRun.Outcome.FAILED
            run.post, run.detail = None, f"Could not create the post: {error}"
        run.save(update_fields=["post", "outcome", "detail"])
    if outcome == ScheduleRun.Outcome.CREATED:
        result.created.append(run.post.pk)
        schedule_fired(schedule=schedule, slot=slot, post=run.post)
    else:
        setattr(result, outcome, getattr(result, outcome) + 1)
    return outcome


def _make_post(*, schedule: Schedule, slot: datetime, sources: list[Source]):
    local = slot.astimezone(zoneinfo.ZoneInfo(schedule.timezone))
    title = title_render(
        schedule.title_template,
        {
            "artist": schedule.artist.stage_name,
            "schedule": schedule.title,
            "date": local.strftime("%Y-%m-%d"),
            "time": local.strftime("%H:%M"),
            "weekday": WEEKDAYS[local.weekday()].title(),
        },
    )[:200]
    # Rotate through the sources, one per post, so a daily schedule does not read the same feed forever.
    # Counting the posts of earlier slots only: stable if this slot is handled again after a crash.
    made = schedule.runs.filter(outcome=ScheduleRun.Outcome.CREATED, slot_at__lt=slot).count()
    source = sources[made % len(sources)] if sources else None
    brief = schedule.brief.strip()
    if source is not None:
        focus = f"\nFocus: {source.instruction}" if source.instruction.strip() else ""
        brief = f"{brief}\n\nSource: {source.name} ({source.url}){focus}".strip()
    return post_create(
        actor=None,
        title=title,
        artist=schedule.artist,
        brief=brief,
        created_from_schedule=schedule,
        created_from_source=source,
    )
