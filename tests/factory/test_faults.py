"""The fault matrix (shared/docs/reliability-matrix.md) through real worker processes and the fake ComfyUI.

Each test injects one fault, waits on conditions (never on sleeps) and then checks the invariants of
every row: the job ends where the matrix says, no attempt was posted twice (I2), every output row has
its file with the recorded checksum and no file lacks a row (I3), and rq holds no failed entry.
"""

import contextlib
import hashlib
import io
import os
import re
import signal
from datetime import timedelta
from pathlib import Path

import django_rq
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone
from rq.job import Job as RqJob

from factory import queues, services
from factory.models import ErrorKind, Job, JobStatus
from tests.factories import BASIC_WORKFLOW as BASIC  # model-free; steps_per_node makes it slow
from tests.factory.conftest import wait_for
from tests.fakes.comfyui import FakeComfyUI

pytestmark = pytest.mark.django_db(transaction=True)


def enqueue(workflow: dict = BASIC, name: str = "basic", manifest: dict | None = None, **params) -> Job:
    services.template_import(name=name, workflow=workflow, manifest=manifest)
    return services.job_enqueue(template=name, params=params or {"WIDTH": 64}, subject="post.1/shot.1")


def finished(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return job if job.is_terminal else None


def running_on_the_server(job_id: int, fake: FakeComfyUI) -> Job:
    """The job once its prompt is stored and ComfyUI has begun its first node."""
    job = wait_for(
        lambda: Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).exclude(prompt_id="").first(),
        what="the job to submit its prompt",
    )
    fake.wait_until(lambda: ("1" in [n for _p, n in fake.nodes_started(job.prompt_id)]), 10, "the first node")
    return job


def submitted_ids(job: Job) -> list[str]:
    return [event["prompt_id"] for event in job.events.filter(kind="submitted").values_list("data", flat=True)]


def assert_invariants(job: Job, fake: FakeComfyUI) -> Job:
    job.refresh_from_db()
    events = list(job.events.filter(kind="submitted").values_list("data", flat=True))
    # One "submitted" event per attempt, each under a prompt id of its own.
    assert [e["attempt"] for e in events] == list(range(1, job.attempts + 1))
    minted = [e["prompt_id"] for e in events]
    assert len(set(minted)) == len(minted)
    # I2: every POST /prompt carried an id we stored first, and no id (no attempt) was posted twice.
    posted = [p.prompt_id for p in fake.prompts_submitted()]
    assert len(posted) == len(set(posted)), f"a prompt id was posted twice: {posted}"
    assert set(posted) <= set(minted), (posted, minted)
    # I3: each output row has its file with the recorded size and checksum, and no file lacks a row.
    media = Path(settings.MEDIA_ROOT)
    rows = list(job.outputs.all())
    for output in rows:
        data = (media / output.file.name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (output.size, output.sha256)
    on_disk = {p.relative_to(media).as_posix() for p in (media / "factory" / str(job.pk)).rglob("*") if p.is_file()}
    assert on_disk == {o.file.name for o in rows}, "a stray or half-written file in media"
    if job.status == JobStatus.SUCCEEDED:
        assert rows, "succeeded without an output"
    # A job that ended in our own terms never lands in rq's failed registry (rq/rq #2289).
    for name in ("gpu", "gpu-vip"):
        assert django_rq.get_queue(name).failed_job_registry.count == 0
    return job


# --- row 1 / 1b: the worker is killed mid-job ---------------------------------------------------------------


def kill_whole_group(worker) -> None:
    worker.kill(signal.SIGKILL)  # the worker and its rq scheduler, as the OOM killer or a lost node would


def kill_parent_only(worker) -> None:
    os.kill(worker.process.pid, signal.SIGKILL)  # row 1b: rq's scheduler child lives on as an orphan
    worker.process.wait(timeout=30)


@pytest.mark.parametrize("kill", [kill_whole_group, kill_parent_only], ids=["process-group", "parent-only"])
def test_a_worker_killed_mid_job_is_taken_over_without_a_second_submit(fake_comfyui, start_worker, settings, kill):
    # Three nodes of 10 steps x 0.2 s: the prompt outlives the kill, the take-over and the stall deadline
    # (2 s), so the new worker must hear the prompt's progress to let it finish.
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 10, 0.2
    settings.FACTORY_STALE_SECONDS = 2
    fast = {"FACTORY_STALE_SECONDS": "2", "FACTORY_STALL_SECONDS": "2"}
    first = start_worker(fake_comfyui.url, env=fast)
    job = running_on_the_server(enqueue().pk, fake_comfyui)
    prompt_id = job.prompt_id

    try:
        kill(first)
        second = start_worker(fake_comfyui.url, env=fast)
        # The reconciler rings it once the dead worker's heartbeat is stale; the new worker takes over.
        assert wait_for(lambda: services.reconcile_once(), timeout=15, what="the reconciler to ring") == [job.pk]
        job = wait_for(lambda: finished(job.pk), what="the job to finish")
    finally:
        if kill is kill_parent_only:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(first.process.pid, signal.SIGKILL)  # the orphaned scheduler

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message, second.output())
    assert job.worker_name == "gpu-test-2" and job.events.filter(kind="taken_over").count() == 1
    # Re-attached by the stored prompt id: one POST /prompt in all, and its file collected.
    assert [p.prompt_id for p in fake_comfyui.prompts_submitted()] == [prompt_id] == submitted_ids(job)
    assert job.attempts == 1 and fake_comfyui.interrupts() == []
    [output] = job.outputs.all()
    assert output.attempt == 1
    assert_invariants(job, fake_comfyui)


