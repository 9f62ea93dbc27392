"""Production planning and its bookkeeping: which jobs a post needs, what the factory's answers do to it.

The jobs here are answered in-process as a worker would (claim, file, succeed or fail), so each rule
is checked on its own; tests/posts/test_production_e2e.py runs the same path through real workers.
"""

import hashlib
import wave
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from factory import services as factory_services
from factory.models import ErrorKind, Job, JobKind, JobStatus
from posts import pipeline
from posts.models import PostEvent, PostStatus, Shot, ShotKind, ShotStatus
from tests.factories import (
    make_artist,
    make_media_file,
    make_post,
    make_shot,
    make_shot_workflow,
    make_user,
    make_voice,
    wav_bytes,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer():
    from mcn_site.lib import roles

    return make_user(role=roles.REVIEWER)


@pytest.fixture
def tts_on(settings):
    settings.COSYVOICE_URL = "http://127.0.0.1:9"  # jobs are only queued here, never sent
    settings.COSYVOICE_SAMPLE_RATE = 24000


def post_in_review(reviewer, *, shots: int = 3, **shot_fields):
    artist = make_artist(members=[reviewer], voice=make_voice(speaker_id="中文女"))
    post = make_post(artist=artist, status=PostStatus.REVIEW)
    for position in range(1, shots + 1):
        make_shot(post=post, position=position, script=f"第{position}句台词。", **shot_fields)
    return post


def answer(job: Job, *, seconds: float = 2.0, fail: str = "") -> None:
    """Do what a worker does with `job`: claim it, then store its file and succeed, or fail."""
    job = factory_services.job_start(job_id=job.pk, worker_name="test-worker", server_url="")  # its claim token
    if fail:
        factory_services.job_fail(job_id=job.pk, claim=job.claim, kind=ErrorKind.EXECUTION, message=fail)
        return
    if job.kind == JobKind.TTS:
        data, name, content_type = wav_bytes(seconds, rate=24000), f"factory/tts/job-{job.pk}-1.wav", "audio/wav"
    else:
        data, name, content_type = None, f"factory/job{job.pk}/shot_00001_.png", "image/png"
    stored = make_media_file(name, data)
    size = len(data) if data else 0
    factory_services.job_record_output(
        job_id=job.pk,
        claim=job.claim,
        attempt=1,
        node_id="tts" if job.kind == JobKind.TTS else "6",
        index=0,
        name=name.rsplit("/", 1)[-1],
        stored_name=stored,
        size=size,
        sha256=hashlib.sha256(data or b"").hexdigest(),
        content_type=content_type,
    )
    factory_services.job_succeed(job_id=job.pk, claim=job.claim, require_output=False)  # as runners.run_task_job does


def jobs_of(post, kind: str) -> list[Job]:
    return list(Job.objects.filter(kind=kind, subject__startswith=f"post.{post.pk}/").order_by("pk"))


# --- planning -----------------------------------------------------------------------------------


def test_approving_an_animatic_goes_straight_to_the_render(reviewer, django_capture_on_commit_callbacks):
    post = post_in_review(reviewer)  # no voice server, no shot workflows: title cards and silence

    with django_capture_on_commit_callbacks(execute=True):
        approved = pipeline.post_approve(post_id=post.pk, actor=reviewer)

    post.refresh_from_db()
    assert post.status == PostStatus.RENDERING
    assert [job.kind for job in Job.objects.all()] == [JobKind.RENDER]
    assert post.render_job.params == {"post_id": post.pk}
    assert approved.started_jobs == [post.render_job.pk]
    assert set(post.shots.values_list("status", flat=True)) == {ShotStatus.READY}
    assert post.events.filter(note="Every shot is ready: render queued.").exists()


def test_approving_queues_a_voice_per_scripted_shot_and_a_picture_per_mapped_kind(reviewer, tts_on):
    make_shot_workflow(kind=ShotKind.B_ROLL)
    post = post_in_review(reviewer, shots=2)
    make_shot(post=post, position=3, kind=ShotKind.B_ROLL, script="", visual_prompt="Gold bars")
    make_shot(
        post=post, position=4, kind=ShotKind.B_ROLL, script="", manual_asset=make_media_file("shots/manual/m.png")
    )

    approved = pipeline.post_approve(post_id=post.pk, actor=reviewer)

    voices, pictures = jobs_of(post, JobKind.TTS), jobs_of(post, JobKind.COMFYUI)
    assert [job.params["text"] for job in voices] == ["第1句台词。", "第2句台词。"]
    assert all(job.params["spk_id"] == "中文女" for job in voices)
    # Only shot 3: A-roll has no workflow (a card), shot 4 uses its manual asset.
    assert [job.subject.split("/")[1] for job in pictures] == [f"shot.{post.shots.get(position=3).pk}"]
    assert sorted(approved.started_jobs) == sorted(job.pk for job in voices + pictures)
    assert not jobs_of(post, JobKind.RENDER)
    assert list(post.shots.order_by("position").values_list("status", flat=True)) == [
        ShotStatus.PRODUCING,
        ShotStatus.PRODUCING,
        ShotStatus.PRODUCING,
        ShotStatus.READY,
    ]


def test_a_zero_shot_voice_sends_its_sample_and_transcription(reviewer, tts_on):
    voice = make_voice(speaker_id="")
    voice.sample_audio.save("sample.wav", __import__("io").BytesIO(wav_bytes(4.0)), save=False)
    voice.sample_transcription = "大家好，我是露娜。"
    voice.save()
    post = make_post(artist=make_artist(members=[reviewer], voice=voice), status=PostStatus.REVIEW)
    make_shot(post=post, position=1, script="今天聊黄金。")

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    (job,) = jobs_of(post, JobKind.TTS)
    assert job.params == {
        "text": "今天聊黄金。",
        "prompt_text": "大家好，我是露娜。",
        "prompt_wav": voice.sample_audio.name,
    }


def test_approving_a_draft_is_refused_and_queues_nothing(reviewer):
    post = post_in_review(reviewer)
    post.status = PostStatus.DRAFT
    post.save()

    with pytest.raises(ValidationError, match="cannot become approved"):
        pipeline.post_approve(post_id=post.pk, actor=reviewer)

    assert not Job.objects.exists()
    post.refresh_from_db()
    assert post.status == PostStatus.DRAFT


# --- the factory's answers ------------------------------------------------------------------------


def test_a_voice_sets_the_shots_duration_and_the_last_one_queues_the_render(
    reviewer, tts_on, django_capture_on_commit_callbacks
):
    post = post_in_review(reviewer, shots=2)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_approve(post_id=post.pk, actor=reviewer)
    first, second = jobs_of(post, JobKind.TTS)

    with django_capture_on_commit_callbacks(execute=True):
        answer(first, seconds=2.345)
    shot = Shot.objects.get(voice_job=first)
    assert shot.voice_asset.name == f"factory/tts/job-{first.pk}-1.wav"
    assert shot.duration_seconds == Decimal("2.35")  # the artist's real speaking time, rounded up
    assert (shot.status, shot.voice_key) == (ShotStatus.READY, first.subject.rsplit("@", 1)[1])
    assert not jobs_of(post, JobKind.RENDER), "one voice is still being made"

    with django_capture_on_commit_callbacks(execute=True):
        answer(second, seconds=1.0)
    post.refresh_from_db()
    assert post.render_job.kind == JobKind.RENDER
    assert post.status == PostStatus.RENDERING


def test_a_failed_voice_fails_the_post_naming_the_shot_and_the_reason(
    reviewer, tts_on, django_capture_on_commit_callbacks
):
    post = post_in_review(reviewer, shots=3)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_approve(post_id=post.pk, actor=reviewer)
    voices = jobs_of(post, JobKind.TTS)

    with django_capture_on_commit_callbacks(execute=True):
        answer(voices[1], fail="The voice server failed (500): Internal Server Error.")

    post.refresh_from_db()
    reason = "Shot 2 (A-roll), voice step: The voice server failed (500): Internal Server Error."
    assert (post.status, post.failure) == (PostStatus.FAILED, reason)
    assert post.shots.get(position=2).error == reason
    assert post.events.filter(kind=PostEvent.Kind.STATUS, to_status=PostStatus.FAILED, note=reason).exists()
    # The others still finish, and are kept for the retry.
    with django_capture_on_commit_callbacks(execute=True):
        answer(voices[0])
    assert post.shots.get(position=1).voice_asset
    assert not jobs_of(post, JobKind.RENDER)


def test_retrying_resumes_only_what_is_missing(reviewer, tts_on, django_capture_on_commit_callbacks):
    post = post_in_review(reviewer, shots=3)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_approve(post_id=post.pk, actor=reviewer)
    voices = jobs_of(post, JobKind.TTS)
    with django_capture_on_commit_callbacks(execute=True):
        answer(voices[0])
        answer(voices[1], fail="Voice server unreachable at http://127.0.0.1:9.")
        answer(voices[2])

    with django_capture_on_commit_callbacks(execute=True):
        retried = pipeline.post_produce(post_id=post.pk, actor=reviewer)

    again = jobs_of(post, JobKind.TTS)[3:]
    assert [job.params["text"] for job in again] == ["第2句台词。"]
    assert retried.started_jobs == [again[0].pk]
    post.refresh_from_db()
    assert (post.status, post.failure) == (PostStatus.RENDERING, "")
    assert post.shots.get(position=2).error == ""
    with django_capture_on_commit_callbacks(execute=True):
        answer(again[0])
    post.refresh_from_db()
    assert post.render_job is not None


def test_a_retry_waits_for_a_job_still_making_the_same_thing(reviewer, tts_on, django_capture_on_commit_callbacks):
    post = post_in_review(reviewer, shots=2)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_approve(post_id=post.pk, actor=reviewer)
    slow, broken = jobs_of(post, JobKind.TTS)
    with django_capture_on_commit_callbacks(execute=True):
        answer(broken, fail="boom")

    pipeline.post_produce(post_id=post.pk, actor=reviewer)

    # Shot 1's voice is still being made from the same inputs: no second job for it.
    assert [job.params["text"] for job in jobs_of(post, JobKind.TTS)] == ["第1句台词。", "第2句台词。", "第2句台词。"]
    assert slow.status == JobStatus.QUEUED


def test_editing_one_shot_reproduces_only_that_shot(reviewer, tts_on, django_capture_on_commit_callbacks):
    make_shot_workflow(kind=ShotKind.A_ROLL)
    post = post_in_review(reviewer, shots=3)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_approve(post_id=post.pk, actor=reviewer)
        for job in Job.objects.filter(status=JobStatus.QUEUED).exclude(kind=JobKind.RENDER):
            answer(job)
    post.refresh_from_db()
    render = post.render_job
    with django_capture_on_commit_callbacks(execute=True):
        answer(render, fail="ffmpeg exited 1")  # a failed render: back to draft, edit, review, approve
    before = set(Job.objects.values_list("pk", flat=True))
    from posts import services

    services.post_transition(post_id=post.pk, to_status=PostStatus.DRAFT, actor=reviewer)
    Shot.objects.filter(post=post, position=2).update(script="改过的第二句。")
    services.post_transition(post_id=post.pk, to_status=PostStatus.REVIEW, actor=reviewer)

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    new = Job.objects.exclude(pk__in=before)
    shot2 = post.shots.get(position=2).pk
    assert {(job.kind, job.subject.split("/")[1]) for job in new} == {
        (JobKind.TTS, f"shot.{shot2}"),
        (JobKind.COMFYUI, f"shot.{shot2}"),  # the picture's prompt carries the script too
    }


def test_a_locked_shot_keeps_its_picture_even_when_its_inputs_change(
    reviewer, tts_on, django_capture_on_commit_callbacks
):
    make_shot_workflow(kind=ShotKind.A_ROLL)
    post = post_in_review(reviewer, shots=1, locked=True)
    shot = post.shots.get()
    Shot.objects.filter(pk=shot.pk).update(
        generated_asset=make_media_file("shots/generated/old.png"), picture_key="0" * 16
    )

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    assert not jobs_of(post, JobKind.COMFYUI)
    assert jobs_of(post, JobKind.TTS)  # its voice was never made: that is not re-producing


def test_a_late_answer_from_an_older_job_changes_nothing(reviewer, tts_on, django_capture_on_commit_callbacks):
    post = post_in_review(reviewer, shots=1)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_approve(post_id=post.pk, actor=reviewer)
    (old,) = jobs_of(post, JobKind.TTS)
    with django_capture_on_commit_callbacks(execute=True):
        answer(old, fail="first try failed")
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_produce(post_id=post.pk, actor=reviewer)
    current = jobs_of(post, JobKind.TTS)[-1]
    assert current != old
    Job.objects.filter(pk=old.pk).update(status=JobStatus.RUNNING)  # a zombie worker answers late
    old.refresh_from_db()  # with the claim of the run that failed

    with django_capture_on_commit_callbacks(execute=True):
        factory_services.job_succeed(job_id=old.pk, claim=old.claim, require_output=False)

    shot = post.shots.get()
    assert (shot.voice_job_id, shot.voice_asset.name, shot.status) == (current.pk, "", ShotStatus.PRODUCING)


def test_the_render_finishing_attaches_the_video_and_the_post_is_done(
    reviewer, django_capture_on_commit_callbacks, settings
):
    post = post_in_review(reviewer, shots=1)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_approve(post_id=post.pk, actor=reviewer)
    post.refresh_from_db()
    render = post.render_job
    render = factory_services.job_start(job_id=render.pk, worker_name="cpu", server_url="")
    stored = make_media_file(f"posts/final/post-{post.pk}-job-{render.pk}.mp4", b"\x00\x00\x00\x18ftypisom")
    factory_services.job_record_output(
        job_id=render.pk,
        claim=render.claim,
        attempt=1,
        node_id="render",
        index=0,
        name="v.mp4",
        stored_name=stored,
        size=12,
        sha256="0" * 64,
        content_type="video/mp4",
    )

    with django_capture_on_commit_callbacks(execute=True):
        factory_services.job_succeed(job_id=render.pk, claim=render.claim, require_output=False)

    post.refresh_from_db()
    assert (post.status, post.final_video.name, post.failure) == (PostStatus.DONE, stored, "")


def test_a_failed_render_fails_the_post_with_the_reason(reviewer, django_capture_on_commit_callbacks):
    post = post_in_review(reviewer, shots=1)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.post_approve(post_id=post.pk, actor=reviewer)
    post.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        answer(post.render_job, fail="Clip 1: cannot read shots/manual/gone.png")

    post.refresh_from_db()
    assert post.status == PostStatus.FAILED
    assert post.failure == "Render failed: Clip 1: cannot read shots/manual/gone.png"


def test_wav_duration_is_read_from_the_header(tmp_path):
    path = tmp_path / "v.wav"
    path.write_bytes(wav_bytes(1.5, rate=22050))
    with wave.open(str(path)) as audio:
        assert audio.getframerate() == 22050
    assert pipeline._wav_seconds(path) == pytest.approx(1.5, abs=1e-4)


# --- video steps (issue 16): voice -> avatar, still -> motion ---------------------------------------------


@pytest.fixture
def settle(django_capture_on_commit_callbacks):
    """answer(job, ...) with its after-commit news delivered, as a worker's commit delivers it."""

    def run(job, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            answer(job, **kwargs)

    return run


def _avatar_mapping(**extra):
    from tests.factories import PREVIEW_AVATAR_WORKFLOW, VIDEO_PLACEHOLDERS

    return make_shot_workflow(
        kind=ShotKind.A_ROLL, step="avatar", workflow=PREVIEW_AVATAR_WORKFLOW, placeholders=VIDEO_PLACEHOLDERS, **extra
    )


def test_the_avatar_waits_for_the_voice_and_is_asked_for_a_clip_as_long_as_it(reviewer, tts_on, settle):
    _avatar_mapping()
    post = post_in_review(reviewer, shots=1)

    pipeline.post_approve(post_id=post.pk, actor=reviewer)
    shot = post.shots.get()
    assert shot.clip_job is None  # the voice first
    settle(shot.voice_job, seconds=1.3)

    shot.refresh_from_db()
    clip = shot.clip_job
    assert clip.subject.startswith(f"post.{post.pk}/shot.{shot.pk}/avatar@")
    assert clip.params["VOICE_AUDIO"] == shot.voice_asset.name
    assert clip.params["FACE_IMAGE"] == post.artist.face_anchor.name  # no still: the face anchor speaks
    assert (clip.params["FPS"], clip.params["FRAMES"]) == (25.0, 33)  # 1.3 s x 25 fps, rounded up
    assert shot.status == ShotStatus.PRODUCING
    post.refresh_from_db()
    assert post.render_job is None  # the render waits for the clip


def test_a_template_manifest_fps_sets_the_clips_frame_rate(reviewer, tts_on, settle):
    from factory.models import WorkflowTemplate

    mapping = _avatar_mapping()
    if not hasattr(WorkflowTemplate, "manifest"):
        pytest.skip("WorkflowTemplate.manifest comes with helper 16-preflight's branch")
    WorkflowTemplate.objects.filter(name=mapping.template_name).update(manifest={"fps": 16})
    post = post_in_review(reviewer, shots=1)
    pipeline.post_approve(post_id=post.pk, actor=reviewer)
    settle(post.shots.get().voice_job, seconds=1.0)

    clip = post.shots.get().clip_job
    assert (clip.params["FPS"], clip.params["FRAMES"]) == (16.0, 16)


def test_a_clip_that_settles_the_last_shot_queues_the_render_and_keeps_the_voice_and_still(reviewer, tts_on, settle):
    _avatar_mapping()
    post = post_in_review(reviewer, shots=1)
    pipeline.post_approve(post_id=post.pk, actor=reviewer)
    settle(post.shots.get().voice_job)
    shot = post.shots.get()

    settle(shot.clip_job)

    shot.refresh_from_db()
    post.refresh_from_db()
    assert shot.generated_clip.name and shot.clip_key and shot.status == ShotStatus.READY
    assert post.render_job is not None


def test_an_unbound_placeholder_fails_the_post_naming_shot_step_and_template(reviewer, tts_on, settle):
    workflow = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": "{{AUDIO_PATH}}"}},
        "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "x"}},
    }
    make_shot_workflow(kind=ShotKind.A_ROLL, step="avatar", workflow=workflow, template_name="longcat_avatar")
    post = post_in_review(reviewer, shots=1)
    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    settle(post.shots.get().voice_job)

    post.refresh_from_db()
    assert post.status == PostStatus.FAILED
    assert post.failure.startswith("Shot 1 (A-roll), avatar step, template longcat_avatar: "), post.failure
    assert "AUDIO_PATH" in post.failure


def test_without_a_video_mapping_a_shot_drops_its_old_clip_and_renders_its_still(reviewer):
    post = post_in_review(reviewer, shots=1)
    shot = post.shots.get()
    Shot.objects.filter(pk=shot.pk).update(generated_clip=make_media_file("shots/clips/old.mp4", b"x"), clip_key="k")

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    shot.refresh_from_db()
    assert not shot.generated_clip and not shot.clip_key
    assert not Job.objects.filter(kind=JobKind.COMFYUI).exists()
    post.refresh_from_db()
    assert post.render_job is not None  # the title card with a Ken Burns move, as before


def test_a_locked_shot_keeps_its_clip(reviewer, tts_on):
    _avatar_mapping()
    post = post_in_review(reviewer, shots=1, locked=True)
    shot = post.shots.get()
    voice = make_media_file("shots/voice/v.wav", wav_bytes(1.0, rate=24000))
    key = pipeline.voice_key(Shot.objects.select_related("post__artist__voice").get(pk=shot.pk))
    clip = make_media_file("shots/clips/kept.mp4", b"x")
    Shot.objects.filter(pk=shot.pk).update(voice_asset=voice, voice_key=key, generated_clip=clip, clip_key="old")

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    shot.refresh_from_db()
    assert shot.generated_clip.name == clip and shot.clip_job is None
