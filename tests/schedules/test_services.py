"""schedule_save and schedule_tick: every slot handled exactly once, on a real database.

All times are passed in explicitly (`now=`), so nothing depends on the clock of the machine.
"""

import re
import subprocess
import sys
import zoneinfo
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Count

from factory.models import Job, JobKind, JobStatus
from posts.models import Post, PostStatus
from schedules.models import Schedule, ScheduleRun
from schedules.services import schedule_save, schedule_tick
from tests.factories import make_artist, make_schedule, make_source
from tests.factory.conftest import subprocess_env

ROOT = Path(__file__).resolve().parent.parent.parent
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
HOUR = timedelta(hours=1)


def sh(*args) -> datetime:
    """A wall time in Shanghai (UTC+8, no DST since 1991)."""
    return datetime(*args, tzinfo=SHANGHAI)


def runs_of(schedule: Schedule) -> list[tuple[datetime, str]]:
    return [(run.slot_at, run.outcome) for run in schedule.runs.order_by("slot_at")]


def refreshed(schedule: Schedule) -> Schedule:
    schedule.refresh_from_db()
    return schedule


def shanghai_schedule(**extra) -> Schedule:
    """Every Monday and Thursday at 09:30 Shanghai time, saved on Sunday 1 March 2026 at noon."""
    return make_schedule(
        **{
            "artist": extra.pop("artist", None) or make_artist(stage_name="Luna"),
            "now": sh(2026, 3, 1, 12, 0),
            "weekdays": ["monday", "thursday"],
            "times": ["09:30"],
            "timezone": "Asia/Shanghai",
            **extra,
        }
    )


@pytest.mark.django_db
def test_monday_and_thursday_at_0930_shanghai_gives_one_draft_post_per_slot():
    finance, macro = make_source(name="Finance wire"), make_source(name="Macro digest", instruction="Rates only.")
    artist = make_artist(stage_name="Luna")
    artist.default_sources.set([finance, macro])
    schedule = shanghai_schedule(
        artist=artist, title_template="{artist} · {weekday} {date} {time}", brief="Markets this week."
    )
    slots = [sh(2026, 3, 2, 9, 30), sh(2026, 3, 5, 9, 30), sh(2026, 3, 9, 9, 30), sh(2026, 3, 12, 9, 30)]

    created = []
    for slot in slots:
        assert schedule_tick(now=slot - timedelta(seconds=1)).created == []
        result = schedule_tick(now=slot)
        created += result.created
        assert len(result.created) == 1
        assert refreshed(schedule).last_executed_at == slot
        assert schedule_tick(now=slot + 3 * HOUR).created == []

    posts = list(Post.objects.filter(created_from_schedule=schedule).order_by("id"))
    assert [post.pk for post in posts] == created
    assert [post.title for post in posts] == [
        "Luna · Monday 2026-03-02 09:30",
        "Luna · Thursday 2026-03-05 09:30",
        "Luna · Monday 2026-03-09 09:30",
        "Luna · Thursday 2026-03-12 09:30",
    ]
    assert {post.status for post in posts} == {PostStatus.DRAFT}
    assert {post.artist_id for post in posts} == {artist.pk}
    # The artist's default sources, taken in turn so the artist does not read one feed forever.
    assert [post.created_from_source for post in posts] == [finance, macro, finance, macro]
    assert posts[0].brief == "Markets this week.\n\nSource: Finance wire (https://example.com/feed)"
    assert posts[1].brief == "Markets this week.\n\nSource: Macro digest (https://example.com/feed)\nFocus: Rates only."
    assert runs_of(schedule) == [(slot, ScheduleRun.Outcome.CREATED) for slot in slots]
    assert [run.post for run in schedule.runs.order_by("slot_at")] == posts
    assert refreshed(schedule).next_slot_at == sh(2026, 3, 16, 9, 30)