def test_a_taken_over_prompt_that_ran_out_of_memory_meanwhile_is_freed_and_retried_once(
    fake_comfyui, start_worker, settings
):
    # The prompt fails with OOM at its last node while no worker watches; the next worker finds that in
    # /history and must treat it as any OOM (row 5b), not give up on the spot.
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 5, 0.2
    fake_comfyui.oom_at_node("3")
    settings.FACTORY_STALE_SECONDS = 2
    fast = {"FACTORY_STALE_SECONDS": "2"}
    first = start_worker(fake_comfyui.url, env=fast)
    job = running_on_the_server(enqueue().pk, fake_comfyui)
    prompt_id = job.prompt_id

    kill_whole_group(first)
    start_worker(fake_comfyui.url, env=fast)
    fake_comfyui.wait_for_history(prompt_id, timeout=10)
    assert wait_for(lambda: services.reconcile_once(), timeout=15, what="the reconciler to ring") == [job.pk]
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert {"unload_models": True, "free_memory": True} in fake_comfyui.free_calls()
    assert job.attempts == 2 and len(fake_comfyui.prompts_submitted()) == 2
    assert submitted_ids(job)[0] == prompt_id
    assert [o.attempt for o in job.outputs.all()] == [2]
    assert_invariants(job, fake_comfyui)


# --- row 3: ComfyUI is down, errs or hangs up at submit -------------------------------------------------------


def test_comfyui_down_at_submit_is_retried_and_then_succeeds(fake_comfyui, start_worker):
    fake_comfyui.refuse_connections = True
    start_worker(fake_comfyui.url)
    job = enqueue()

    waiting = wait_for(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED, error_kind=ErrorKind.UNREACHABLE).first(),
        what="the job to wait for the server",
    )
    assert re.fullmatch(r"GPU server unreachable \(.+\)\. Retrying in 1 s \([123]/3\)\.", waiting.error_message)
    assert waiting.attempts == 0  # nothing was minted, let alone sent
    fake_comfyui.refuse_connections = False
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert (job.error_kind, job.error_message) == ("", "")
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert_invariants(job, fake_comfyui)


