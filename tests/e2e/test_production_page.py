"""The storyboard page while a post is produced: progress, voices, the failure banner and the video, live.

The posts are built in the database as production leaves them; what changes while the page is open
comes through the real factory services and posts.pipeline in this process, over the real channel
layer to the real ASGI server, as a worker's reports would.
"""

import io
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone
from PIL import Image
from playwright.sync_api import expect

from factory import services as factory
from factory.models import ErrorKind, Job, JobKind, JobStatus
from factory.render import ffmpeg_binary
from mcn_site.realtime import PROGRESS_INTERVAL
from posts.models import Post, PostStatus, Shot, ShotKind, ShotStatus
from tests.e2e.conftest import log_in
from tests.factories import (
    make_artist,
    make_job_output,
    make_media_file,
    make_post,
    make_shot,
    make_template,
    make_user,
    wav_bytes,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

TEST_PASSWORD = "pw-for-tests-1"  # what tests.factories.make_user gives everyone
VOICE_DOWN = "CosyVoice answered 500: CUDA out of memory (the voice server restarted mid-request)."

SCRIPT = [
    (ShotKind.A_ROLL, "降息了，你的存款利息又要少一截。今天三分钟，讲清楚钱该放哪儿。", ""),
    (ShotKind.B_ROLL, "", "Central bank building at dawn, slow push-in, cold blue light"),
    (ShotKind.A_ROLL, "第一条主线：长久期债券。降息时，早买的高票息债更值钱。", ""),
    (ShotKind.B_ROLL, "", "Gold bars stacked in a vault, warm rim light, shallow depth of field"),
    (ShotKind.A_ROLL, "第二是黄金：央行还在买。第三是高股息股，但要看现金流。", ""),
    (ShotKind.A_ROLL, "关注我，下周讲怎么挑高股息。", ""),
]
PALETTE = [("#312e81", "#a78bfa"), ("#0c4a6e", "#38bdf8"), ("#4c1d95", "#f0abfc"), ("#78350f", "#fbbf24")]


def picture(index: int, size=(270, 480)) -> bytes:
    """A 9:16 gradient: a stand-in for a generated picture that reads as one in a screenshot."""
    top, bottom = (tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in PALETTE[index % len(PALETTE)])
    image = Image.new("RGB", size)
    for y in range(size[1]):
        t = y / (size[1] - 1)
        image.paste(tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)), (0, y, size[0], y + 1))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def mp4(tmp_path) -> bytes:
    """Two seconds of H.264 + AAC, made by the same ffmpeg the render uses."""
    frame, out = tmp_path / "frame.png", tmp_path / "final.mp4"
    frame.write_bytes(picture(2, (540, 960)))
    subprocess.run(
        [
            *(ffmpeg_binary(), "-y", "-loglevel", "error", "-loop", "1", "-i", str(frame)),
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "2"),
            *("-c:v", "libx264", "-pix_fmt", "yuv420p", "-r", "30", "-c:a", "aac", "-shortest", str(out)),
        ],
        check=True,
        timeout=60,
    )
    return out.read_bytes()


def a_post(status: str, **extra) -> tuple[Post, list[Shot]]:
    """A producer's post of six shots, each ready (voice and picture in) unless the test says otherwise."""
    producer = make_user(username="producer", first_name="Lin")
    artist = make_artist(members=[producer], stage_name="Kai Nova", colour="#7c3aed")
    post = make_post(artist=artist, title="降息之后，钱该放哪儿？", status=status, **extra)
    shots = []
    for position, (kind, script, prompt) in enumerate(SCRIPT, start=1):
        shots.append(
            make_shot(
                post=post,
                position=position,
                kind=kind,
                script=script,
                visual_prompt=prompt,
                duration_seconds=4,
                status=ShotStatus.READY,
                generated_asset=make_media_file(f"shots/generated/p{post.pk}-{position}.png", picture(position)),
                voice_asset=make_media_file(f"shots/voice/p{post.pk}-{position}.wav", wav_bytes(1.0)) if script else "",
            )
        )
    return post, shots


