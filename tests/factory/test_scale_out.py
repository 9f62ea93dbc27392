"""Two GPU machines on one test machine: two fake ComfyUI servers, one real `run_gpu_worker` on each,
and the reconciler loop as production runs it (`reconcile_jobs`).

Jobs spread over both machines; one worker is SIGKILLed while its prompt runs. Every job must end
succeeded with exactly one set of outputs, and no (job, attempt) may reach a ComfyUI twice.
Synchronisation is on database and server state (wait_for), never on sleeps.
"""

import hashlib
import re
import signal
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from rq import Worker

from factory import services
from factory.models import Job, JobStatus
from factory.queues import gpu_queues
from tests.factory.conftest import wait_for
from tests.fakes.comfyui import FakeComfyUI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Three executed nodes; steps per node set per test make a prompt last a few seconds on the fakes.
BASIC = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": "{{WIDTH}}", "height": 48, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "basic"}},
}
JOBS = 8
# Both workers and the reconciler must agree on when a silent worker is presumed dead.
TIMING = {"FACTORY_STALE_SECONDS": "2", "FACTORY_STALL_SECONDS": "4"}
PREFIX = re.compile(r"^mcn/job(\d+)-(\d+)/basic$")


def enqueue_jobs(count: int = JOBS) -> list[int]:
    services.template_import(name="basic", workflow=BASIC)
    return [
        services.job_enqueue(template="basic", params={"WIDTH": 32 + i}, subject=f"post.{i}/shot.1").pk
        for i in range(count)
    ]


def job_attempt(prompt: dict) -> tuple[int, int]:
    """Which job and attempt a submitted prompt belongs to: the unique filename prefix each attempt gets."""
    match = PREFIX.match(prompt["3"]["inputs"]["filename_prefix"])
    assert match, prompt["3"]["inputs"]
    return int(match[1]), int(match[2])


def both_workers_listening() -> bool:
    from django_rq import get_connection

    names = {w.name for w in Worker.all(connection=get_connection("default"))}
    return {"gpu-a", "gpu-b"} <= names


def running_on(fake: FakeComfyUI, worker: str, job_ids: list[int]) -> Job | None:
    """A job that `worker` is running, once the fake has begun executing its prompt."""
    for job in Job.objects.filter(pk__in=job_ids, status=JobStatus.RUNNING, worker_name=worker).exclude(prompt_id=""):
        if "1" in [node for _prompt, node in fake.nodes_started(job.prompt_id)]:
            return job
    return None


def all_finished(job_ids: list[int]) -> list[Job] | None:
    jobs = list(Job.objects.filter(pk__in=job_ids).order_by("pk"))
    return jobs if all(job.is_terminal for job in jobs) else None


def start_two_machines(fakes, start_worker, start_reconciler):
    fake_a, fake_b = fakes
    for fake in fakes:
        fake.steps_per_node, fake.step_seconds = 10, 0.1  # ~3 s a prompt
    worker_a = start_worker(fake_a.url, name="gpu-a", env=TIMING)
    start_worker(fake_b.url, name="gpu-b", env=TIMING)
    reconciler = start_reconciler(interval=0.5, env=TIMING)
    wait_for(both_workers_listening, what="both workers to listen on their queues")
    return worker_a, reconciler


