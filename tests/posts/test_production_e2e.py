"""From approval to a finished MP4 through real workers: a fake ComfyUI, a fake CosyVoice, real ffmpeg.

A GPU worker (run_gpu_worker) makes the pictures, the CPU worker (rqworker cpu, as `make run` starts
it) makes the voices and the render; the test only approves and reads what came out with ffprobe.
"""

import hashlib
import json
import math
import os
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
    MOTION_GIF_WORKFLOW,
    PREVIEW_AVATAR_WORKFLOW,
    PREVIEW_MOTION_WORKFLOW,
    VIDEO_PLACEHOLDERS,
    make_artist,
    make_media_file,
    make_post,
    make_shot,
    make_shot_workflow,
    make_user,
    make_voice,
)
from tests.factory.conftest import probe, wait_for
from tests.fakes.comfyui import COMFYUI_VERSION, VHS_NODES, FakeComfyUI

FFPROBE = shutil.which("ffprobe")
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(FFPROBE is None, reason="ffprobe (Debian package ffmpeg) is not installed"),
]
FPS = 30


@pytest.fixture
def workers(fake_comfyui, fake_cosyvoice, start_worker):
    env = {"COSYVOICE_URL": fake_cosyvoice.url, "COSYVOICE_SAMPLE_RATE": "24000"}
    env["COSYVOICE_MODEL"] = "CosyVoice-300M-SFT"  # the server does not say: each voice's provenance names it
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
    # One voice per spoken shot; one picture per distinct set of picture inputs (issue 17: a post makes the same
    # thing once): the A-roll template takes only the face, so its three shots share one picture, and the
    # B-roll template only the frame size, so its two share another. The job settled every shot waiting for it.
    assert len(fake_cosyvoice.requests()) == 3
    assert Job.objects.filter(kind=JobKind.COMFYUI).count() == 2
    pictures = post.shots.exclude(kind=ShotKind.PRODUCT).values_list("kind", "generated_asset")
    assert len({name for _, name in pictures}) == 2 and all(name for _, name in pictures)
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

    # How each shot was made travels with the video: its provenance, as ffprobe reads the MP4's tags.
    record = json.loads(info["format"]["tags"]["mcn_provenance"])
    assert (record["post"], record["mcn_os"]) == (post.pk, settings.MCN_VERSION)
    assert [(s["position"], s["kind"]) for s in record["shots"]] == [(s.position, s.kind) for s in shots]
    for shot, made in zip(shots, record["shots"], strict=True):
        if shot.manual_asset:
            assert made["picture"] == {"manual": True}
            continue
        picture = shot.job.provenance
        assert made["picture"] == {
            "template": shot.job.template.name,
            "version": shot.job.template.version,
            "sha256": picture["template"]["sha256"],
            "seed": picture["seed"],
            "comfyui": COMFYUI_VERSION,
            "job": shot.job_id,
        }
        assert made["voice"] == (
            {"model": "CosyVoice-300M-SFT", "voice": "中文女", "job": shot.voice_job_id} if shot.script else None
        )


def test_a_failed_voice_fails_the_post_and_retry_makes_only_that_voice(workers, six_shot_post):
    _, fake_cosyvoice = workers
    post, reviewer = six_shot_post
    fake_cosyvoice.fail_next(500, detail="CUDA out of memory")

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    wait_for(lambda: settled(post), timeout=120, what="the post to fail")
    assert post.status == PostStatus.FAILED
    assert post.failure.startswith("Shot ") and "(A-roll), voice step: The voice server failed (500)" in post.failure
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


# --- video steps (issue 16): the artist speaks (avatar), the B-roll moves (motion) ----------------


@pytest.fixture
def fake_comfyui():
    """The fake with VideoHelperSuite's Video Combine installed (the motion workflow saves through it)."""
    fake = FakeComfyUI(extra_nodes=VHS_NODES).start()
    yield fake
    fake.stop()


@pytest.fixture
def video_post(settings, fake_cosyvoice):
    """Two spoken A-roll shots mapped to the avatar preview (no picture step: the face anchor speaks), and a
    silent B-roll whose flat still (B_ROLL_WORKFLOW) the motion preview turns into a clip."""
    settings.COSYVOICE_URL = fake_cosyvoice.url
    make_shot_workflow(
        kind=ShotKind.A_ROLL,
        step="avatar",
        workflow=PREVIEW_AVATAR_WORKFLOW,
        placeholders=VIDEO_PLACEHOLDERS,
        template_name="avatar_preview",
    )
    make_shot_workflow(kind=ShotKind.B_ROLL, workflow=B_ROLL_WORKFLOW)
    make_shot_workflow(
        kind=ShotKind.B_ROLL,
        step="motion",
        workflow=MOTION_GIF_WORKFLOW,
        placeholders=VIDEO_PLACEHOLDERS,
        template_name="motion_preview",
    )
    reviewer = make_user(role=roles.REVIEWER)
    artist = make_artist(members=[reviewer], voice=make_voice(speaker_id="中文女"))
    post = make_post(artist=artist, status=PostStatus.REVIEW, title="会动的视频")
    make_shot(post=post, position=1, script="大家好，我是露娜。")
    make_shot(post=post, position=2, kind=ShotKind.B_ROLL, script="", visual_prompt="Gold bars", duration_seconds=1.5)
    make_shot(post=post, position=3, script="下期见！")
    return post, reviewer


