"""Producing shots through the factory, and the factory's news turned into shot state and pushes."""

import hashlib
import re

import django_rq
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from rq.job import Job as RqJob

from factory import services as factory_services
from factory.models import ErrorKind, Job, JobStatus
from factory.signals import job_changed
from mcn_site import realtime
from mcn_site.lib import roles
from posts import pipeline
from posts.models import Post, PostEvent, PostStatus, Shot, ShotKind, ShotStatus, ShotWorkflow
from tests.factories import (
    make_artist,
    make_job,
    make_media_file,
    make_post,
    make_shot,
    make_shot_workflow,
    make_user,
    make_wardrobe,
    png_bytes,
    png_upload,
)
from tests.posts.test_consumers import communicator, session_cookie

pytestmark = pytest.mark.django_db

DECLARED = {
    "PROMPT": {"type": "string"},
    "FACE_IMAGE": {"type": "image"},
    "SEED": {"type": "int"},
    "LORA_NAME": {"type": "string"},
    "TRIGGER_WORD": {"type": "string"},
    "LORA_STRENGTH": {"type": "float"},
}


@pytest.fixture(autouse=True)
def _fresh_progress_throttle(monkeypatch):
    """Each test starts with no recent progress push, so the throttle never eats the one it listens for."""
    monkeypatch.setattr(realtime, "_last_progress", {})


@pytest.fixture
def suit():
    return make_wardrobe(
        name="Navy suit",
        comfy_payload={"lora_name": "suit_v1.safetensors", "trigger_word": "navy blue suit", "strength": 0.65},
    )


@pytest.fixture
def shot(suit):
    artist = make_artist(stage_name="Mia Chen", wardrobes=[suit])
    post = make_post(artist=artist, wardrobe=suit)
    return make_shot(post=post, position=1, script="Stocks rallied.", visual_prompt="Mia at a trading desk")


def shot_job(shot: Shot, **extra) -> Job:
    """A factory job made for `shot` (running unless told otherwise), set as the shot's current job."""
    job = make_job(
        subject=f"post.{shot.post_id}/shot.{shot.pk}/picture@{'0' * 16}",
        **{"status": JobStatus.RUNNING, "attempts": 1, **extra},
    )
    Shot.objects.filter(pk=shot.pk).update(job=job, status=ShotStatus.PRODUCING)
    return job


def record_png(job: Job, name: str = "shot_00001_.png") -> str:
    """Store a PNG under media as the worker does, and record it as the job's output; returns its name."""
    data = png_bytes(64, 64)
    stored = make_media_file(f"factory/job{job.pk}/{name}", data)
    factory_services.job_record_output(
        job_id=job.pk,
        claim=job.claim,
        attempt=1,
        node_id="6",
        index=0,
        name=name,
        stored_name=stored,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_type="image/png",
    )
    return stored


# --- shot_parameters ---------------------------------------------------------------------------


def test_shot_parameters_fill_every_declared_key_from_the_shot_its_artist_and_wardrobe(shot):
    params = pipeline.shot_parameters(shot, DECLARED)

    assert set(params) == set(DECLARED)
    assert params["PROMPT"] == "Mia at a trading desk"
    assert params["FACE_IMAGE"] == shot.post.artist.face_anchor.name
    assert params["FACE_IMAGE"].startswith("artists/faces/")
    assert params["LORA_NAME"] == "suit_v1.safetensors"
    assert params["TRIGGER_WORD"] == "navy blue suit"
    assert params["LORA_STRENGTH"] == 0.65
    assert isinstance(params["SEED"], int)


def test_shot_parameters_offer_only_what_the_template_declares(shot):
    params = pipeline.shot_parameters(shot, {"PROMPT": {"type": "string"}, "UNHEARD_OF": {"type": "string"}})

    assert params == {"PROMPT": "Mia at a trading desk"}


def test_the_prompt_falls_back_to_the_script_when_there_is_no_visual_prompt(shot):
    shot.visual_prompt = ""

    assert pipeline.shot_parameters(shot, DECLARED)["PROMPT"] == "Stocks rallied."


def test_without_a_wardrobe_the_lora_keys_are_empty_and_the_strength_defaults():
    shot = make_shot(post=make_post(), position=1)

    params = pipeline.shot_parameters(shot, DECLARED)

    assert (params["LORA_NAME"], params["TRIGGER_WORD"], params["LORA_STRENGTH"]) == ("", "", 0.8)


