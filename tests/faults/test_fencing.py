"""Row 1d of the fault matrix: a worker presumed dead wakes up (SIGSTOP, then SIGCONT), and row 1e: a killed
render leaves no temporary file behind once the job is run again.

A worker stopped mid-job goes silent; past FACTORY_STALE_SECONDS the reconciler rings the job and another
worker takes it over with a new claim token. When the first one is continued it must find its token stale at
its first write and stop quietly: no progress, event, status or output of its own, and no /interrupt of the
prompt the new holder is watching (its stall and total deadlines passed while it was stopped).
"""

import os
import signal
from pathlib import Path

import pytest
from django.conf import settings

from factory import services
from factory.models import Job, JobKind, JobStatus
from posts.models import AspectRatio
from tests.factories import BASIC_WORKFLOW, make_artist, make_media_file, make_post, make_shot, png_bytes
from tests.faults.conftest import descendants, wait_for
from tests.faults.invariants import assert_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault, pytest.mark.timeout(180)]

STALE = 2  # FACTORY_STALE_SECONDS, for the workers and for the reconciler this test process runs
FENCED = "taken over by another worker while this one was silent; stopping quietly"


@pytest.fixture(autouse=True)
def _stale(settings):
    settings.FACTORY_STALE_SECONDS = STALE


def finished(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return job if job.is_terminal else None


def test_a_stopped_gpu_worker_that_wakes_after_a_take_over_writes_nothing_and_interrupts_nothing(
    fake_comfyui, start_worker
):
    # Three nodes of 12 steps x 0.3 s: the prompt outlives the stop, the take-over and the continue.
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 12, 0.3
    env = {"FACTORY_STALE_SECONDS": str(STALE), "FACTORY_STALL_SECONDS": "2"}
    first = start_worker(fake_comfyui.url, env=env)
    services.template_import(name="basic", workflow=BASIC_WORKFLOW)
    job = services.job_enqueue(template="basic", params={"WIDTH": 64}, subject="tests/fencing")
    job = wait_for(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, progress_value__gt=0).first(),
        what="the first worker's progress",
    )
    prompt_id, stale_claim = job.prompt_id, job.claim

    first.send(signal.SIGSTOP)  # the worker and its rq scheduler: a long pause, as a frozen VM would
    try:
        second = start_worker(fake_comfyui.url, env=env)
        assert wait_for(lambda: services.reconcile_once(), timeout=15, what="the reconciler to ring") == [job.pk]
        taken = wait_for(
            lambda: Job.objects.filter(pk=job.pk, worker_name=second.name, progress_value__gt=0).first(),
            what="the second worker to take over and hear progress",
        )
        assert taken.claim != stale_claim
        events_before = list(taken.events.values_list("kind", flat=True))
    finally:
        first.send(signal.SIGCONT)

    # Its stall and total clocks ran while it was stopped: unfenced, it would interrupt the prompt now.
    wait_for(lambda: FENCED in first.output(), timeout=15, what="the first worker to find its claim gone")
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message, second.output())
    assert fake_comfyui.interrupts() == []
    assert [p.prompt_id for p in fake_comfyui.prompts_submitted()] == [prompt_id]
    assert job.worker_name == second.name and job.attempts == 1
    kinds = list(job.events.values_list("kind", flat=True))
    # After the first worker woke up: only the second's GPU time (the prompt once), output and success.
    assert kinds[: len(events_before)] == events_before
    assert kinds[len(events_before) :] == ["usage", "output", "succeeded"], kinds
    assert job.events.get(kind="usage").data["key"] == f"prompt:{prompt_id}" and job.gpu_seconds > 0
    assert kinds.count("started") == 1 and kinds.count("taken_over") == 1
    [output] = job.outputs.all()
    assert output.attempt == 1
    assert "Traceback" not in first.output()
    assert_invariants(jobs=[job], fakes=[fake_comfyui])