def step_of(job: Job) -> str:
    """What a job made for its shot (voice, picture, avatar, motion) or "render": its subject says."""
    return job.subject.rsplit("/", 1)[-1].split("@")[0]


def _frame(path: Path, at: float):
    """One decoded frame of the MP4 at `at` seconds, as a PIL image."""
    import io
    import subprocess

    from PIL import Image

    from factory.render import ffmpeg_binary

    argv = [ffmpeg_binary(), "-v", "error", "-ss", f"{at:.3f}", "-i", str(path), "-frames:v", "1", "-f", "image2pipe"]
    argv += ["-c:v", "png", "-"]
    return Image.open(io.BytesIO(subprocess.run(argv, capture_output=True, check=True).stdout)).convert("RGB")


def _moved(before, after) -> int:
    """The largest change of any pixel's channel between two frames (0: the same picture)."""
    from PIL import ImageChops

    return max(high for _, high in ImageChops.difference(before, after).getextrema())


def _loudness(path: Path, start: float, end: float) -> float:
    """The RMS level (dB) of the MP4's audio between two instants (-inf for digital silence)."""
    import re
    import subprocess

    from factory.render import ffmpeg_binary

    argv = [ffmpeg_binary(), "-v", "info", "-ss", f"{start:.3f}", "-t", f"{end - start:.3f}", "-i", str(path)]
    argv += ["-vn", "-af", "astats=measure_perchannel=none", "-f", "null", "-"]
    log = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
    level = re.findall(r"RMS level dB: (-?inf|-?[\d.]+)", log)[-1]
    return float(level)


def test_a_roll_speaks_through_the_avatar_and_b_roll_moves_through_the_motion_step(workers, video_post):
    fake_comfyui, _ = workers
    post, reviewer = video_post

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    wait_for(lambda: settled(post), timeout=240, what="the post to be rendered")
    assert post.status == PostStatus.DONE, post.failure
    shots = list(post.shots.order_by("position"))
    steps = sorted(step_of(job) for job in Job.objects.filter(kind=JobKind.COMFYUI))
    assert steps == ["avatar", "avatar", "motion", "picture"]
    assert all(shot.generated_clip for shot in shots)
    for shot in (shots[0], shots[2]):
        # The avatar was asked for a clip as long as the voice, at the template's rate (25 fps by default).
        avatar = Job.objects.get(subject__startswith=f"post.{post.pk}/shot.{shot.pk}/avatar@")
        seconds = pipeline._wav_seconds(Path(settings.MEDIA_ROOT) / shot.voice_asset.name)
        assert avatar.params["FPS"] == 25.0 and avatar.params["FRAMES"] == math.ceil(round(seconds * 25, 6))
        assert avatar.params["VOICE_AUDIO"] == shot.voice_asset.name
        assert avatar.params["FACE_IMAGE"] == post.artist.face_anchor.name
        assert avatar.created_at >= shot.voice_job.finished_at  # the voice first, then the avatar
    motion = Job.objects.get(subject__startswith=f"post.{post.pk}/shot.{shots[1].pk}/motion@")
    assert motion.params["SOURCE_IMAGE"] == shots[1].generated_asset.name
    # The face and each voice reached ComfyUI through its upload API, byte for byte.
    uploaded = {upload.sha256 for upload in fake_comfyui.uploads()}
    media = Path(settings.MEDIA_ROOT)
    for name in (post.artist.face_anchor.name, shots[0].voice_asset.name, shots[2].voice_asset.name):
        assert hashlib.sha256((media / name).read_bytes()).hexdigest() in uploaded, name

    final = media / post.final_video.name
    info = probe(final)
    kinds = {stream["codec_type"]: stream for stream in info["streams"]}
    total = float(sum(shot.duration_seconds for shot in shots))
    assert abs(float(kinds["video"]["duration"]) - total) <= 1 / FPS
    assert kinds["audio"]["codec_name"] == "aac"
    first, second = float(shots[0].duration_seconds), float(shots[1].duration_seconds)
    # B-roll moves: two instants of its clip differ (a flat still under Ken Burns would not).
    assert _moved(_frame(final, first + 0.2), _frame(final, first + second - 0.2)) > 64
    # The audio of record is the TTS voice: heard over the A-roll, silence over the silent B-roll clip.
    assert _loudness(final, 0.1, first - 0.1) > -40
    assert _loudness(final, first + 0.1, first + second - 0.1) == float("-inf")