def a_job(kind: str, subject: str, **extra) -> Job:
    now = timezone.now()
    return Job.objects.create(
        **{"kind": kind, "subject": subject, "max_attempts": 1, "queued_at": now, "started_at": now, **extra}
    )


def voice_subject(shot: Shot) -> str:
    return f"post.{shot.post_id}/shot.{shot.pk}/voice@{'0' * 16}"


def from_a_worker(call, **kwargs):
    """Run a factory service as a worker would, on a thread of its own.

    Playwright's sync API keeps an event loop running on this thread, where publish()'s
    async_to_sync cannot run (the push would be dropped): a fresh thread has no loop.
    Pushes closer together than PROGRESS_INTERVAL are throttled away, so wait that long first.
    """
    time.sleep(PROGRESS_INTERVAL * 1.5)
    outcome = {}

    def run():
        try:
            outcome["value"] = call(**kwargs)
        except BaseException as error:  # re-raised in the test
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def clip_around(locator) -> dict:
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    return {"x": box["x"] - 16, "y": box["y"] - 16, "width": box["width"] + 32, "height": box["height"] + 32}


def card(page, shot: Shot):
    return page.locator(f'.shot-card[data-shot-id="{shot.pk}"]')


def open_post(page, base: str, post: Post) -> None:
    log_in(page, base, "producer", TEST_PASSWORD)
    page.goto(f"{base}/posts/{post.pk}/")
    expect(page.locator(".live")).to_have_text("Live")
    page.evaluate("window.__noReload = true")  # gone if anything reloads the page


def test_a_failed_post_names_the_shot_and_why_and_puts_retry_render_first(asgi_server, rq_clean, page, screenshot):
    failure = f"Shot 3 (A-roll), voice step: {VOICE_DOWN}"
    post, shots = a_post(PostStatus.FAILED, failure=failure)
    third = shots[2]
    voice_job = a_job(
        JobKind.TTS,
        voice_subject(third),
        status=JobStatus.FAILED,
        error_kind=ErrorKind.EXECUTION,
        error_message=VOICE_DOWN,
        finished_at=timezone.now(),
    )
    Shot.objects.filter(pk=third.pk).update(
        voice_job=voice_job, voice_asset="", status=ShotStatus.FAILED, error=failure
    )

    open_post(page, asgi_server.url, post)

    expect(page.locator(".post-facts .badge")).to_have_text("Failed")
    banner = page.get_by_role("alert").filter(has_text="Production stopped")
    expect(banner).to_be_visible()
    expect(banner.locator(".failure-text")).to_have_text(failure)
    expect(banner).to_contain_text("Retry render resumes where it stopped")
    # The retry is in the banner, large and primary; the other actions stay in their row.
    retry = page.get_by_role("button", name="Retry render")
    expect(retry).to_have_count(1)
    expect(banner.get_by_role("button", name="Retry render")).to_have_class("btn btn-primary btn-large")
    expect(page.locator(".actions").get_by_role("button", name="Back to draft")).to_be_visible()
    expect(page.locator(".production-text")).to_have_text("Stopped at shot 3.")
    expect(page.locator(".step-shots .step-note")).to_have_text("5 of 6 ready · 1 failed")
    expect(page.locator(".shot-meter .seg-failed")).to_have_count(1)

    # Shot 3 says what went wrong; the shots with a voice can be listened to.
    expect(card(page, third).locator(".job-error")).to_have_text(failure)
    expect(card(page, third).locator(".voice-state")).to_have_text("Voice failed")
    expect(card(page, third).locator(".shot-status")).to_have_text("Failed")
    voice = card(page, shots[0]).get_by_label("Voice of shot 1")
    expect(voice).to_have_attribute("src", f"/media/shots/voice/p{post.pk}-1.wav")
    assert voice.evaluate("a => a.controls") is True
    expect(card(page, shots[1]).locator(".voice")).to_be_hidden()  # B-roll: no words, no voice

    banner.get_by_role("button", name="Show shot 3").click()
    expect(card(page, third).locator(".job-error")).to_be_focused()
    page.wait_for_timeout(400)  # the smooth scroll to it
    screenshot(page, "production-shot-error", clip=clip_around(card(page, third)))
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(400)  # the smooth scroll back to the top
    page.mouse.move(0, 899)
    screenshot(page, "production")

    # Retry: without a voice server or picture workflows nothing is left to make but the render.
    retry.click()
    expect(page.locator(".post-facts .badge")).to_have_text("Rendering")
    expect(banner).to_be_hidden()
    expect(page.locator(".production-text")).to_have_text("Waiting for a worker to render the video…")
    expect(page.locator(".step-render .step-note")).to_have_text("Waiting for a worker…")
    expect(card(page, third).locator(".job-error")).to_be_hidden()
    post.refresh_from_db()
    assert post.status == PostStatus.RENDERING and post.failure == "" and post.render_job.status == JobStatus.QUEUED
    assert page.evaluate("window.__noReload") is True


