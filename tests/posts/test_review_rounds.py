"""Review rounds redo only what changed (issue 17): a rewrite, a move, a locked shot, a new take by hand.

The first round is produced with every job answered in-process as a worker would (tests/posts/test_production.py's
`answer`); then the director rewrites the storyboard through the fake LLM, the real rewrite path, and production
runs again. What the second round queues is counted by subject: `post.<id>/shot.<id>/<step>@<key>`.
"""

import json
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factory.models import Job, JobKind, JobStatus
from mcn_site.lib import roles
from posts import pipeline, services
from posts.director.service import write_storyboard
from posts.models import PostStatus, Shot, ShotKind, ShotStatus
from tests.factories import (
    PREVIEW_AVATAR_WORKFLOW,
    PREVIEW_MOTION_WORKFLOW,
    VIDEO_PLACEHOLDERS,
    make_artist,
    make_post,
    make_shot,
    make_shot_workflow,
    make_user,
    make_voice,
)
from tests.fakes.llm import FakeLLM
from tests.posts.test_production import answer

pytestmark = pytest.mark.django_db

# Eight shots, 30 s: four spoken lines (voice, then an avatar clip) between four cutaways (picture, then motion).
LINES = [
    ("a_roll", "Gold hit a record this week."),
    ("b_roll", "A gold bar on a dark table"),
    ("a_roll", "Central banks are buying."),
    ("b_roll", "A vault door opening slowly"),
    ("a_roll", "Here is why it matters for you."),
    ("b_roll", "A price chart climbing"),
    ("a_roll", "Follow for the weekly wrap."),
    ("b_roll", "A city skyline at dusk"),
]


def storyboard_json(lines) -> str:
    return json.dumps(
        {
            "shots": [
                {"kind": kind, "duration": 4, "script": text, "visual_prompt": ""}
                if kind == "a_roll"
                else {"kind": kind, "duration": 3.5, "script": "", "visual_prompt": text}
                for kind, text in lines
            ]
        }
    )


@pytest.fixture
def producer():
    return make_user(role=roles.PRODUCER)


@pytest.fixture
def tts_on(settings):
    settings.COSYVOICE_URL = "http://127.0.0.1:9"  # jobs are only queued here, never sent
    settings.COSYVOICE_SAMPLE_RATE = 24000


@pytest.fixture
def workflows():
    """A picture and a motion step for cutaways, an avatar step for spoken lines: four jobs a pair of shots."""
    make_shot_workflow(kind=ShotKind.B_ROLL)
    make_shot_workflow(
        kind=ShotKind.B_ROLL, step="motion", workflow=PREVIEW_MOTION_WORKFLOW, placeholders=VIDEO_PLACEHOLDERS
    )
    make_shot_workflow(
        kind=ShotKind.A_ROLL, step="avatar", workflow=PREVIEW_AVATAR_WORKFLOW, placeholders=VIDEO_PLACEHOLDERS
    )


@pytest.fixture
def llm(settings):
    with FakeLLM(api_key="sk-test-review") as fake:
        settings.LLM_API_KEY = "sk-test-review"
        settings.LLM_BASE_URL = fake.url
        settings.LLM_TIMEOUT = 5
        yield fake


@pytest.fixture
def finish(django_capture_on_commit_callbacks):
    """Answer every queued shot job (and those their answers queue) until only the render is left; fail the
    render, which leaves the post failed: editable, as a post sent back for another round is."""

    def run(post) -> None:
        while True:
            queued = Job.objects.filter(subject__startswith=f"post.{post.pk}/shot.", status=JobStatus.QUEUED)
            jobs = list(queued.order_by("pk"))
            if not jobs:
                break
            for job in jobs:
                with django_capture_on_commit_callbacks(execute=True):
                    answer(job, seconds=1.5)
        post.refresh_from_db()
        assert post.render_job is not None, "every shot is in: the render was queued"
        with django_capture_on_commit_callbacks(execute=True):
            answer(post.render_job, fail="stopped for the next review round")
        post.refresh_from_db()
        assert post.status == PostStatus.FAILED

    return run