@pytest.mark.django_db
def test_the_schedules_source_override_is_used_instead_of_the_artists_defaults():
    artist = make_artist()
    artist.default_sources.set([make_source(name="Default feed")])
    schedule = shanghai_schedule(artist=artist)
    override = make_source(name="Override feed")
    schedule.source_override.set([override])

    (post_id,) = schedule_tick(now=sh(2026, 3, 2, 9, 30)).created

    assert Post.objects.get(pk=post_id).created_from_source == override


@pytest.mark.django_db
def test_without_any_source_the_post_carries_the_schedules_brief_alone():
    shanghai_schedule(brief="  Weekly wrap.  ")

    (post_id,) = schedule_tick(now=sh(2026, 3, 2, 9, 30)).created

    post = Post.objects.get(pk=post_id)
    assert (post.created_from_source, post.brief) == (None, "Weekly wrap.")


@pytest.mark.django_db
def test_a_repeated_tick_at_the_same_moment_creates_nothing_new():
    schedule = shanghai_schedule()
    slot = sh(2026, 3, 2, 9, 30)
    first = schedule_tick(now=slot)

    again = schedule_tick(now=slot)

    assert (len(first.created), first.schedules) == (1, 1)
    assert (again.created, again.schedules) == ([], 0)
    assert Post.objects.filter(created_from_schedule=schedule).count() == 1
    assert runs_of(schedule) == [(slot, ScheduleRun.Outcome.CREATED)]


@pytest.mark.django_db
def test_a_tick_before_any_slot_has_come_does_nothing():
    schedule = shanghai_schedule()

    result = schedule_tick(now=sh(2026, 3, 2, 9, 29, 59))

    assert (result.created, result.schedules) == ([], 0)
    assert runs_of(schedule) == []


# --------------------------------------------------------------------------- missed slots


@pytest.mark.django_db
def test_after_three_days_down_only_the_slot_within_grace_fires_the_older_ones_are_recorded_missed():
    schedule = shanghai_schedule(weekdays=["monday", "tuesday", "wednesday", "thursday"])

    result = schedule_tick(now=sh(2026, 3, 5, 9, 40), grace=HOUR)

    assert (len(result.created), result.missed) == (1, 3)
    assert runs_of(schedule) == [
        (sh(2026, 3, 2, 9, 30), ScheduleRun.Outcome.MISSED),
        (sh(2026, 3, 3, 9, 30), ScheduleRun.Outcome.MISSED),
        (sh(2026, 3, 4, 9, 30), ScheduleRun.Outcome.MISSED),
        (sh(2026, 3, 5, 9, 30), ScheduleRun.Outcome.CREATED),
    ]
    missed = schedule.runs.filter(outcome=ScheduleRun.Outcome.MISSED)
    assert {(run.post, run.detail) for run in missed} == {
        (None, "The scheduler was not running within 1:00:00 of this slot.")
    }
    assert Post.objects.filter(created_from_schedule=schedule).count() == 1
    assert refreshed(schedule).next_slot_at == sh(2026, 3, 9, 9, 30)


@pytest.mark.django_db
def test_a_slot_exactly_grace_old_still_fires_a_minute_older_one_is_missed():
    schedule = shanghai_schedule(times=["09:29", "09:30"])

    result = schedule_tick(now=sh(2026, 3, 2, 9, 40), grace=timedelta(minutes=10))

    assert (len(result.created), result.missed) == (1, 1)
    assert runs_of(schedule) == [
        (sh(2026, 3, 2, 9, 29), ScheduleRun.Outcome.MISSED),
        (sh(2026, 3, 2, 9, 30), ScheduleRun.Outcome.CREATED),
    ]


@pytest.mark.django_db
def test_grace_defaults_to_the_configured_window(settings):
    settings.MCN_SCHEDULE_GRACE = timedelta(minutes=5)
    schedule = shanghai_schedule(times=["09:30", "09:40"])

    result = schedule_tick(now=sh(2026, 3, 2, 9, 41))

    assert (len(result.created), result.missed) == (1, 1)
    assert runs_of(schedule)[0] == (sh(2026, 3, 2, 9, 30), ScheduleRun.Outcome.MISSED)