def test_production_progress_arrives_live_from_the_last_voice_to_the_finished_video(
    asgi_server, rq_clean, page, screenshot, tmp_path
):
    post, shots = a_post(PostStatus.RENDERING)
    last = shots[5]
    voice_job = a_job(
        JobKind.TTS, voice_subject(last), status=JobStatus.RUNNING, progress_percent=20, heartbeat_at=timezone.now()
    )
    Shot.objects.filter(pk=last.pk).update(voice_job=voice_job, voice_asset="", status=ShotStatus.PRODUCING)

    open_post(page, asgi_server.url, post)
    production = page.get_by_role("region", name="Production")
    expect(production.locator(".production-text")).to_have_text("Producing: 5 of 6 shots ready")
    expect(production.locator(".production-text")).to_have_attribute("aria-live", "polite")
    render_bar = page.get_by_role("progressbar", name="Render progress")
    expect(render_bar).to_have_attribute("aria-valuenow", "0")
    expect(production.locator(".step-render .step-note")).to_have_text("Starts when every shot is ready")
    last_card = card(page, last)
    expect(last_card.locator(".voice-state")).to_have_text("Voice · 20%")
    expect(last_card.locator(".voice .spinner")).to_be_visible()
    expect(last_card.locator(".voice audio")).to_have_count(0)

    # The voice server's progress, drawn in place.
    from_a_worker(
        factory.job_progress, job_id=voice_job.pk, claim=voice_job.claim, node="tts", value=55, maximum=100, percent=55
    )
    expect(last_card.locator(".voice-state")).to_have_text("Voice · 55%")

    # The voice is in: the shot is ready, and with it the post: the render is queued.
    make_job_output(job=voice_job, data=wav_bytes(2.0), name="voice.wav", content_type="audio/wav")
    from_a_worker(factory.job_succeed, job_id=voice_job.pk, claim=voice_job.claim, require_output=False)
    expect(last_card.get_by_label("Voice of shot 6")).to_be_visible()
    expect(last_card.locator(".shot-status")).to_have_text("Ready")
    expect(production.locator(".production-text")).to_have_text("Waiting for a worker to render the video…")
    render = Post.objects.get(pk=post.pk).render_job
    assert render is not None and render.status == JobStatus.QUEUED

    # A CPU worker takes it, and ffmpeg reports as it goes: the bar follows without a reload.
    from_a_worker(factory.job_start, job_id=render.pk, worker_name="cpu-test", server_url="")
    render.refresh_from_db()  # the claim token the worker got
    expect(production.locator(".production-text")).to_have_text("Rendering the video…")
    for percent in (37, 64):
        from_a_worker(
            factory.job_progress,
            job_id=render.pk,
            claim=render.claim,
            node="ffmpeg",
            value=percent,
            maximum=100,
            percent=percent,
        )
        expect(render_bar).to_have_attribute("aria-valuenow", str(percent))
        expect(production.locator(".step-render .step-note")).to_have_text(f"{percent}% · ffmpeg")
    fill = page.locator(".render-fill").evaluate("el => el.style.width")
    assert fill == "64%"
    screenshot(page, "production-rendering", clip={"x": 0, "y": 0, "width": 1400, "height": 460})

    # The MP4 is in: the post is done, and the page plays it and offers it to download.
    make_job_output(job=render, data=mp4(tmp_path), name="final.mp4", content_type="video/mp4")
    from_a_worker(factory.job_succeed, job_id=render.pk, claim=render.claim, require_output=False)
    expect(page.locator(".post-facts .badge")).to_have_text("Done")
    expect(production.locator(".production-text")).to_have_text("Done: the video is ready.")
    expect(render_bar).to_have_attribute("aria-valuenow", "100")
    player = production.locator("video.final-player")
    expect(player).to_be_visible()
    # The browser can play it: the media view serves the MP4 to a signed-in member.
    page.wait_for_function("() => document.querySelector('video.final-player')?.readyState >= 2")
    download = production.get_by_role("link", name="Download MP4")
    expect(download).to_have_attribute("href", player.get_attribute("src"))
    with page.expect_download() as got:
        download.click()
    final = Post.objects.get(pk=post.pk).final_video
    assert got.value.suggested_filename == final.name.rsplit("/", 1)[-1]
    assert Path(got.value.path()).read_bytes() == Path(final.path).read_bytes()
    assert page.evaluate("window.__noReload") is True
    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 759)
    clip = {"x": 0, "y": 0, "width": 1400, "height": 760}
    # Taken again with animations on: frozen, Chrome's media controls keep their loading spinner on the frame.
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot(page, "production-video", clip=clip)), clip=clip)