def test_a_failed_motion_step_names_shot_kind_step_and_template_and_retry_redoes_only_it(workers, video_post):
    fake_comfyui, _ = workers
    post, reviewer = video_post
    fake_comfyui.execution_error_at_node("m3", "Allocation on device failed")

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    wait_for(lambda: settled(post), timeout=240, what="the post to fail")
    assert post.status == PostStatus.FAILED
    assert post.failure.startswith("Shot 2 (B-roll), motion step, template motion_preview: "), post.failure
    assert "Allocation on device failed" in post.failure
    comfy = Job.objects.filter(kind=JobKind.COMFYUI)

    def avatars_in() -> bool:
        # Every avatar finished, and each one that succeeded is on its shot: a job is marked succeeded a moment
        # before its shot takes the file, and the retry would take a made one from the post's jobs (issue 17).
        made = comfy.filter(subject__contains="/avatar@", status=JobStatus.SUCCEEDED).values_list("pk", flat=True)
        landed = post.shots.exclude(generated_clip="").values_list("clip_job_id", flat=True)
        return not comfy.exclude(status__in=TERMINAL_STATUSES).exists() and set(made) <= set(landed)

    wait_for(avatars_in, timeout=120, what="the avatars")
    before = {job.pk for job in Job.objects.all()}
    # An avatar whose voice came in after the post had failed was never queued: it is missing too.
    unmade = post.shots.filter(kind=ShotKind.A_ROLL, generated_clip="").count()

    pipeline.post_produce(post_id=post.pk, actor=reviewer)

    wait_for(lambda: settled(post), timeout=240, what="the retried post to be rendered")
    assert post.status == PostStatus.DONE, post.failure
    again = sorted(step_of(job) for job in Job.objects.exclude(pk__in=before))
    assert again == ["avatar"] * unmade + ["motion", "render"]  # no voice, no picture, no avatar made twice
    assert all(shot.generated_clip for shot in post.shots.all())


@pytest.mark.skipif(not os.environ.get("MCN_REAL_COMFYUI_URL"), reason="opt-in: set MCN_REAL_COMFYUI_URL")
def test_on_a_real_comfyui_the_preview_workflows_make_the_a_roll_speak_and_the_b_roll_a_clip(
    settings, fake_cosyvoice, start_worker
):
    """The same path on a real ComfyUI (e.g. 0.3.64 on a CPU, no models): uploads, video outputs, the render."""
    env = {"COSYVOICE_URL": fake_cosyvoice.url, "COSYVOICE_SAMPLE_RATE": "24000"}
    start_worker(os.environ["MCN_REAL_COMFYUI_URL"], env=env)
    start_worker(cpu=True, env=env)
    settings.COSYVOICE_URL = fake_cosyvoice.url
    video = {"placeholders": VIDEO_PLACEHOLDERS}
    make_shot_workflow(kind=ShotKind.A_ROLL, step="avatar", workflow=PREVIEW_AVATAR_WORKFLOW, **video)
    make_shot_workflow(kind=ShotKind.B_ROLL, workflow=B_ROLL_WORKFLOW)
    make_shot_workflow(kind=ShotKind.B_ROLL, step="motion", workflow=PREVIEW_MOTION_WORKFLOW, **video)
    reviewer = make_user(role=roles.REVIEWER)
    post = make_post(artist=make_artist(members=[reviewer], voice=make_voice(speaker_id="中文女")), status="review")
    make_shot(post=post, position=1, script="大家好，我是露娜。")
    make_shot(post=post, position=2, kind=ShotKind.B_ROLL, script="", visual_prompt="Gold bars", duration_seconds=1.5)

    pipeline.post_approve(post_id=post.pk, actor=reviewer)

    wait_for(lambda: settled(post), timeout=300, what="the post to be rendered on the real ComfyUI")
    assert post.status == PostStatus.DONE, post.failure
    shots = list(post.shots.order_by("position"))
    assert all(shot.generated_clip.name.endswith(".mp4") for shot in shots)
    info = probe(Path(settings.MEDIA_ROOT) / post.final_video.name)
    video_stream = next(s for s in info["streams"] if s["codec_type"] == "video")
    total = float(sum(shot.duration_seconds for shot in shots))
    assert abs(float(video_stream["duration"]) - total) <= 1 / FPS