def produce(post, actor, django_capture_on_commit_callbacks) -> list[Job]:
    """post_produce; returns the jobs it queued."""
    before = set(Job.objects.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_produce(post_id=post.pk, actor=actor)
    return list(Job.objects.exclude(pk__in=before).exclude(kind=JobKind.RENDER).order_by("pk"))


def shot_of(job: Job) -> int:
    return int(job.subject.split("/")[1].removeprefix("shot."))


def assets(post) -> dict[tuple, tuple]:
    """content -> (row, voice, picture, clip, length) for every shot of the post."""
    return {
        (s.kind, s.script, s.visual_prompt): (
            s.pk,
            s.voice_asset.name,
            s.generated_asset.name,
            s.generated_clip.name,
            s.duration_seconds,
        )
        for s in post.shots.all()
    }


@pytest.fixture
def produced(producer, llm, tts_on, workflows, finish, django_capture_on_commit_callbacks):
    """A post of eight shots written by the director and produced once, every file in."""
    reviewer = make_user(role=roles.REVIEWER)
    artist = make_artist(members=[producer, reviewer], voice=make_voice(speaker_id="中文女"))
    post = make_post(artist=artist, brief="Gold.")
    llm.reply(storyboard_json(LINES))
    write_storyboard(post_id=post.pk, actor=producer)
    services.post_submit_for_review(post_id=post.pk, actor=producer)
    services.post_approve(post_id=post.pk, actor=reviewer)
    first = produce(post, producer, django_capture_on_commit_callbacks)
    assert len(first) == 8  # a voice per spoken line, a picture per cutaway; the clips follow them
    finish(post)
    # 4 pictures, then 4 motion clips and 4 avatar clips
    assert Job.objects.filter(kind=JobKind.COMFYUI, status=JobStatus.SUCCEEDED).count() == 12
    assert all(s.generated_clip for s in post.shots.all())
    return post


# --- a rewrite re-produces only what changed --------------------------------------------------------------------


def test_a_rewrite_of_two_of_eight_shots_produces_exactly_those_two(
    produced, producer, llm, finish, django_capture_on_commit_callbacks
):
    post = produced
    before = assets(post)
    rewritten = list(LINES)
    rewritten[2] = ("a_roll", "Central banks bought a thousand tonnes.")
    rewritten[5] = ("b_roll", "A bar chart of central bank buying")
    llm.reply(storyboard_json(rewritten))
    round_start = Job.objects.order_by("-pk").values_list("pk", flat=True).first()

    write_storyboard(post_id=post.pk, actor=producer, feedback="Give the figure; show the buying.")
    queued = produce(post, producer, django_capture_on_commit_callbacks)
    finish(post)

    shots = list(post.shots.order_by("position"))
    changed = {shots[2].pk, shots[5].pk}
    first_wave = {(shot_of(job), job.kind) for job in queued}
    assert first_wave == {(shots[2].pk, JobKind.TTS), (shots[5].pk, JobKind.COMFYUI)}
    round_jobs = list(Job.objects.filter(pk__gt=round_start).exclude(kind=JobKind.RENDER))
    assert {shot_of(job) for job in round_jobs} == changed
    # Voice + avatar for the line, picture + motion for the cutaway: the two shots' jobs, nothing else.
    assert sorted(job.subject.rsplit("/", 1)[1].partition("@")[0] for job in round_jobs) == [
        "avatar",
        "motion",
        "picture",
        "voice",
    ]
    after = assets(post)
    for position, (kind, text) in enumerate(LINES):
        if position in (2, 5):
            continue
        content = (kind, text, "") if kind == "a_roll" else (kind, "", text)
        assert after[content] == before[content], f"shot {position + 1} kept its row, files and length"


def test_a_shot_moved_by_the_rewrite_keeps_its_files(produced, producer, llm, django_capture_on_commit_callbacks):
    post = produced
    before = assets(post)
    llm.reply(storyboard_json([("a_roll", "Quick one before we start."), *LINES[:-1]]))

    write_storyboard(post_id=post.pk, actor=producer)
    queued = produce(post, producer, django_capture_on_commit_callbacks)

    opener = post.shots.get(position=1)
    assert {shot_of(job) for job in queued} == {opener.pk}, "only the new opening line is made"
    after = assets(post)
    for kind, text in LINES[:-1]:
        content = (kind, text, "") if kind == "a_roll" else (kind, "", text)
        assert after[content] == before[content]  # one position down, same row, same files
    assert post.shots.count() == 9 - 1


def test_a_shot_deleted_and_added_again_by_hand_takes_its_files_from_the_posts_jobs(
    produced, producer, django_capture_on_commit_callbacks
):
    post = produced
    old = post.shots.get(position=2)
    before = assets(post)[(old.kind, old.script, old.visual_prompt)]
    services.shot_delete(post=post, actor=producer, expected_version=post.version, shot_id=old.pk)
    post.refresh_from_db()
    again = services.shot_save(
        post=post,
        actor=producer,
        expected_version=post.version,
        data={"kind": old.kind, "visual_prompt": old.visual_prompt, "duration_seconds": old.duration_seconds},
        position=2,
    )

    queued = produce(post, producer, django_capture_on_commit_callbacks)

    again.refresh_from_db()
    assert again.pk != old.pk
    assert not queued, "the picture and the clip of the same content were made for this post already"
    assert (again.generated_asset.name, again.generated_clip.name) == before[2:4]
    assert again.status == ShotStatus.READY


def test_two_identical_shots_share_each_job_and_both_take_its_file(
    producer, tts_on, django_capture_on_commit_callbacks
):
    make_shot_workflow(kind=ShotKind.A_ROLL)
    post = make_post(artist=make_artist(members=[producer]), status=PostStatus.APPROVED)
    twins = [make_shot(post=post, position=position, script="Same words twice.") for position in (1, 2)]

    queued = produce(post, producer, django_capture_on_commit_callbacks)

    assert sorted(job.kind for job in queued) == [JobKind.COMFYUI, JobKind.TTS]  # one voice, one picture
    for job in queued:
        with django_capture_on_commit_callbacks(execute=True):
            answer(job, seconds=1.2)
    for shot in twins:
        shot.refresh_from_db()
        assert shot.voice_asset and shot.generated_asset and shot.status == ShotStatus.READY
        assert shot.duration_seconds == Decimal("1.20")
    post.refresh_from_db()
    assert post.render_job is not None


# --- a locked shot keeps its voice --------------------------------------------------------------------------------


def test_a_locked_shot_keeps_its_voice_and_length_when_the_artists_voice_changes(
    produced, producer, django_capture_on_commit_callbacks
):
    post = produced
    locked = post.shots.get(position=1)
    services.shot_set_locked(shot=locked, actor=producer, locked=True, expected_version=post.version)
    locked.refresh_from_db()
    kept = (locked.voice_asset.name, locked.voice_key, locked.duration_seconds, locked.generated_clip.name)
    voice = post.artist.voice
    voice.speaker_id = "中文男"
    voice.save()

    queued = produce(post, producer, django_capture_on_commit_callbacks)

    voiced = {shot_of(job) for job in queued if job.kind == JobKind.TTS}
    spoken = set(post.shots.filter(kind=ShotKind.A_ROLL).values_list("pk", flat=True))
    assert voiced == spoken - {locked.pk}, "the other lines are spoken again in the new voice"
    locked.refresh_from_db()
    assert (locked.voice_asset.name, locked.voice_key, locked.duration_seconds, locked.generated_clip.name) == kept


def test_a_new_take_of_a_locked_shots_voice_is_queued_by_hand_and_sets_its_length(
    produced, producer, django_capture_on_commit_callbacks
):
    post = produced
    locked = post.shots.get(position=1)
    services.shot_set_locked(shot=locked, actor=producer, locked=True, expected_version=post.version)
    old_voice = Shot.objects.get(pk=locked.pk).voice_asset.name

    with django_capture_on_commit_callbacks(execute=True):
        pipeline.shot_revoice(shot_id=locked.pk, actor=producer)

    locked.refresh_from_db()
    job = locked.voice_job
    assert (job.kind, job.status) == (JobKind.TTS, JobStatus.QUEUED)
    assert job.subject == f"post.{post.pk}/shot.{locked.pk}/voice@{pipeline.voice_key(locked)}"
    assert job.params["text"] == LINES[0][1]
    assert locked.status == ShotStatus.PRODUCING
    assert post.events.filter(note="Shot 1: new voice queued").exists()
    with django_capture_on_commit_callbacks(execute=True):
        answer(job, seconds=2.5)
    locked.refresh_from_db()
    assert locked.voice_asset.name != old_voice
    assert locked.duration_seconds == Decimal("2.50")
    # Its clip was cut to the old voice: it goes, and the next production makes it again (and only it).
    assert not locked.generated_clip
    queued = produce(post, producer, django_capture_on_commit_callbacks)
    assert [(shot_of(job), job.subject.rsplit("/", 1)[1][:7]) for job in queued] == [(locked.pk, "avatar@")]


def test_a_new_take_is_refused_without_a_script_a_voice_server_or_an_editable_post(producer, settings):
    post = make_post(artist=make_artist(members=[producer]))
    cutaway = make_shot(post=post, position=1, kind=ShotKind.B_ROLL, script="", visual_prompt="A chart")
    line = make_shot(post=post, position=2, script="Words.")
    settings.COSYVOICE_URL = "http://127.0.0.1:9"
    with pytest.raises(ValidationError, match="Shot 1 has no script"):
        pipeline.shot_revoice(shot_id=cutaway.pk, actor=producer)
    settings.COSYVOICE_URL = ""
    with pytest.raises(ValidationError, match="No voice server is configured"):
        pipeline.shot_revoice(shot_id=line.pk, actor=producer)
    settings.COSYVOICE_URL = "http://127.0.0.1:9"
    services.post_submit_for_review(post_id=post.pk, actor=producer)
    with pytest.raises(ValidationError, match="cannot be edited"):
        pipeline.shot_revoice(shot_id=line.pk, actor=producer)
    assert not Job.objects.exists()


def test_production_reads_the_posts_made_files_in_a_fixed_number_of_queries_whatever_its_length(
    producer, tts_on, django_capture_on_commit_callbacks
):
    counts = []
    for size in (2, 6):
        post = make_post(artist=make_artist(members=[producer]), status=PostStatus.APPROVED)
        for position in range(1, size + 1):
            make_shot(post=post, position=position, script=f"Line {position}.")
        for job in produce(post, producer, django_capture_on_commit_callbacks):
            with django_capture_on_commit_callbacks(execute=True):
                answer(job)
        post.refresh_from_db()
        with django_capture_on_commit_callbacks(execute=True):
            answer(post.render_job, fail="stopped")
        Shot.objects.filter(post=post).update(voice_asset="", voice_key="")  # as rows written anew would be
        jobs_before = Job.objects.count()

        with CaptureQueriesContext(connection) as queries:
            pipeline.post_produce(post_id=post.pk, actor=producer)

        counts.append(len(queries))
        assert Job.objects.count() == jobs_before + 1  # the render only: every voice came from the post's jobs
        assert all(shot.voice_asset for shot in post.shots.all())
    assert counts[0] == counts[1], counts


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the production database's plan (CI runs PostgreSQL)")
def test_the_content_cache_reads_a_post_s_jobs_through_the_subject_index():
    """made_assets finds a post's jobs by subject prefix ("post.42/shot.%") at every production and estimate:
    an index scan however many jobs the factory has run (job_subject_idx uses the pattern operator class)."""
    with CaptureQueriesContext(connection) as queries:
        pipeline.made_assets(post_id=42)
    jobs_query = queries[0]["sql"]
    assert "LIKE" in jobs_query
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny test tables: ask whether an index can serve
        cursor.execute(f"EXPLAIN {jobs_query}")
        plan = [row[0] for row in cursor.fetchall()]
    assert not [line for line in plan if "Seq Scan" in line], plan
    assert any("job_subject_idx" in line for line in plan), plan