def test_comfyui_down_for_good_fails_after_the_retries(fake_comfyui, start_worker):
    fake_comfyui.refuse_connections = True
    start_worker(fake_comfyui.url)
    job = enqueue()

    job = wait_for(lambda: finished(job.pk), what="the job to give up")

    assert job.status == JobStatus.FAILED and job.error_kind == ErrorKind.UNREACHABLE
    assert job.error_message.startswith("Failed: GPU server unreachable")
    assert "gave up after 3 retries" in job.error_message
    assert job.retries == 3 and job.attempts == 0
    assert job.events.filter(kind="retry_scheduled").count() == 3
    assert fake_comfyui.requests() == []  # the port never opened
    assert_invariants(job, fake_comfyui)


def test_an_http_500_on_submit_is_retried_with_a_new_attempt(fake_comfyui, start_worker):
    fake_comfyui.http_500_on_prompt(1)
    start_worker(fake_comfyui.url)
    job = enqueue()

    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert [r.status for r in fake_comfyui.requests("POST", "/prompt")] == [500, 200]
    # The 500 queued nothing, so reconciling found the first id absent and minted a second.
    assert [p.prompt_id for p in fake_comfyui.prompts_submitted()] == submitted_ids(job)
    assert job.attempts == 2 and job.retries == 1
    assert list(fake_comfyui.history()) == [job.prompt_id]
    assert_invariants(job, fake_comfyui)


def test_a_submit_that_timed_out_after_acceptance_is_found_and_not_resubmitted(fake_comfyui, start_worker):
    fake_comfyui.accept_then_timeout(5)  # longer than FACTORY_READ_TIMEOUT (3 s in FAST)
    start_worker(fake_comfyui.url)
    job = enqueue()

    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert job.retries == 1 and job.events.filter(kind="retry_scheduled").count() == 1
    # The retry asked /history for the stored id and collected it: no second POST, no new prompt id.
    [submitted] = fake_comfyui.prompts_submitted()
    assert submitted.prompt_id == job.prompt_id and job.attempts == 1
    assert_invariants(job, fake_comfyui)


# --- row 4: ComfyUI dies mid-run --------------------------------------------------------------------------


def test_comfyui_dying_mid_run_gets_a_new_attempt(fake_comfyui, start_worker):
    fake_comfyui.die_mid_run = True
    start_worker(fake_comfyui.url)
    job = enqueue()

    assert fake_comfyui.died.wait(15), "the fake never died"
    fake_comfyui.restart()  # empty queue and history, same port
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert job.attempts == 2 and len(fake_comfyui.prompts_submitted()) == 2
    [output] = job.outputs.all()
    assert output.attempt == 2 and output.file.name.startswith(f"factory/{job.pk}/2/")
    assert_invariants(job, fake_comfyui)


# --- row 5: a workflow the server cannot run ----------------------------------------------------------------


def test_a_node_type_the_server_lacks_fails_at_preflight_without_submitting(fake_comfyui, start_worker):
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": "{{WIDTH}}", "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "FancyUpscaler", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    start_worker(fake_comfyui.url)
    job = enqueue(workflow, name="fancy")

    job = wait_for(lambda: finished(job.pk), what="the job to fail")

    assert job.status == JobStatus.FAILED and job.error_kind == ErrorKind.CONFIG
    assert "FancyUpscaler" in job.error_message and "Node 2" in job.error_message
    assert fake_comfyui.prompts_submitted() == [] and job.attempts == 0 and job.retries == 0
    assert_invariants(job, fake_comfyui)


