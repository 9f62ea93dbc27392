"""Rows 1, 1b and 1c of the fault matrix on the CPU worker: rq's forking worker, killed with real signals.

The GPU worker (`run_gpu_worker`) is an rq SimpleWorker: it runs jobs in its own process, there is no
work horse, and its kills are tests/factory/test_faults.py's (process group, and parent only: there the
orphan is rq's scheduler). The CPU worker (`rqworker cpu default`: voices, renders, the director) forks
a work horse per job, in a process group of its own (rq calls os.setpgrp in the horse), so:

- killing the worker's process group leaves the horse running, exactly like killing the parent alone (1b);
- the OOM killer picks the horse, the biggest process (1c);
- losing the machine (or systemd's KillMode=control-group) kills both (1).

A voice job is held mid-stream by the fake CosyVoice (`stall_after_bytes`), so every kill lands while
the job runs, with a half-written `.part` file on disk; nothing here sleeps to synchronise.
"""

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from factory import services
from factory.models import ErrorKind, Job, JobKind, JobStatus
from tests.faults.conftest import alive, children, wait_for
from tests.faults.invariants import assert_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault, pytest.mark.timeout(120)]

TEXT = "你好，世界。今天的视频讲的是一只猫。"
STALE = 2  # FACTORY_STALE_SECONDS, for the workers and for the reconciler this test process runs


@pytest.fixture(autouse=True)
def _stale(settings):
    settings.FACTORY_STALE_SECONDS = STALE


def worker_env(fake) -> dict:
    return {"COSYVOICE_URL": fake.url, "FACTORY_STALE_SECONDS": str(STALE)}


def queue_voice() -> Job:
    return services.job_enqueue_task(kind=JobKind.TTS, params={"text": TEXT, "spk_id": "中文女"}, subject="tests/voice")


def held_mid_stream(job: Job, fake, *, run: int = 1) -> tuple[Job, int]:
    """The job once its `run`-th horse is writing the voice (its `.part` file exists), and that horse's pid."""
    parts = Path(settings.MEDIA_ROOT) / "factory" / "tts"
    # The voice server heard this run, so the run already cleared an earlier run's part: any part is its own.
    wait_for(lambda: len(fake.requests()) >= run, what=f"request {run} to the voice server")
    wait_for(lambda: list(parts.glob(f".job-{job.pk}-1.wav.*.part")), what="the voice to be half written")
    job = Job.objects.get(pk=job.pk)
    assert job.status == JobStatus.RUNNING
    # The horse runs the job under factory.execution.worker_name(): "<host>:<its own pid>".
    return job, int(job.worker_name.rsplit(":", 1)[1])


def finished(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return job if job.is_terminal else None


# --- 1c: the work horse is killed (the OOM killer's choice) -----------------------------------------------------


def test_a_killed_work_horse_queues_its_job_again_at_once_and_the_voice_is_made_once(fake_cosyvoice, start_worker):
    fake_cosyvoice.stall_after_bytes(4800)
    worker = start_worker(cpu=True, env=worker_env(fake_cosyvoice))
    job, horse = held_mid_stream(queue_voice(), fake_cosyvoice)
    assert horse in children(worker.process.pid)

    os.kill(horse, signal.SIGKILL)
    # rq's parent sees the horse die and CpuWorker queues the row again: no reconciler runs in this test, and
    # the row is not left "running" until its heartbeat goes stale.
    lost = wait_for(lambda: job.events.filter(kind="worker_lost").first(), timeout=10, what="the worker_lost event")
    assert lost.message == "Worker lost (killed by signal 9); running it again (1/2)."
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_message, worker.output())
    assert (job.error_kind, job.error_message) == ("", "")  # the banner goes once it succeeded
    kinds = list(job.events.order_by("pk").values_list("kind", flat=True))
    assert kinds.count("started") == 2 and "taken_over" not in kinds and "reconciled" not in kinds
    # Two requests to the voice server (the killed one, the re-run), one file: the half-written part is gone.
    assert len(fake_cosyvoice.requests()) == 2
    [output] = job.outputs.all()
    assert output.file.name == f"factory/tts/job-{job.pk}-1.wav"
    assert_invariants(jobs=[job], fakes=[fake_cosyvoice])


# --- 1b: the worker's parent is killed, the horse lives on ------------------------------------------------------