def test_a_shots_clip_step_shows_its_own_progress_and_then_the_clip(asgi_server, rq_clean, page, tmp_path):
    post, shots = a_post(PostStatus.RENDERING)
    cutaway = shots[1]
    motion = a_job(
        JobKind.COMFYUI,
        f"post.{post.pk}/shot.{cutaway.pk}/motion@{'0' * 16}",
        status=JobStatus.RUNNING,
        progress_percent=10,
        progress_node="m3",
        heartbeat_at=timezone.now(),
        template=make_template(),
    )
    Shot.objects.filter(pk=cutaway.pk).update(clip_job=motion, status=ShotStatus.PRODUCING)

    open_post(page, asgi_server.url, post)
    cutaway_card = card(page, cutaway)
    # The picture is in; the clip made from it is the step still running, drawn on a line of its own.
    expect(cutaway_card.locator(".clip-state")).to_have_text("Clip (motion) · node m3 · 10%")
    expect(cutaway_card.get_by_role("progressbar", name="Shot 2 clip progress")).to_be_visible()

    # The video model's sampler steps, pushed live.
    from_a_worker(
        factory.job_progress, job_id=motion.pk, claim=motion.claim, node="m3", value=8, maximum=20, percent=40
    )
    expect(cutaway_card.locator(".clip-state")).to_have_text("Clip (motion) · node m3 · 40%")

    # The clip is in: the shot is ready, the link plays it, and the render is queued.
    make_job_output(job=motion, data=mp4(tmp_path), name="motion_00001_.mp4", content_type="video/mp4")
    from_a_worker(factory.job_succeed, job_id=motion.pk, claim=motion.claim, require_output=False)
    expect(cutaway_card.locator(".shot-status")).to_have_text("Ready")
    expect(cutaway_card.get_by_role("link", name="▶ Clip")).to_be_visible()
    expect(cutaway_card.locator(".clip-state")).to_be_hidden()
    assert Post.objects.get(pk=post.pk).render_job is not None
    assert page.evaluate("window.__noReload") is True