def test_a_workflow_comfyui_rejects_fails_as_config_without_retry(fake_comfyui, start_worker):
    # The combo value comes from a placeholder, so preflight (which checks the template) lets it through
    # and ComfyUI answers 400 value_not_in_list.
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
        "2": {
            "class_type": "ImageScale",
            "inputs": {"image": ["1", 0], "upscale_method": "{{METHOD}}", "width": 8, "height": 8, "crop": "disabled"},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    start_worker(fake_comfyui.url)
    job = enqueue(workflow, name="scaled", METHOD="magic")

    job = wait_for(lambda: finished(job.pk), what="the job to fail")

    assert job.status == JobStatus.FAILED and job.error_kind == ErrorKind.CONFIG
    assert job.error_message.startswith("Workflow invalid: node 2 (ImageScale): Value not in list")
    assert "upscale_method: 'magic' not in" in job.error_message
    assert job.error_details["node_errors"]["2"]["errors"][0]["type"] == "value_not_in_list"
    assert [r.status for r in fake_comfyui.requests("POST", "/prompt")] == [400]
    assert job.attempts == 1 and job.retries == 0
    assert_invariants(job, fake_comfyui)


# --- row 5b: out of GPU memory --------------------------------------------------------------------------------


def test_out_of_memory_frees_and_retries_once(fake_comfyui, start_worker):
    fake_comfyui.oom_at_node("2", times=1)
    start_worker(fake_comfyui.url)
    job = enqueue()

    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert job.attempts == 2 and len(fake_comfyui.prompts_submitted()) == 2
    # /free (models and cache) went out between the two submits; the first /free (models only) is the
    # worker's first job on a server whose loaded models it does not know (FACTORY_FREE_AFTER_JOB=auto).
    calls = [(r.path, r.json) for r in fake_comfyui.requests("POST") if r.path in {"/prompt", "/free"}]
    assert calls == [
        ("/free", {"unload_models": True, "free_memory": False}),
        ("/prompt", calls[1][1]),
        ("/free", {"unload_models": True, "free_memory": True}),
        ("/prompt", calls[3][1]),
    ]
    assert [o.attempt for o in job.outputs.all()] == [2]
    assert_invariants(job, fake_comfyui)


def test_out_of_memory_twice_fails_as_oom(fake_comfyui, start_worker):
    fake_comfyui.oom_at_node("2", times=2)
    start_worker(fake_comfyui.url)
    job = enqueue()

    job = wait_for(lambda: finished(job.pk), what="the job to fail")

    assert job.status == JobStatus.FAILED and job.error_kind == ErrorKind.OOM
    assert job.error_message == "Out of GPU memory on node 2 (ImageInvert). Retried once after freeing memory."
    assert job.error_details["exception_type"] == "torch.OutOfMemoryError"
    assert job.attempts == 2 and len(fake_comfyui.prompts_submitted()) == 2  # no loop
    assert {"unload_models": True, "free_memory": True} in fake_comfyui.free_calls()
    assert_invariants(job, fake_comfyui)


# --- row 5c: ComfyUI hangs -----------------------------------------------------------------------------------


def trail(job: Job) -> list[str]:
    """The job's events a person reads about its watch: long nodes, stalls, interrupts, retries."""
    kinds = {"long_node", "stalled", "interrupted", "retry"}
    return [kind for kind in job.events.values_list("kind", flat=True) if kind in kinds]


def test_a_hung_prompt_is_waited_for_until_the_templates_budget_then_interrupted_retried_once_and_failed(
    fake_comfyui, start_worker
):
    # The server answers and runs the prompt: a long node, not a stall, until the manifest's 6 s budget is spent.
    fake_comfyui.hang_after_start = True  # stays on: the retry hangs too
    start_worker(fake_comfyui.url, env={"FACTORY_STALL_SECONDS": "1"})
    job = enqueue(manifest={"time_budget_seconds": 6})

    job = wait_for(lambda: finished(job.pk), what="the job to time out twice")

    assert job.status == JobStatus.FAILED and job.error_kind == ErrorKind.STALLED
    assert job.error_message == "Timed out after 6 s (the time budget); cancelled on the GPU server."
    first, second = submitted_ids(job)
    # Each hung prompt was interrupted by its own id (never a global interrupt) and dropped from the queue.
    assert fake_comfyui.interrupts() == [first, second]
    assert [r.json for r in fake_comfyui.requests("POST", "/queue")] == [{"delete": [first]}, {"delete": [second]}]
    assert job.attempts == 2 and [p.prompt_id for p in fake_comfyui.prompts_submitted()] == [first, second]
    for prompt_id in (first, second):
        assert fake_comfyui.wait_for_history(prompt_id)["status"]["messages"][-1][0] == "execution_interrupted"
    # The trail says what happened: per attempt a long node, then the budget's stall and its interrupt.
    assert trail(job) == ["long_node", "stalled", "interrupted", "retry", "long_node", "stalled", "interrupted"]
    assert job.events.filter(kind="interrupted").first().message == (
        f"Prompt {first} interrupted on {fake_comfyui.url} (by its id, nothing else)."
    )
    assert_invariants(job, fake_comfyui)


def test_a_node_silent_past_the_stall_deadline_while_the_server_runs_it_succeeds_with_a_long_node_in_the_trail(
    fake_comfyui, start_worker
):
    fake_comfyui.node_seconds = 2.5  # per node, no event meanwhile: a video model's sampling window or decode
    start_worker(fake_comfyui.url, env={"FACTORY_STALL_SECONDS": "1"})
    job = enqueue()

    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert fake_comfyui.interrupts() == [] and job.attempts == 1
    assert set(trail(job)) == {"long_node"}
    note = job.events.filter(kind="long_node").first()
    assert re.fullmatch(
        r"Node \d+: no progress event for \d+ s, but the GPU server still runs the prompt: waiting "
        r"\(time budget 60 s\)\.",
        note.message,
    ), note.message
    assert_invariants(job, fake_comfyui)


def test_a_server_whose_queue_stops_answering_is_stuck_interrupted_and_retried_in_the_trail(fake_comfyui, start_worker):
    fake_comfyui.hang_after_start = True
    start_worker(fake_comfyui.url, env={"FACTORY_STALL_SECONDS": "1"})
    job = running_on_the_server(enqueue().pk, fake_comfyui)
    # The worker's first look (history, then queue) is over once it asks /history a second time.
    fake_comfyui.wait_for_request("GET", f"/history/{job.prompt_id}", count=2, timeout=10)
    fake_comfyui.queue_unanswered = True  # stuck: silent, and its queue holds every answer
    fake_comfyui.wait_until(fake_comfyui.interrupts, 20, "the stuck prompt to be interrupted")
    fake_comfyui.hang_after_start = fake_comfyui.queue_unanswered = False  # the retry runs on a healthy server

    job = wait_for(lambda: finished(job.pk), what="the retry to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    first, _second = submitted_ids(job)
    assert fake_comfyui.interrupts() == [first]
    # Whether the first silent look found the prompt still running (a long_node before the queue went quiet)
    # depends on how its /queue request and the switch above interleave: either way, then stuck.
    assert [kind for kind in trail(job) if kind != "long_node"][:3] == ["stalled", "interrupted", "retry"]
    stalled = job.events.get(kind="stalled")
    assert stalled.message == (
        "Stalled: no progress for 1 s and the GPU server does not answer; cancelled on the GPU server."
    )
    assert stalled.data == {"node": "1"}
    assert_invariants(job, fake_comfyui)


# --- row 5d: the socket misses the end ---------------------------------------------------------------------------


def seconds_after_the_prompt_ended(job: Job, fake: FakeComfyUI) -> float:
    ended_ms = fake.history_entry(job.prompt_id)["status"]["messages"][-1][1]["timestamp"]
    return job.finished_at.timestamp() - ended_ms / 1000


def test_a_prompt_that_finished_before_the_socket_heard_of_it_is_found_by_polling(fake_comfyui, start_worker):
    fake_comfyui.finish_before_ws = True
    start_worker(fake_comfyui.url)
    job = enqueue()

    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert seconds_after_the_prompt_ended(job, fake_comfyui) < 2 * 1 + 1  # two polls (FAST: 1 s) and slack
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert_invariants(job, fake_comfyui)


def test_a_silent_socket_still_completes_even_past_the_stall_deadline(fake_comfyui, start_worker):
    # Not a single frame comes over the socket (ComfyUI #15240) while the prompt works for ~1.8 s, longer
    # than the 1 s no-progress deadline: without a working socket silence proves nothing.
    fake_comfyui.silent_socket = True
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 6, 0.1
    start_worker(fake_comfyui.url, env={"FACTORY_STALL_SECONDS": "1"})
    job = enqueue()

    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert seconds_after_the_prompt_ended(job, fake_comfyui) < 2 * 1 + 1
    assert fake_comfyui.interrupts() == [] and job.attempts == 1
    assert_invariants(job, fake_comfyui)


# --- cancelling -----------------------------------------------------------------------------------------------


def test_cancelling_a_running_job_interrupts_its_prompt(fake_comfyui, start_worker):
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 50, 0.1
    start_worker(fake_comfyui.url)
    job = running_on_the_server(enqueue().pk, fake_comfyui)

    services.job_cancel(job_id=job.pk)
    job = wait_for(lambda: finished(job.pk), what="the job to be cancelled")

    assert job.status == JobStatus.CANCELLED and job.error_kind == ErrorKind.CANCELLED
    assert job.error_message == "Cancelled by request; interrupted on the GPU server."
    assert fake_comfyui.interrupts() == [job.prompt_id]
    assert fake_comfyui.wait_for_history(job.prompt_id)["status"]["messages"][-1][0] == "execution_interrupted"
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert_invariants(job, fake_comfyui)


def test_cancelling_a_queued_job_cancels_it_at_once_and_its_doorbell_does_nothing(fake_comfyui, start_worker, rq_clean):
    job = enqueue()

    job = services.job_cancel(job_id=job.pk)

    assert job.status == JobStatus.CANCELLED and job.error_kind == ErrorKind.CANCELLED
    # The rq job is still in Redis; a worker that picks it up finds the row cancelled and sends nothing.
    start_worker(fake_comfyui.url)
    wait_for(
        lambda: RqJob.fetch(job.rq_job_id, connection=django_rq.get_connection("gpu")).get_status() == "finished",
        what="the worker to take the doorbell",
    )
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.started_at is None
    assert fake_comfyui.requests("POST", "/prompt") == [] and job.attempts == 0
    assert_invariants(job, fake_comfyui)


# --- row 11 through the real path ---------------------------------------------------------------------------------

CAPTIONED = {
    **BASIC,
    "4": {"class_type": "PreviewAny", "inputs": {"source": "{{CAPTION}}"}},
    "5": {"class_type": "PreviewAny", "inputs": {"source": "Caption: {{CAPTION}} at {{WIDTH}} px"}},
}
NASTY = 'She said "don\'t"\n\ttab \\ C:\\new\\path $& $1 \\1 \\g<0> {{WIDTH}} {{NOPE}} }}{{ ü 🎬 \x1f end'


def test_placeholder_values_arrive_in_comfyui_verbatim_and_typed(fake_comfyui, start_worker):
    start_worker(fake_comfyui.url)
    job = enqueue(CAPTIONED, name="captioned", CAPTION=NASTY, WIDTH=40)

    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    [request] = fake_comfyui.requests("POST", "/prompt")
    prompt = request.json["prompt"]  # the body parsed as JSON: nothing broke it
    assert prompt["4"]["inputs"]["source"] == NASTY
    assert prompt["5"]["inputs"]["source"] == f"Caption: {NASTY} at 40 px"  # {{WIDTH}} inside the value stays
    width = prompt["1"]["inputs"]["width"]
    assert width == 40 and type(width) is int
    assert job.submitted_workflow == prompt
    # ComfyUI ran on exactly that text.
    assert fake_comfyui.history_entry(job.prompt_id)["outputs"]["4"] == {"text": [NASTY]}
    assert_invariants(job, fake_comfyui)


# --- row 2b: Redis loses the queue ---------------------------------------------------------------------------------


def test_a_job_whose_queue_entry_redis_lost_is_rung_again_by_the_reconciler(fake_comfyui, start_worker, rq_clean):
    job = enqueue()
    job.refresh_from_db()
    assert queues.rq_job_alive(job.rq_job_id)
    django_rq.get_connection("default").flushdb()  # Redis restarted without persistence
    assert not queues.rq_job_alive(job.rq_job_id)
    # The reconciler runs a while later (the row has been queued longer than FACTORY_STALE_SECONDS).
    Job.objects.filter(pk=job.pk).update(queued_at=F("queued_at") - timedelta(seconds=60))
    start_worker(fake_comfyui.url)

    out = io.StringIO()
    call_command("reconcile_jobs", "--once", stdout=out)
    assert out.getvalue().strip() == f"Reconciled 1 job(s): {job.pk}."
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    for _ in range(2):  # later passes find nothing to do
        out = io.StringIO()
        call_command("reconcile_jobs", "--once", stdout=out)
        assert out.getvalue().strip() == "Reconciled 0 job(s)."
    assert job.events.filter(kind="reconciled").count() == 1
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert_invariants(job, fake_comfyui)


@pytest.mark.parametrize("marked_started", [False, True], ids=["taken", "taken-and-marked-started"])
def test_a_job_a_dying_worker_took_but_never_ran_is_rung_again_after_the_stale_window(
    fake_comfyui, start_worker, rq_clean, settings, marked_started
):
    """A worker (or its Redis) died between taking the job from the queue and starting it.

    rq moves a taken id to the queue's intermediate list and only then marks it started, so the job
    is left "queued" (or "started") in no queue; rq itself would clean it up ten minutes later at best.
    """
    job = enqueue()
    job.refresh_from_db()
    connection = django_rq.get_connection("default")
    gpu = django_rq.get_queue("gpu")
    # What the dying worker did: BLMOVE from the queue to the intermediate list (and maybe marked it started).
    assert connection.lmove(gpu.key, gpu.intermediate_queue_key).decode() == job.rq_job_id
    if marked_started:
        connection.hset(RqJob.key_for(job.rq_job_id), "status", "started")
    Job.objects.filter(pk=job.pk).update(queued_at=F("queued_at") - timedelta(seconds=60))
    found = timezone.now()

    # A live worker starts what it took within milliseconds; the first pass gives it the stale window.
    assert services.reconcile_once(now=found) == []
    later = found + timedelta(seconds=settings.FACTORY_STALE_SECONDS - 0.5)
    assert services.reconcile_once(now=later) == []
    assert services.reconcile_once(now=found + timedelta(seconds=settings.FACTORY_STALE_SECONDS + 0.5)) == [job.pk]

    start_worker(fake_comfyui.url)
    job = wait_for(lambda: finished(job.pk), what="the job to finish")
    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert job.events.filter(kind="reconciled").count() == 1
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert_invariants(job, fake_comfyui)


def test_a_job_waiting_in_its_queue_is_never_rung_again(rq_clean, settings):
    """However long it has waited behind others: its id is in the queue's list."""
    job = enqueue()
    Job.objects.filter(pk=job.pk).update(queued_at=F("queued_at") - timedelta(hours=1))

    for seconds in (0, settings.FACTORY_STALE_SECONDS * 10):
        assert services.reconcile_once(now=timezone.now() + timedelta(seconds=seconds)) == []
    assert not job.events.filter(kind="reconciled").exists()