def test_the_seed_is_stable_for_the_same_shot_content_and_changes_with_the_prompt(shot):
    first = pipeline.shot_parameters(shot, DECLARED)["SEED"]
    again = pipeline.shot_parameters(Shot.objects.select_related("post__artist").get(pk=shot.pk), DECLARED)["SEED"]
    shot.visual_prompt = "Mia on a rooftop at dusk"
    changed = pipeline.shot_parameters(shot, DECLARED)["SEED"]

    assert first == again
    assert changed != first


def test_the_seed_comes_from_the_post_and_the_content_never_the_row_or_its_position(shot):
    # Issue 17: a shot written again (a new row) or moved draws the same picture; another post draws its own.
    twin = make_shot(post=shot.post, position=2, script=shot.script, visual_prompt=shot.visual_prompt)
    elsewhere = make_shot(post=make_post(), position=1, script=shot.script, visual_prompt=shot.visual_prompt)
    seed = pipeline.shot_parameters(shot, DECLARED)["SEED"]

    assert pipeline.shot_parameters(twin, DECLARED)["SEED"] == seed
    assert pipeline.shot_parameters(elsewhere, DECLARED)["SEED"] != seed
    twin.kind = "b_roll"
    assert pipeline.shot_parameters(twin, DECLARED)["SEED"] != seed


# --- shot_generate_picture -------------------------------------------------------------------


def refused(shot: Shot, actor) -> str:
    with pytest.raises(ValidationError) as caught:
        pipeline.shot_generate_picture(shot_id=shot.pk, actor=actor)
    shot.refresh_from_db()
    assert (shot.status, shot.job_id) == (ShotStatus.PENDING, None)
    assert not Job.objects.exists()
    assert not PostEvent.objects.filter(post=shot.post).exists()
    return " ".join(caught.value.messages)


def test_a_locked_shot_is_not_produced_again(shot):
    make_shot_workflow(kind=ShotKind.A_ROLL)
    Shot.objects.filter(pk=shot.pk).update(locked=True)

    assert refused(shot, make_user()) == "Shot 1 is locked: unlock it to produce it again."


def test_a_shot_with_a_manual_asset_is_not_generated(shot):
    make_shot_workflow(kind=ShotKind.A_ROLL)
    shot.manual_asset = png_upload(name="still.png")
    shot.save()

    assert refused(shot, make_user()) == "Shot 1 uses a manual asset: remove it to generate a picture."


def test_a_shot_of_a_post_in_review_is_not_produced(shot):
    make_shot_workflow(kind=ShotKind.A_ROLL)
    Post.objects.filter(pk=shot.post_id).update(status=PostStatus.REVIEW)

    assert "cannot be edited" in refused(shot, make_user())


def test_a_kind_without_a_workflow_tells_ops_where_to_set_one(shot):
    make_shot_workflow(kind=ShotKind.B_ROLL)  # another kind's mapping does not count

    assert refused(shot, make_user()) == (
        "No workflow is set for A-roll (artist talking) shots: ops set one under Posts > Shot workflows."
    )


def test_a_workflow_naming_a_missing_template_is_refused(shot):
    ShotWorkflow.objects.create(kind=ShotKind.A_ROLL, template_name="never-imported")

    assert refused(shot, make_user()) == "No active workflow template named “never-imported”."


def test_generating_queues_a_factory_job_for_the_shot(shot, django_capture_on_commit_callbacks):
    mapping = make_shot_workflow(kind=ShotKind.A_ROLL)
    pia = make_user(role=roles.PRODUCER, username="pia")

    with django_capture_on_commit_callbacks(execute=True):
        returned = pipeline.shot_generate_picture(shot_id=shot.pk, actor=pia)

    job = Job.objects.get()
    try:
        shot.refresh_from_db()
        assert (returned.status, returned.job) == (ShotStatus.PRODUCING, job)
        assert (shot.status, shot.job) == (ShotStatus.PRODUCING, job)
        assert re.fullmatch(rf"post\.{shot.post_id}/shot\.{shot.pk}/picture@[0-9a-f]{{16}}", job.subject)
        assert (job.status, job.template.name, job.created_by) == (JobStatus.QUEUED, mapping.template_name, pia)
        assert job.params == pipeline.shot_parameters(shot, job.template.placeholders)
        assert set(job.params) == {"PROMPT", "FACE_IMAGE", "SEED", "LORA_NAME", "TRIGGER_WORD", "LORA_STRENGTH"}
        assert job.params["LORA_NAME"] == "suit_v1.safetensors"
        assert job.rq_job_id  # the worker's doorbell rang after commit
        event = shot.post.events.get()
        assert (event.kind, event.actor, event.note) == (PostEvent.Kind.STORYBOARD, pia, "Shot 1: picture queued")
    finally:  # no worker takes it: leave the queue as we found it
        RqJob.fetch(job.rq_job_id, connection=django_rq.get_connection("gpu")).delete(remove_from_queue=True)