def assert_nothing_lost_or_duplicated(jobs: list[Job], fakes) -> Counter:
    """Every job succeeded once, with one output of its last attempt; no (job, attempt) was posted twice."""
    for job in jobs:
        assert job.status == JobStatus.SUCCEEDED, (job.pk, job.error_kind, job.error_message)
    posted = [(fake, p) for fake in fakes for p in fake.prompts_submitted()]
    per_attempt = Counter(job_attempt(p.prompt) for _fake, p in posted)
    assert max(per_attempt.values()) == 1, f"a (job, attempt) was submitted twice: {per_attempt}"
    prompt_ids = [p.prompt_id for _fake, p in posted]
    assert len(prompt_ids) == len(set(prompt_ids))
    media = Path(settings.MEDIA_ROOT)
    for job in jobs:
        # Each attempt this job minted was posted at most once, and only minted ids were posted.
        minted = {
            e["prompt_id"]: e["attempt"] for e in job.events.filter(kind="submitted").values_list("data", flat=True)
        }
        mine = {p.prompt_id: job_attempt(p.prompt)[1] for _f, p in posted if job_attempt(p.prompt)[0] == job.pk}
        assert mine == minted, (job.pk, mine, minted)
        [output] = job.outputs.all()  # one SaveImage, one image: exactly one output row per job
        assert output.attempt == job.attempts
        data = (media / output.file.name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (output.size, output.sha256)
        on_disk = {p.relative_to(media).as_posix() for p in (media / "factory" / str(job.pk)).rglob("*") if p.is_file()}
        assert on_disk == {output.file.name}, "a stray or half-written file in media"
    return per_attempt


def test_jobs_spread_over_two_gpu_machines_and_a_killed_worker_s_job_is_taken_over_by_the_other(
    fake_comfyui_pair, start_worker, start_reconciler, settings
):
    fake_a, fake_b = fake_comfyui_pair
    worker_a, reconciler = start_two_machines(fake_comfyui_pair, start_worker, start_reconciler)
    job_ids = enqueue_jobs()

    wait_for(fake_b.prompts_submitted, what="gpu-b to take jobs too (the jobs spread)")
    victim = wait_for(lambda: running_on(fake_a, "gpu-a", job_ids), what="a job running on gpu-a's ComfyUI")
    worker_a.kill(signal.SIGKILL)  # the worker dies (OOM killer); its GPU machine's ComfyUI lives on
    killed_at = timezone.now()
    jobs = wait_for(lambda: all_finished(job_ids), timeout=90, what="every job to finish")

    assert_nothing_lost_or_duplicated(jobs, fake_comfyui_pair)
    # The victim: re-attached by its stored prompt id on gpu-a's ComfyUI, finished by gpu-b, no new attempt.
    victim = next(job for job in jobs if job.pk == victim.pk)
    assert victim.worker_name == "gpu-b" and victim.events.filter(kind="taken_over").count() == 1
    assert victim.attempts == 1 and [p.prompt_id for p in fake_a.prompts_submitted()][-1] == victim.prompt_id
    assert victim.prompt_id not in {p.prompt_id for p in fake_b.prompts_submitted()}
    assert re.search(rf"Reconciled \d+ job\(s\): .*\b{victim.pk}\b", reconciler.output()), reconciler.output()
    # Every other job ran on gpu-b, or on gpu-a before it died; after the kill nothing reached gpu-a.
    for job in jobs:
        assert job.worker_name == "gpu-b" or job.finished_at < killed_at, (job.pk, job.worker_name)
    posted_to_a = {job_attempt(p.prompt)[0] for p in fake_a.prompts_submitted()}
    assert posted_to_a == {job.pk for job in jobs if job.worker_name == "gpu-a"} | {victim.pk}
    assert {job.worker_name for job in jobs} <= {"gpu-a", "gpu-b"}
    assert all(job.attempts == 1 for job in jobs)  # nobody had to start over


def test_a_whole_gpu_machine_gone_has_its_running_job_run_again_on_the_other_with_a_new_attempt(
    fake_comfyui_pair, start_worker, start_reconciler, settings
):
    fake_a, fake_b = fake_comfyui_pair
    worker_a, _reconciler = start_two_machines(fake_comfyui_pair, start_worker, start_reconciler)
    job_ids = enqueue_jobs()

    wait_for(fake_b.prompts_submitted, what="gpu-b to take jobs too (the jobs spread)")
    victim = wait_for(lambda: running_on(fake_a, "gpu-a", job_ids), what="a job running on gpu-a's ComfyUI")
    first_prompt = victim.prompt_id
    worker_a.kill(signal.SIGKILL)
    fake_a.refuse_connections = True  # and the machine is gone: its ComfyUI no longer answers
    jobs = wait_for(lambda: all_finished(job_ids), timeout=90, what="every job to finish")

    per_attempt = assert_nothing_lost_or_duplicated(jobs, fake_comfyui_pair)
    victim = next(job for job in jobs if job.pk == victim.pk)
    # Its first prompt was given up (never collected), the second ran on gpu-b's ComfyUI.
    assert victim.worker_name == "gpu-b" and victim.attempts == 2
    assert victim.events.filter(kind="prompt_abandoned").count() == 1
    assert per_attempt[(victim.pk, 1)] == per_attempt[(victim.pk, 2)] == 1
    assert first_prompt in {p.prompt_id for p in fake_a.prompts_submitted()}
    assert victim.prompt_id in {p.prompt_id for p in fake_b.prompts_submitted()}
    assert victim.server_url == fake_b.url
    assert {job.worker_name for job in jobs if job.pk != victim.pk} <= {"gpu-a", "gpu-b"}


def test_a_worker_of_a_pool_takes_only_that_pool_s_jobs(fake_comfyui_pair, start_worker, settings):
    # Pool "video" declared on every process (this one, the workers); the template routes to it.
    settings.MCN_GPU_POOLS = ["video"]
    settings.RQ_QUEUES = {
        **settings.RQ_QUEUES,
        **{name: settings.RQ_QUEUES["gpu"] for name in gpu_queues("video")},
    }
    fake_default, fake_video = fake_comfyui_pair
    pools = {"MCN_GPU_POOLS": "video"}
    start_worker(fake_default.url, name="gpu-default", env=pools)
    start_worker(fake_video.url, name="gpu-video", env={**pools, "MCN_GPU_POOL": "video"})
    services.template_import(name="still", workflow=BASIC)
    services.template_import(name="clip", workflow=BASIC, gpu_pool="video")
    still = [services.job_enqueue(template="still", params={"WIDTH": 32}).pk for _ in range(2)]
    clip = [services.job_enqueue(template="clip", params={"WIDTH": 32}, lane="vip").pk for _ in range(2)]

    jobs = wait_for(lambda: all_finished(still + clip), what="every job to finish")

    assert all(job.status == JobStatus.SUCCEEDED for job in jobs), [(j.pk, j.error_message) for j in jobs]
    assert {job.pk: job.worker_name for job in jobs} == {
        **dict.fromkeys(still, "gpu-default"),
        **dict.fromkeys(clip, "gpu-video"),
    }
    assert sorted(job_attempt(p.prompt)[0] for p in fake_video.prompts_submitted()) == clip
    assert sorted(job_attempt(p.prompt)[0] for p in fake_default.prompts_submitted()) == still


def test_a_submit_in_doubt_retried_by_the_other_machine_s_worker_is_found_where_it_was_sent(
    fake_comfyui_pair, start_worker
):
    # gpu-a's ComfyUI accepts the prompt but answers too late (FACTORY_READ_TIMEOUT 3 s): the job goes back
    # in the queue with its prompt in doubt, and gpu-a is drained. gpu-b picks the retry up: it must ask
    # gpu-a's ComfyUI for that prompt id, not submit a second prompt to its own.
    fake_a, fake_b = fake_comfyui_pair
    fake_a.accept_then_timeout(5)
    worker_a = start_worker(fake_a.url, name="gpu-a", env={"FACTORY_UNREACHABLE_RETRIES": "3"})
    [job_id] = enqueue_jobs(1)
    wait_for(
        lambda: Job.objects.filter(pk=job_id, status=JobStatus.QUEUED, retries=1).exclude(prompt_id="").exists(),
        what="the submit in doubt to be scheduled for a retry",
    )
    worker_a.stop()  # SIGTERM: drained
    start_worker(fake_b.url, name="gpu-b")

    job = wait_for(lambda: all_finished([job_id]), what="the job to finish")[0]

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert job.worker_name == "gpu-b" and job.attempts == 1 and job.server_url == fake_a.url
    assert [p.prompt_id for p in fake_a.prompts_submitted()] == [job.prompt_id]
    assert fake_b.prompts_submitted() == []
    [output] = job.outputs.all()
    assert output.attempt == 1


def test_claiming_a_queued_job_keeps_the_server_of_a_prompt_in_doubt():
    from tests.factories import make_job

    in_doubt = make_job(prompt_id="p-1", server_url="http://10.0.0.11:8188")
    fresh = make_job(server_url="")

    assert services.job_start(job_id=in_doubt.pk, worker_name="gpu-b", server_url="http://10.0.0.12:8188")
    assert services.job_start(job_id=fresh.pk, worker_name="gpu-b", server_url="http://10.0.0.12:8188")

    in_doubt.refresh_from_db()
    fresh.refresh_from_db()
    assert (in_doubt.status, in_doubt.server_url) == (JobStatus.RUNNING, "http://10.0.0.11:8188")
    assert (fresh.status, fresh.server_url) == (JobStatus.RUNNING, "http://10.0.0.12:8188")