@pytest.mark.django_db
def test_after_a_long_outage_only_the_last_month_of_slots_is_recorded_missed():
    schedule = shanghai_schedule(weekdays=["monday"])

    result = schedule_tick(now=sh(2026, 6, 1, 12, 0), grace=HOUR)

    # Down from 2 March to Monday 1 June, noon: fourteen Mondays passed; those since 1 May are shown as missed.
    assert (result.created, result.missed) == ([], 5)
    assert [slot for slot, _ in runs_of(schedule)] == [
        sh(2026, 5, 4, 9, 30),
        sh(2026, 5, 11, 9, 30),
        sh(2026, 5, 18, 9, 30),
        sh(2026, 5, 25, 9, 30),
        sh(2026, 6, 1, 9, 30),
    ]
    assert refreshed(schedule).next_slot_at == sh(2026, 6, 8, 9, 30)


# --------------------------------------------------------------------------- who never fires


@pytest.mark.django_db
def test_an_inactive_schedule_never_fires():
    schedule = shanghai_schedule(active=False)

    for now in [sh(2026, 3, 2, 9, 30), sh(2026, 3, 5, 9, 30), sh(2026, 4, 2, 9, 30)]:
        assert schedule_tick(now=now).schedules == 0

    assert runs_of(schedule) == []
    assert Post.objects.count() == 0


@pytest.mark.django_db
def test_a_schedule_switched_off_before_its_slot_does_not_fire_and_switched_back_on_has_no_backlog():
    schedule = shanghai_schedule()
    schedule.active = False
    schedule_save(schedule=schedule, now=sh(2026, 3, 2, 9, 0))
    schedule_tick(now=sh(2026, 3, 2, 9, 30))
    schedule.active = True
    schedule_save(schedule=schedule, now=sh(2026, 3, 5, 12, 0))

    result = schedule_tick(now=sh(2026, 3, 5, 12, 0), grace=timedelta(days=7))

    assert (result.created, result.schedules) == ([], 0)
    assert runs_of(schedule) == []
    assert refreshed(schedule).next_slot_at == sh(2026, 3, 9, 9, 30)


@pytest.mark.django_db
def test_an_inactive_artists_slot_is_recorded_skipped_without_a_post():
    schedule = shanghai_schedule(artist=make_artist(stage_name="Kai", active=False))
    slot = sh(2026, 3, 2, 9, 30)

    result = schedule_tick(now=slot)
    schedule_tick(now=slot + timedelta(minutes=1))

    assert (result.created, result.skipped) == ([], 1)
    (run,) = schedule.runs.all()
    assert (run.slot_at, run.outcome, run.post) == (slot, ScheduleRun.Outcome.SKIPPED, None)
    assert run.detail == "Kai is inactive."
    assert Post.objects.count() == 0
    assert refreshed(schedule).last_executed_at is None


# --------------------------------------------------------------------------- edits


@pytest.mark.django_db
def test_editing_the_times_takes_effect_from_the_next_slot_without_firing_the_new_rules_past_slots():
    schedule = shanghai_schedule()
    schedule_tick(now=sh(2026, 3, 2, 9, 30))
    schedule.weekdays, schedule.times = ["monday", "tuesday", "wednesday", "thursday"], ["08:00"]
    schedule_save(schedule=schedule, now=sh(2026, 3, 3, 12, 0))

    assert schedule_tick(now=sh(2026, 3, 3, 12, 0), grace=timedelta(days=7)).schedules == 0  # not Tuesday 08:00
    schedule_tick(now=sh(2026, 3, 4, 8, 0))
    schedule_tick(now=sh(2026, 3, 5, 8, 0))
    schedule_tick(now=sh(2026, 3, 5, 9, 30))  # the old rule's Thursday slot

    assert [slot for slot, _ in runs_of(schedule)] == [
        sh(2026, 3, 2, 9, 30),
        sh(2026, 3, 4, 8, 0),
        sh(2026, 3, 5, 8, 0),
    ]
    assert Post.objects.filter(created_from_schedule=schedule).count() == 3