def test_a_stopped_cpu_worker_that_wakes_after_its_voice_was_made_elsewhere_leaves_the_job_alone(
    fake_cosyvoice, start_worker
):
    env = {"COSYVOICE_URL": fake_cosyvoice.url, "FACTORY_STALE_SECONDS": str(STALE)}
    fake_cosyvoice.stall_after_bytes(4800)  # the first run is held mid-stream, its .part half written
    first = start_worker(cpu=True, env=env)
    job = services.job_enqueue_task(
        kind=JobKind.TTS, params={"text": "你好，世界。", "spk_id": "中文女"}, subject="t/v"
    )
    parts = Path(settings.MEDIA_ROOT) / "factory" / "tts"
    wait_for(lambda: list(parts.glob(f".job-{job.pk}-1.wav.*.part")), what="the voice to be half written")
    horse = int(Job.objects.get(pk=job.pk).worker_name.rsplit(":", 1)[1])

    first.send(signal.SIGSTOP)  # the worker; its work horse runs in a process group of its own
    os.kill(horse, signal.SIGSTOP)
    try:
        start_worker(cpu=True, env=env)
        assert wait_for(lambda: services.reconcile_once(), timeout=15, what="the reconciler to ring") == [job.pk]
        done = wait_for(lambda: finished(job.pk), what="the second worker to make the voice")
        assert done.status == JobStatus.SUCCEEDED, done.error_message
        events = list(done.events.values_list("pk", "kind"))
        fake_cosyvoice.release()  # the first run's stream goes on, to a worker that is still stopped
    finally:
        os.kill(horse, signal.SIGCONT)
        first.send(signal.SIGCONT)

    wait_for(lambda: FENCED in first.output(), timeout=15, what="the first worker to find its claim gone")
    job = Job.objects.get(pk=job.pk)
    assert list(job.events.values_list("pk", "kind")) == events and job.status == JobStatus.SUCCEEDED
    assert len(fake_cosyvoice.requests()) == 2 and job.events.filter(kind="taken_over").count() == 1
    assert job.outputs.count() == 1 and list(parts.glob(".*.part")) == []
    assert_invariants(jobs=[job], fakes=[fake_cosyvoice])  # the file is the one recorded, byte for byte


def test_a_render_killed_mid_way_and_run_again_leaves_no_part_file(start_worker):
    artist = make_artist()
    post = make_post(artist=artist, aspect_ratio=AspectRatio.SQUARE)
    picture = make_media_file("posts/manual/still.png", png_bytes(64, 64))
    # A still with a slow Ken Burns move: seconds of ffmpeg work on any machine, so the kill lands mid-way.
    make_shot(post=post, position=1, script="", manual_asset=picture, duration_seconds=8)
    worker = start_worker(cpu=True, env={"FACTORY_STALE_SECONDS": str(STALE)})
    final = Path(settings.MEDIA_ROOT) / "posts" / "final"
    job = services.job_enqueue_task(kind=JobKind.RENDER, params={"post_id": post.pk}, subject="tests/render")

    wait_for(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, progress_percent__gt=0).exists()
        and list(final.glob(".*.part")),
        timeout=60,
        what="ffmpeg half way through",
    )
    [part] = final.glob(".*.part")
    horse = int(Job.objects.get(pk=job.pk).worker_name.rsplit(":", 1)[1])
    ffmpeg = descendants(horse)
    for pid in [horse, *ffmpeg]:  # the OOM killer, or a lost machine: the work horse and its ffmpeg
        os.kill(pid, signal.SIGKILL)

    job = wait_for(lambda: finished(job.pk), timeout=120, what="the render to be run again and finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_message, worker.output())
    assert job.events.filter(kind="worker_lost").count() == 1
    [output] = job.outputs.all()
    assert (final / Path(output.file.name).name).is_file()
    assert not part.exists() and list(final.glob(".*.part")) == []
    assert sorted(p.name for p in final.iterdir()) == [Path(output.file.name).name]
    assert_invariants(jobs=[job])