@pytest.mark.parametrize("kill", ["parent", "process-group"])
def test_an_orphaned_work_horse_finishes_its_job_and_nothing_runs_it_twice(fake_cosyvoice, start_worker, kill):
    fake_cosyvoice.stall_after_bytes(4800)
    first = start_worker(cpu=True, env=worker_env(fake_cosyvoice))
    job, horse = held_mid_stream(queue_voice(), fake_cosyvoice)

    if kill == "parent":
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=30)
    else:
        first.kill()  # os.killpg(worker pgid): the horse is in a group of its own and is not hit
    assert alive(horse), "the work horse died with its parent"
    killed_at = timezone.now()
    start_worker(cpu=True, env=worker_env(fake_cosyvoice))  # systemd's Restart=always

    # The orphan keeps the row's heartbeat fresh: once the dead parent is older than the stale window, the
    # reconciler still finds nothing to re-drive, so no second worker starts the voice again.
    wait_for(
        lambda: Job.objects.filter(pk=job.pk, heartbeat_at__gt=killed_at + timedelta(seconds=STALE + 0.5)).exists(),
        timeout=15,
        what="a heartbeat from the orphan past the stale window",
    )
    assert services.reconcile_once() == []

    fake_cosyvoice.release()
    job = wait_for(lambda: finished(job.pk), what="the orphan to finish the job")
    wait_for(lambda: not alive(horse), what="the orphan to exit")

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.worker_name.endswith(f":{horse}")
    assert len(fake_cosyvoice.requests()) == 1
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds.count("started") == 1 and not {"taken_over", "reconciled", "worker_lost"} & set(kinds)
    assert services.reconcile_once() == []
    assert_invariants(jobs=[job], fakes=[fake_cosyvoice])


# --- 1: the whole worker (parent and horse) is gone ------------------------------------------------------------------


def test_a_cpu_worker_killed_with_its_horse_is_taken_over_after_its_heartbeat_goes_stale(fake_cosyvoice, start_worker):
    fake_cosyvoice.stall_after_bytes(4800)
    first = start_worker(cpu=True, env=worker_env(fake_cosyvoice))
    job, horse = held_mid_stream(queue_voice(), fake_cosyvoice)

    # The machine is lost (or systemd's KillMode=control-group): the parent's group and the horse's.
    first.kill()
    os.kill(horse, signal.SIGKILL)
    wait_for(lambda: not alive(horse), what="the horse to die")
    second = start_worker(cpu=True, env=worker_env(fake_cosyvoice))

    # Nobody heard the horse die: the row stays running until its heartbeat is STALE seconds old.
    started = time.monotonic()
    assert wait_for(lambda: services.reconcile_once(), timeout=15, what="the reconciler to ring") == [job.pk]
    assert time.monotonic() - started < STALE + 5
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message, second.output())
    assert job.events.filter(kind="taken_over").count() == 1
    assert len(fake_cosyvoice.requests()) == 2
    assert job.outputs.count() == 1
    assert_invariants(jobs=[job], fakes=[fake_cosyvoice])


def test_a_job_whose_horse_is_killed_every_time_fails_as_lost_and_does_not_loop(fake_cosyvoice, start_worker, settings):
    settings.FACTORY_MAX_ATTEMPTS = 2
    worker = start_worker(cpu=True, env={**worker_env(fake_cosyvoice), "FACTORY_MAX_ATTEMPTS": "2"})
    fake_cosyvoice.stall_after_bytes(4800)
    fake_cosyvoice.stall_after_bytes(4800)
    job = queue_voice()
    for run in (1, 2):
        job, horse = held_mid_stream(job, fake_cosyvoice, run=run)
        os.kill(horse, signal.SIGKILL)

    job = wait_for(lambda: finished(job.pk), what="the job to fail")
    assert (job.status, job.error_kind) == (JobStatus.FAILED, ErrorKind.LOST), worker.output()
    assert job.error_message.startswith("Failed: its worker died 2 times (killed by signal 9")
    assert job.outputs.count() == 0 and len(fake_cosyvoice.requests()) == 2
    assert services.reconcile_once() == []
    # Known and left: the last killed run's half-written part stays until the job is retried (the re-run
    # clears it); it is hidden, never an output, and bounded to one per job.
    [part] = (Path(settings.MEDIA_ROOT) / "factory" / "tts").glob(f".job-{job.pk}-1.wav.*.part")
    part.unlink()
    assert_invariants(jobs=[job], fakes=[fake_cosyvoice])