@pytest.mark.django_db
def test_editing_only_the_title_keeps_a_slot_that_has_come_and_uses_the_new_title():
    schedule = shanghai_schedule(title_template="Old {date}")
    schedule.title_template = "New {date}"
    schedule_save(schedule=schedule, now=sh(2026, 3, 2, 9, 31))

    (post_id,) = schedule_tick(now=sh(2026, 3, 2, 9, 32)).created

    assert Post.objects.get(pk=post_id).title == "New 2026-03-02"


@pytest.mark.django_db
def test_saving_a_copy_read_before_a_tick_neither_handles_the_slot_again_nor_forgets_the_tick():
    schedule = shanghai_schedule()
    slot = sh(2026, 3, 2, 9, 30)
    copy = Schedule.objects.get(pk=schedule.pk)  # e.g. the admin read it, then the tick ran before it saved
    schedule_tick(now=slot)
    copy.title_template = "Edited {date}"

    schedule_save(schedule=copy, now=slot + timedelta(minutes=1))
    again = schedule_tick(now=slot + timedelta(minutes=2))

    assert (again.created, again.schedules) == ([], 0)
    assert runs_of(schedule) == [(slot, ScheduleRun.Outcome.CREATED)]
    assert (refreshed(schedule).next_slot_at, schedule.last_executed_at) == (sh(2026, 3, 5, 9, 30), slot)
    assert schedule.title_template == "Edited {date}"


@pytest.mark.django_db
def test_a_schedule_saved_without_schedule_save_starts_at_its_next_slot_with_no_backlog():
    schedule = Schedule.objects.create(
        title="Bulk loaded", artist=make_artist(), weekdays=["monday"], times=["09:30"], timezone="Asia/Shanghai"
    )

    first = schedule_tick(now=sh(2026, 3, 3, 12, 0), grace=timedelta(days=7))
    second = schedule_tick(now=sh(2026, 3, 9, 9, 30))

    assert first.created == []
    assert len(second.created) == 1
    assert runs_of(schedule) == [(sh(2026, 3, 9, 9, 30), ScheduleRun.Outcome.CREATED)]


# --------------------------------------------------------------------------- one-off


@pytest.mark.django_db
def test_one_off_fires_once_at_its_time_and_never_again():
    trigger = sh(2026, 3, 10, 15, 0)
    schedule = make_schedule(
        artist=make_artist(), now=sh(2026, 3, 1), kind=Schedule.Kind.ONE_OFF, trigger_at=trigger, times=[], weekdays=[]
    )

    before = schedule_tick(now=trigger - timedelta(seconds=1))
    at = schedule_tick(now=trigger + timedelta(seconds=30))
    later = [schedule_tick(now=trigger + timedelta(minutes=minutes)) for minutes in (1, 24 * 60, 60 * 24 * 60)]

    assert before.created == []
    assert len(at.created) == 1
    assert [(tick.created, tick.schedules) for tick in later] == [([], 0)] * 3, "a fired one-off is not due again"
    assert runs_of(schedule) == [(trigger, ScheduleRun.Outcome.CREATED)]
    assert Post.objects.filter(created_from_schedule=schedule).count() == 1


@pytest.mark.django_db
def test_one_off_saved_a_few_minutes_after_its_time_still_fires_within_grace():
    trigger = sh(2026, 3, 10, 15, 0)
    schedule = make_schedule(
        artist=make_artist(), now=trigger + timedelta(minutes=5), kind="one_off", trigger_at=trigger, times=[]
    )

    result = schedule_tick(now=trigger + timedelta(minutes=6), grace=HOUR)

    assert len(result.created) == 1
    assert runs_of(schedule) == [(trigger, ScheduleRun.Outcome.CREATED)]


