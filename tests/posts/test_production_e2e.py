"""From approval to a finished MP4 through real workers: a fake ComfyUI, a fake CosyVoice, real ffmpeg.

A GPU worker (run_gpu_worker) makes the pictures, the CPU worker (rqworker cpu, as `make run` starts
it) makes the voices and the render; the test only approves and reads what came out with ffprobe.
"""

import shutil
from pathlib import Path

import pytest
from django.conf import settings

from factory.models import TERMINAL_STATUSES, Job, JobKind, JobStatus
from mcn_site.lib import roles
from posts import pipeline
from posts.models import PostStatus, ShotKind
from tests.factories import (
    A_ROLL_WORKFLOW,
    B_ROLL_WORKFLOW,
    make_artist,
    make_media_file,
    make_post,
    make_shot,
    make_shot_workflow,
    make_user,
    make_voice,
)
from tests.factory.conftest import probe, wait_for

FFPROBE = shutil.which("ffprobe")
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(FFPROBE is None, reason="ffprobe (Debian package ffmpeg) is not installed"),
]
FPS = 30


@pytest.fixture
def workers(fake_comfyui, fake_cosyvoice, start_worker):
    env = {"COSYVOICE_URL": fake_cosyvoice.url, "COSYVOICE_SAMPLE_RATE": "24000"}
    start_worker(fake_comfyui.url, env=env)
    start_worker(cpu=True, env=env)
    return fake_comfyui, fake_cosyvoice


@pytest.fixture
def six_shot_post(settings, fake_cosyvoice):
    """Three spoken A-roll shots, two silent B-roll cutaways, one product shot with its own picture."""
    settings.COSYVOICE_URL = fake_cosyvoice.url  # the web side decides which shots need a voice
    make_shot_workflow(kind=ShotKind.A_ROLL, workflow=A_ROLL_WORKFLOW)
    make_shot_workflow(kind=ShotKind.B_ROLL, workflow=B_ROLL_WORKFLOW)
    reviewer = make_user(role=roles.REVIEWER)
    artist = make_artist(members=[reviewer], voice=make_voice(speaker_id="中文女"), colour="#be185d")
    post = make_post(artist=artist, status=PostStatus.REVIEW, title="黄金还能买吗")
    make_shot(post=post, position=1, script="大家好，我是露娜。")
    make_shot(post=post, position=2, kind=ShotKind.B_ROLL, script="", visual_prompt="Gold bars", duration_seconds=1.5)
    make_shot(post=post, position=3, script="金价创了新高。")
    make_shot(
        post=post,
        position=4,
        kind=ShotKind.PRODUCT,
        script="",
        manual_asset=make_media_file("shots/manual/product.png"),
        duration_seconds=1.2,
    )
    make_shot(post=post, position=5, kind=ShotKind.B_ROLL, script="", visual_prompt="A chart", duration_seconds=1.0)
    make_shot(post=post, position=6, script="下期见！")
    return post, reviewer


def settled(post) -> bool:
    post.refresh_from_db()
    return post.status in {PostStatus.DONE, PostStatus.FAILED}


def test_an_approved_six_shot_post_becomes_a_playable_mp4_with_voice_pictures_and_captions(workers, six_shot_post):
    _, fake_cosyvoice = workers
    post, reviewer = six_shot_post

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    wait_for(lambda: settled(post), timeout=240, what="the post to be rendered")
    assert post.status == PostStatus.DONE, post.failure
    # One voice per spoken shot, one picture per shot without its own (4: three A-roll + two B-roll - none manual).
    assert len(fake_cosyvoice.requests()) == 3
    assert Job.objects.filter(kind=JobKind.COMFYUI).count() == 5
    shots = list(post.shots.order_by("position"))
    for shot in shots:
        if shot.script:
            # The voice set the shot's length: the fake speaks 0.25 s per Chinese character.
            assert abs(float(shot.duration_seconds) - fake_cosyvoice.expected_seconds(shot.script)) <= 0.011
    total = float(sum(shot.duration_seconds for shot in shots))

    info = probe(Path(settings.MEDIA_ROOT) / post.final_video.name)
    kinds = {stream["codec_type"]: stream for stream in info["streams"]}
    video, audio = kinds["video"], kinds["audio"]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1080, 1920)
    assert video["r_frame_rate"] == f"{FPS}/1"
    assert audio["codec_name"] == "aac"
    assert kinds["subtitle"]["codec_name"] == "mov_text"  # the captions, also burned into the picture
    assert abs(float(info["format"]["duration"]) - total) <= 1 / FPS + 0.03  # container rounding on the AAC side
    assert abs(float(video["duration"]) - total) <= 1 / FPS


def test_a_failed_voice_fails_the_post_and_retry_makes_only_that_voice(workers, six_shot_post):
    _, fake_cosyvoice = workers
    post, reviewer = six_shot_post
    fake_cosyvoice.fail_next(500, detail="CUDA out of memory")

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    wait_for(lambda: settled(post), timeout=120, what="the post to fail")
    assert post.status == PostStatus.FAILED
    assert post.failure.startswith("Shot ") and ": voice failed: The voice server failed (500)" in post.failure
    # Wait until the other two voices and the pictures are in: they are kept for the retry.
    pictures = Job.objects.filter(kind=JobKind.COMFYUI)
    wait_for(
        lambda: post.shots.filter(voice_asset="").exclude(script="").count() == 1
        and not pictures.exclude(status__in=TERMINAL_STATUSES).exists(),
        timeout=120,
        what="the other voices and the pictures",
    )
    # Every picture was made (a failed one would rightly be made again by the retry).
    assert {job.status: job.error_message for job in pictures} == {JobStatus.SUCCEEDED: ""}
    pictures_before = pictures.count()

    pipeline.post_produce(post_id=post.pk, actor=reviewer)

    wait_for(lambda: settled(post), timeout=240, what="the retried post to be rendered")
    assert post.status == PostStatus.DONE, post.failure
    assert len(fake_cosyvoice.requests()) == 4  # three, then the failed one again
    assert Job.objects.filter(kind=JobKind.COMFYUI).count() == pictures_before
    assert post.final_video