def test_generating_again_replaces_the_shots_job(shot, django_capture_on_commit_callbacks):
    make_shot_workflow(kind=ShotKind.A_ROLL)
    old = shot_job(shot, status=JobStatus.FAILED)

    with django_capture_on_commit_callbacks():
        pipeline.shot_generate_picture(shot_id=shot.pk, actor=make_user())

    shot.refresh_from_db()
    assert shot.job != old
    assert shot.job.subject.split("@")[0] == old.subject.split("@")[0]


# --- on_job_changed: the factory's news -----------------------------------------------------------


def test_a_succeeded_job_gives_the_shot_its_picture(shot, django_capture_on_commit_callbacks):
    job = shot_job(shot)

    # One commit each, as the worker does: the output's announcement reads the job while it still runs.
    with django_capture_on_commit_callbacks(execute=True):
        stored = record_png(job)
    with django_capture_on_commit_callbacks(execute=True):
        assert factory_services.job_succeed(job_id=job.pk, claim=job.claim)

    shot.refresh_from_db()
    assert shot.status == ShotStatus.READY
    assert shot.generated_asset.name == stored
    event = shot.post.events.get()
    assert (event.kind, event.actor, event.note) == (PostEvent.Kind.STORYBOARD, None, "Shot 1: picture ready")


def test_a_failed_job_marks_the_shot_failed_and_says_why(shot, django_capture_on_commit_callbacks):
    job = shot_job(shot)

    with django_capture_on_commit_callbacks(execute=True):
        factory_services.job_fail(
            job_id=job.pk, claim=job.claim, kind=ErrorKind.OOM, message="Out of GPU memory on gpu-1."
        )

    shot.refresh_from_db()
    assert (shot.status, shot.generated_asset.name) == (ShotStatus.FAILED, "")
    # The shot, its kind, the step and the template: where to look, and which workflow to fix.
    expected = f"Shot 1 (A-roll), picture step, template {job.template.name}: Out of GPU memory on gpu-1."
    assert shot.post.events.get().note == expected


def test_a_cancelled_job_marks_the_shot_failed(shot, django_capture_on_commit_callbacks):
    job = shot_job(shot, status=JobStatus.QUEUED, attempts=0)

    with django_capture_on_commit_callbacks(execute=True):
        factory_services.job_cancel(job_id=job.pk, actor=make_user(username="olga"))

    shot.refresh_from_db()
    assert shot.status == ShotStatus.FAILED
    expected = f"Shot 1 (A-roll), picture step, template {job.template.name}: Cancelled by olga."
    assert shot.post.events.get().note == expected


def test_news_of_an_older_job_changes_nothing(shot, django_capture_on_commit_callbacks):
    older = shot_job(shot)
    shot_job(shot)  # the shot was generated again: this one is its job now

    with django_capture_on_commit_callbacks(execute=True):
        record_png(older)
    with django_capture_on_commit_callbacks(execute=True):
        assert factory_services.job_succeed(job_id=older.pk, claim=older.claim)

    shot.refresh_from_db()
    assert (shot.status, shot.generated_asset.name) == (ShotStatus.PRODUCING, "")
    assert not shot.post.events.exists()


def test_a_job_whose_subject_is_not_a_shots_is_ignored(shot, django_capture_on_commit_callbacks):
    # Even a job set as the shot's job is ignored when its subject names something else.
    job = make_job(subject=f"render.post.{shot.post_id}", status=JobStatus.RUNNING, attempts=1)
    Shot.objects.filter(pk=shot.pk).update(job=job, status=ShotStatus.PRODUCING)

    with django_capture_on_commit_callbacks(execute=True):
        record_png(job)
    with django_capture_on_commit_callbacks(execute=True):
        assert factory_services.job_succeed(job_id=job.pk, claim=job.claim)

    shot.refresh_from_db()
    assert (shot.status, shot.generated_asset.name) == (ShotStatus.PRODUCING, "")
    assert not shot.post.events.exists()