@pytest.mark.django_db
def test_one_off_saved_months_after_its_time_never_fires_and_is_not_due_again():
    trigger = sh(2026, 1, 10, 15, 0)
    make_schedule(artist=make_artist(), now=sh(2026, 6, 1), kind="one_off", trigger_at=trigger, times=[])

    first = schedule_tick(now=sh(2026, 6, 1, 0, 1))
    second = schedule_tick(now=sh(2026, 6, 1, 0, 2))

    assert first.created == []
    assert (second.created, second.schedules) == ([], 0)
    assert Post.objects.count() == 0


# --------------------------------------------------------------------------- auto-generate and failures


@pytest.mark.django_db
def test_auto_generate_queues_the_director_for_the_new_post_and_the_run_says_so():
    schedule = shanghai_schedule(auto_generate=True)

    (post_id,) = schedule_tick(now=sh(2026, 3, 2, 9, 30)).created

    job = Job.objects.get(kind=JobKind.LLM)
    assert (job.status, job.params["post_id"], job.subject) == (JobStatus.QUEUED, post_id, f"post.{post_id}/storyboard")
    assert schedule.runs.get().detail == f"Director queued (job {job.pk})."


@pytest.mark.django_db
def test_without_auto_generate_no_director_job_is_queued():
    shanghai_schedule(auto_generate=False)

    schedule_tick(now=sh(2026, 3, 2, 9, 30))

    assert Job.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{artist} {when}", "not allowed: {when}"),
        ("{artist", "expected '}' before end of string (write {{ and }} for a brace in the title)"),
        ("{0}", "not allowed: {0}"),
        ("{}", "not allowed: {}"),
        # A format spec or conversion builds what it likes: a 100 MB title at every firing.
        ("{artist:>100000000}", "not allowed: {artist:>100000000}"),
        ("{date:.0} {time!r} {weekday!s:^9}", "not allowed: {date:.0}, {time!r}, {weekday!s:^9}"),
        ("{artist.upper} {date[0]}", "not allowed: {artist.upper}, {date[0]}"),
    ],
)
def test_a_title_template_with_an_unknown_placeholder_is_refused_naming_the_allowed_ones(template, problem):
    schedule = Schedule(
        title="Bad", artist=make_artist(), weekdays=["monday"], times=["09:30"], title_template=template
    )

    with pytest.raises(ValidationError) as refused:
        schedule_save(schedule=schedule, now=sh(2026, 3, 1))

    allowed = "{artist}, {schedule}, {date}, {time}, {weekday}"
    assert refused.value.message_dict == {
        "title_template": [f"Use only these placeholders, each as plain {{name}}: {allowed} ({problem})."]
    }
    assert Schedule.objects.count() == 0


@pytest.mark.django_db
def test_braces_written_twice_are_literal_in_the_title():
    schedule = shanghai_schedule(title_template="{{{artist}}} {date}")

    schedule_tick(now=sh(2026, 3, 2, 9, 30))

    assert Post.objects.get(created_from_schedule=schedule).title == "{Luna} 2026-03-02"


@pytest.mark.django_db
def test_a_template_stored_with_a_format_spec_before_the_rule_fires_with_it_left_as_typed():
    schedule = shanghai_schedule()
    Schedule.objects.filter(pk=schedule.pk).update(title_template="{artist:>100000000} {date} {0} {")

    schedule_tick(now=sh(2026, 3, 2, 9, 30))

    # Never padded to 100 MB: what cannot be filled stays as typed (a broken template is the title).
    assert Post.objects.get(created_from_schedule=schedule).title == "{artist:>100000000} {date} {0} {"
    Schedule.objects.filter(pk=schedule.pk).update(title_template="{artist:>100000000} {date} {weekday}")
    schedule_tick(now=sh(2026, 3, 5, 9, 30))
    assert Post.objects.filter(created_from_schedule=schedule).latest("pk").title == (
        "{artist:>100000000} 2026-03-05 Thursday"
    )


@pytest.mark.django_db
def test_a_post_that_cannot_be_created_is_recorded_failed_with_the_reason_and_the_others_still_fire():
    # An empty template (written around the model's checks) renders an empty title, which a post refuses.
    broken = shanghai_schedule()
    Schedule.objects.filter(pk=broken.pk).update(title_template="")
    fine = shanghai_schedule()
    slot = sh(2026, 3, 2, 9, 30)

    result = schedule_tick(now=slot)

    assert (result.failed, len(result.created)) == (1, 1)
    run = broken.runs.get()
    assert (run.outcome, run.post) == (ScheduleRun.Outcome.FAILED, None)
    assert run.detail == "Could not create the post: {'title': ['This field cannot be blank.']}"
    assert Post.objects.filter(created_from_schedule=broken).count() == 0
    assert runs_of(fine) == [(slot, ScheduleRun.Outcome.CREATED)]
    # The failed slot is not retried in a burst later; the schedule moves on to its next slot.
    assert (refreshed(broken).next_slot_at, broken.last_executed_at) == (sh(2026, 3, 5, 9, 30), None)
    assert schedule_tick(now=slot + timedelta(minutes=1)).schedules == 0


# --------------------------------------------------------------------------- two schedulers at once

SCHEDULES_RACING = 200


def tick_in_subprocesses(now: datetime, *, count: int = 2) -> list[subprocess.CompletedProcess]:
    """`manage.py tick_schedules --now ...` in `count` processes started together against the test database."""
    environ = subprocess_env()
    command = [sys.executable, "manage.py", "tick_schedules", "--now", now.isoformat()]
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    finished = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return finished


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_ticking_at_once_create_exactly_one_post_per_slot():
    artists = [make_artist() for _ in range(4)]
    slots = [sh(2026, 3, 2, 9, 30), sh(2026, 3, 2, 10, 30), sh(2026, 3, 2, 11, 30)]
    schedules = [
        shanghai_schedule(artist=artists[n % 4], times=[f"{slot:%H:%M}" for slot in slots])
        for n in range(SCHEDULES_RACING)
    ]

    ticked, overlapped = [], False
    for slot in slots:  # a new slot per round, until the two processes have certainly run side by side
        finished = tick_in_subprocesses(slot)
        ticked.append(slot)
        for process in finished:
            assert process.returncode == 0, process.stderr
            assert "Traceback" not in process.stderr, process.stderr
        created = [int(re.search(r"(\d+) posts created", p.stdout).group(1)) for p in finished]
        assert sum(created) == SCHEDULES_RACING, [p.stdout for p in finished]
        if all(created):
            overlapped = True
            break

    assert overlapped, "one process always handled every schedule before the other began: raise SCHEDULES_RACING"
    per_slot = ScheduleRun.objects.values("schedule", "slot_at").annotate(n=Count("id"))
    assert {row["n"] for row in per_slot} == {1}
    assert per_slot.count() == SCHEDULES_RACING * len(ticked)
    assert set(ScheduleRun.objects.values_list("outcome", flat=True)) == {ScheduleRun.Outcome.CREATED}
    per_schedule = Post.objects.values("created_from_schedule").annotate(n=Count("id"))
    assert sorted(row["n"] for row in per_schedule) == [len(ticked)] * SCHEDULES_RACING
    linked = set(ScheduleRun.objects.values_list("post", flat=True))
    assert linked == set(Post.objects.values_list("pk", flat=True)), "every post belongs to exactly one run"
    following = ([s for s in slots if s > ticked[-1]] or [sh(2026, 3, 5, 9, 30)])[0]
    assert set(Schedule.objects.filter(pk__in=[s.pk for s in schedules]).values_list("next_slot_at", flat=True)) == {
        following
    }