def test_a_hand_sent_signal_with_the_real_payload_settles_the_shot(shot):
    job = shot_job(shot)
    record_png(job)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    job.refresh_from_db()

    job_changed.send(sender=Job, **factory_services.job_payload(job, event="status"))

    shot.refresh_from_db()
    assert shot.status == ShotStatus.READY


# --- pushes, heard on the post's socket ----------------------------------------------------------


def listen(post_id: int, user, action, *, count: int) -> list[dict]:
    """Connect as `user` to the post's socket, run `action` (sync, in a thread), return the next `count` events."""
    cookie = session_cookie(user)

    async def scenario():
        socket = communicator(post_id, cookie=cookie)
        connected, _ = await socket.connect()
        assert connected
        assert await socket.receive_json_from(timeout=5) == {"event": "hello", "post_id": post_id}
        await database_sync_to_async(action)()
        heard = [await socket.receive_json_from(timeout=5) for _ in range(count)]
        assert await socket.receive_nothing(timeout=0.2)
        await socket.disconnect()
        return heard

    return async_to_sync(scenario)()


def member_and_shot() -> tuple:
    producer = make_user(role=roles.PRODUCER)
    post = make_post(artist=make_artist(members=[producer]))
    return producer, make_shot(post=post, position=1)


@pytest.mark.django_db(transaction=True)
def test_progress_is_pushed_to_the_posts_group_as_job_progress():
    producer, shot = member_and_shot()
    job = shot_job(shot)

    def progress():
        factory_services.job_progress(job_id=job.pk, claim=job.claim, node="5", value=10, maximum=20, percent=50.0)

    heard = listen(shot.post_id, producer, progress, count=1)

    assert heard == [
        {
            "event": "job.progress",
            "shot_id": shot.pk,
            "job_id": job.pk,
            "status": "running",
            "render": False,
            "step": "picture",
            "node": "5",
            "value": 10,
            "max": 20,
            "percent": 50.0,
        }
    ]


@pytest.mark.django_db(transaction=True)
def test_a_job_starting_is_pushed_as_job_progress():
    producer, shot = member_and_shot()
    job = shot_job(shot, status=JobStatus.QUEUED, attempts=0)

    def start():
        factory_services.job_start(job_id=job.pk, worker_name="gpu-1", server_url="http://127.0.0.1:8188")

    heard = listen(shot.post_id, producer, start, count=1)

    assert heard[0]["event"] == "job.progress"
    assert (heard[0]["shot_id"], heard[0]["job_id"], heard[0]["status"]) == (shot.pk, job.pk, "running")


@pytest.mark.django_db(transaction=True)
def test_a_finished_job_pushes_post_changed_then_job_finished():
    producer, shot = member_and_shot()
    job = shot_job(shot)

    def finish():
        record_png(job)
        factory_services.job_succeed(job_id=job.pk, claim=job.claim)

    heard = listen(shot.post_id, producer, finish, count=2)

    assert heard == [
        {"event": "post.changed", "version": 1, "by": "", "kind": "storyboard", "note": "Shot 1: picture ready"},
        {
            "event": "job.finished",
            "shot_id": shot.pk,
            "job_id": job.pk,
            "status": "succeeded",
            "error": None,
            "step": "picture",
        },
    ]
    shot.refresh_from_db()
    assert shot.status == ShotStatus.READY


@pytest.mark.django_db(transaction=True)
def test_a_failed_job_pushes_its_error():
    producer, shot = member_and_shot()
    job = shot_job(shot)

    def fail():
        factory_services.job_fail(
            job_id=job.pk, claim=job.claim, kind=ErrorKind.OOM, message="Out of GPU memory on gpu-1."
        )

    heard = listen(shot.post_id, producer, fail, count=2)

    expected = f"Shot 1 (A-roll), picture step, template {job.template.name}: Out of GPU memory on gpu-1."
    assert heard[0]["note"] == expected
    assert heard[1] == {
        "event": "job.finished",
        "shot_id": shot.pk,
        "job_id": job.pk,
        "status": "failed",
        "error": {"kind": "oom", "message": "Out of GPU memory on gpu-1."},
        "step": "picture",
    }
