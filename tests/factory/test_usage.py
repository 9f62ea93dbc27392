"""The cost ledger's capture: what each job consumed (GPU, queue and wall seconds, audio, LLM tokens).

GPU seconds come from ComfyUI's own execution timestamps; the bounds asserted here are the fake's own records
(its history messages, and when each prompt held its executor), never the test's wall clock.
"""

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from factory import execution, services, tts
from factory.jobs import run_job
from factory.models import Job, JobKind, JobStatus
from factory.usage import PromptClock
from tests.factories import BASIC_WORKFLOW, make_job, make_media_file, make_post, make_shot, png_bytes
from tests.factory.conftest import wait_for
from tests.fakes.comfyui import FakeComfyUI

NODES = 3  # BASIC_WORKFLOW executes three nodes
NODE_SECONDS = 0.2


def running_job(**extra) -> Job:
    now = timezone.now()
    return make_job(
        **{"status": JobStatus.RUNNING, "started_at": now - timedelta(seconds=5), "heartbeat_at": now, **extra}
    )


def stamps(entry: dict) -> dict[str, int]:
    """The first timestamp of each execution message kind in a /history entry."""
    found: dict[str, int] = {}
    for kind, data in entry["status"]["messages"]:
        found.setdefault(kind, data["timestamp"])
    return found


def span(fake: FakeComfyUI, prompt_id: str) -> float:
    """The prompt's execution time by the fake's own stamps: execution_start to its end message."""
    found = stamps(fake.history_entry(prompt_id))
    end = next(found[k] for k in ("execution_success", "execution_error", "execution_interrupted") if k in found)
    return (end - found["execution_start"]) / 1000


def prompt_ids(job: Job) -> list[str]:
    return [e["prompt_id"] for e in job.events.filter(kind="submitted").values_list("data", flat=True)]


def enqueue_basic() -> Job:
    services.template_import(name="basic", workflow=BASIC_WORKFLOW)
    return services.job_enqueue(template="basic", params={"WIDTH": 64}, subject="post.1/shot.1")


# --- PromptClock: ComfyUI's stamps ----------------------------------------------------------------------------


def history(*messages: tuple[str, int | None]) -> dict:
    return {
        "status": {
            "messages": [
                [kind, {"prompt_id": "p"} | ({} if stamp is None else {"timestamp": stamp})] for kind, stamp in messages
            ]
        }
    }


def test_gpu_time_is_the_span_between_comfyuis_start_and_end_stamps():
    clock = PromptClock("p")
    clock.settle(history(("execution_start", 1_000), ("execution_cached", 1_001), ("execution_success", 4_250)))
    assert clock.gpu_seconds == 3.25


def test_a_fully_cached_prompt_costs_almost_nothing():
    clock = PromptClock("p")
    clock.settle(history(("execution_start", 5_000), ("execution_cached", 5_001), ("execution_success", 5_003)))
    assert clock.gpu_seconds == pytest.approx(0.003)


def test_history_is_the_authority_over_what_the_socket_saw():
    clock = PromptClock("p")
    clock.see("execution_cached", {"prompt_id": "p", "timestamp": 2_000})  # re-attached after the start
    clock.see("execution_error", {"prompt_id": "p", "timestamp": 2_500})
    clock.settle(history(("execution_start", 1_000), ("execution_error", 2_500)))
    assert clock.gpu_seconds == 1.5


def test_the_socket_counts_when_history_never_came_and_an_unended_prompt_counts_to_its_last_stamp():
    clock = PromptClock("p")
    clock.see("execution_start", {"prompt_id": "p", "timestamp": 1_000})
    clock.see("execution_cached", {"prompt_id": "p", "timestamp": 1_400})  # then stalled and interrupted by us
    assert clock.gpu_seconds == 0.4
    clock.see("execution_interrupted", {"prompt_id": "p", "timestamp": 3_000})
    assert clock.gpu_seconds == 2.0


def test_a_prompt_that_never_started_or_has_no_stamps_costs_nothing():
    assert PromptClock("p").gpu_seconds == 0
    old = PromptClock("p")
    old.settle(history(("execution_start", None), ("execution_success", None)))  # a ComfyUI before 2024-07
    assert old.gpu_seconds == 0 and old.queue_seconds == 0


# --- job_record_usage ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_usage_adds_up_and_a_key_is_counted_once():
    job = running_job()

    assert services.job_record_usage(job_id=job.pk, claim=job.claim, key="prompt:a", gpu_seconds=2.5)
    assert services.job_record_usage(job_id=job.pk, claim=job.claim, key="prompt:b", gpu_seconds=1.0)
    assert not services.job_record_usage(job_id=job.pk, claim=job.claim, key="prompt:a", gpu_seconds=2.5)

    job.refresh_from_db()
    assert job.gpu_seconds == 3.5
    assert [e["key"] for e in job.events.filter(kind="usage").values_list("data", flat=True)] == [
        "prompt:a",
        "prompt:b",
    ]


@pytest.mark.django_db
def test_llm_usage_sums_tokens_and_names_the_model():
    job = running_job(kind=JobKind.LLM, template=None)
    for prompt, completion in ((120, 30), (200, 80)):
        services.job_record_usage(
            job_id=job.pk,
            claim=job.claim,
            llm_model="deepseek-chat",
            llm_prompt_tokens=prompt,
            llm_completion_tokens=completion,
        )
    job.refresh_from_db()
    assert (job.llm_model, job.llm_prompt_tokens, job.llm_completion_tokens) == ("deepseek-chat", 320, 110)
    assert job.gpu_seconds == 0


@pytest.mark.django_db
def test_usage_from_a_worker_that_lost_its_claim_is_not_written():
    job = running_job()
    with pytest.raises(services.ClaimLost):
        services.job_record_usage(job_id=job.pk, claim="00000000-0000-0000-0000-000000000000", gpu_seconds=9)
    job.refresh_from_db()
    assert job.gpu_seconds == 0 and not job.events.exists()


# --- queue and wall time -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_first_start_counts_the_wait_since_queued_and_a_retry_start_does_not_count_its_backoff(settings):
    settings.FACTORY_UNREACHABLE_RETRIES = ["30"]
    job = make_job(queued_at=timezone.now() - timedelta(seconds=40))
    job = services.job_start(job_id=job.pk, worker_name="w", server_url="http://gpu")
    job.refresh_from_db()
    assert job.queue_seconds >= 40

    # A transient failure puts it back with queued_at set to when the retry is due (30 s ahead, issue 19).
    services.job_wait_and_retry(job_id=job.pk, claim=job.claim, kind="unreachable", message="Down.")
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.queued_at > timezone.now()
    waited, ran = job.queue_seconds, job.wall_seconds
    job = services.job_start(job_id=job.pk, worker_name="w", server_url="http://gpu")
    services.job_fail(job_id=job.pk, claim=job.claim, kind="unreachable", message="Down again.")
    job.refresh_from_db()
    assert job.queue_seconds == waited  # neither negative nor the backoff
    assert job.wall_seconds > ran and job.gpu_seconds == 0


@pytest.mark.django_db
def test_a_finished_cpu_job_has_wall_time_and_no_gpu_time():
    job = running_job(kind=JobKind.RENDER, template=None)
    services.job_succeed(job_id=job.pk, claim=job.claim, require_output=False)
    job.refresh_from_db()
    assert job.wall_seconds >= 5 and job.gpu_seconds == 0


# --- ComfyUI jobs, run as a worker runs them ----------------------------------------------------------------


@pytest.fixture
def fake():
    fake = FakeComfyUI().start()
    fake.node_seconds = NODE_SECONDS
    yield fake
    fake.stop()


@pytest.mark.django_db
def test_a_comfyui_job_records_the_gpu_time_of_comfyuis_own_stamps(fake, rq_clean):
    job = enqueue_basic()

    execution.run_comfyui_job(job.pk, server_url=fake.url)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    [prompt_id] = prompt_ids(job)
    [held] = fake.executions()
    assert job.gpu_seconds == pytest.approx(span(fake, prompt_id), abs=1e-9)
    # Three nodes of NODE_SECONDS each ran between the stamps; the stamps lie within the executor's hold
    # (ms stamps: 1 ms of rounding either way).
    assert NODES * NODE_SECONDS - 0.002 <= job.gpu_seconds <= held.ended - held.started + 0.002
    assert job.wall_seconds >= job.gpu_seconds


@pytest.mark.django_db
def test_an_oom_retried_job_sums_both_prompts(fake, rq_clean):
    fake.oom_at_node("2")  # the first prompt runs node 1, then fails at node 2; the retry runs through
    job = enqueue_basic()

    execution.run_comfyui_job(job.pk, server_url=fake.url)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2, job.error_message
    first, second = prompt_ids(job)
    assert stamps(fake.history_entry(first)).keys() >= {"execution_start", "execution_error"}
    assert span(fake, first) >= NODE_SECONDS - 0.002 and span(fake, second) >= NODES * NODE_SECONDS - 0.002
    assert job.gpu_seconds == pytest.approx(span(fake, first) + span(fake, second), abs=1e-9)


@pytest.mark.django_db
def test_a_prompt_resumed_from_history_by_a_new_worker_is_counted_once(fake, rq_clean, settings):
    job = enqueue_basic()
    execution.run_comfyui_job(job.pk, server_url=fake.url)
    job.refresh_from_db()
    counted = job.gpu_seconds
    assert counted > 0
    # As if its worker had died after recording the prompt and before finishing: running, heartbeat gone silent.
    settings.FACTORY_STALE_SECONDS = 1
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, finished_at=None, heartbeat_at=timezone.now() - timedelta(seconds=60)
    )

    execution.run_comfyui_job(job.pk, server_url=fake.url)  # takes over, reconciles the stored prompt from /history

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.events.filter(kind="taken_over").count() == 1
    assert len(fake.prompts_submitted()) == 1  # no second run on the GPU
    assert job.gpu_seconds == counted == pytest.approx(span(fake, job.prompt_id), abs=1e-9)
    assert job.events.filter(kind="usage").count() == 1


@pytest.mark.django_db
def test_hung_prompts_interrupted_after_the_budget_count_until_we_let_them_go(fake, rq_clean, settings):
    # Both attempts hang after execution_start: no end reaches us (the history entry comes after the interrupt),
    # so each counts from hearing its start to the interrupt we send once the 2 s budget is spent.
    settings.FACTORY_STALL_SECONDS, settings.FACTORY_POLL_SECONDS = 1, 0.5
    fake.hang_after_start = True
    services.template_import(name="basic", workflow=BASIC_WORKFLOW, manifest={"time_budget_seconds": 2})
    job = services.job_enqueue(template="basic", params={"WIDTH": 64}, subject="post.1/shot.1")

    execution.run_comfyui_job(job.pk, server_url=fake.url)

    job.refresh_from_db()
    assert (job.status, job.error_kind, job.attempts) == (JobStatus.FAILED, "stalled", 2)
    recorded = {e["key"]: e["gpu_seconds"] for e in job.events.filter(kind="usage").values_list("data", flat=True)}
    assert list(recorded) == [f"prompt:{p}" for p in prompt_ids(job)]
    assert job.gpu_seconds == pytest.approx(sum(recorded.values()), abs=1e-9)
    for prompt_id in prompt_ids(job):
        fake.wait_for_history(prompt_id)
        # We let go (sent the interrupt) before the fake stamped execution_interrupted, and heard the start after
        # it stamped execution_start: never more than ComfyUI's own span (1 ms of stamp rounding).
        assert recorded[f"prompt:{prompt_id}"] <= span(fake, prompt_id) + 0.001
        # ComfyUI's last stamps before the hang (start, cached) alone would say about 1 ms; the prompt held the
        # executor for most of the budget (a wide margin for a loaded machine).
        assert recorded[f"prompt:{prompt_id}"] >= 0.5


@pytest.mark.django_db
def test_comfyuis_own_queue_wait_is_counted(fake, rq_clean):
    # Another client's prompt holds the executor, so ours waits in ComfyUI's queue behind it.
    fake.node_seconds = 1.0
    blocker = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    blocker["2"] = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "other"}}
    httpx.post(f"{fake.url}/prompt", json={"prompt": blocker, "client_id": "someone-else"}).raise_for_status()
    fake.wait_until(lambda: fake.running_prompt_id(), 10, "the other prompt to run")
    job = enqueue_basic()

    execution.run_comfyui_job(job.pk, server_url=fake.url)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    ours = next(e for e in fake.executions() if e.prompt_id == job.prompt_id)
    [post] = [r for r in fake.requests("POST", "/prompt") if (r.json or {}).get("prompt_id") == job.prompt_id]
    # Our submit came before the fake received it, and we heard the start after the executor took it.
    assert job.queue_seconds >= ours.started - post.time > 0
    assert job.gpu_seconds == pytest.approx(span(fake, job.prompt_id), abs=1e-9)


@pytest.mark.django_db(transaction=True)
def test_a_job_through_a_real_worker_records_its_gpu_time(fake, start_worker):
    start_worker(fake.url)
    job = enqueue_basic()

    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.SUCCEEDED).first(), what="the job")

    assert job.gpu_seconds == pytest.approx(span(fake, job.prompt_id), abs=1e-9)
    assert job.gpu_seconds >= NODES * NODE_SECONDS - 0.002 and job.wall_seconds >= job.gpu_seconds


# --- CPU jobs: TTS and render ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # run_job closes the connection between jobs, as a worker does
def test_a_tts_job_records_the_seconds_of_audio_it_made_and_no_gpu_time(
    fake_cosyvoice, settings, django_capture_on_commit_callbacks
):
    settings.COSYVOICE_URL = fake_cosyvoice.url
    text = "大家好，今天我们去海边。"
    with django_capture_on_commit_callbacks(execute=False):
        job = services.job_enqueue_task(
            kind=JobKind.TTS, params={"text": text, "spk_id": "中文女", "prompt_text": "", "prompt_wav": ""}
        )

    run_job(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    [output] = job.outputs.all()
    assert job.audio_seconds == tts.output_duration(output) == pytest.approx(fake_cosyvoice.expected_seconds(text))
    assert job.gpu_seconds == 0 and job.wall_seconds > 0


@pytest.mark.django_db(transaction=True)
def test_a_render_job_has_wall_time_and_no_gpu_time(django_capture_on_commit_callbacks):
    post = make_post()
    picture = make_media_file("posts/manual/still.png", png_bytes(64, 64))
    make_shot(post=post, position=1, script="", manual_asset=picture, duration_seconds=1)
    with django_capture_on_commit_callbacks(execute=False):
        job = services.job_enqueue_task(kind=JobKind.RENDER, params={"post_id": post.pk}, subject="tests/render")

    run_job(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert (Path(job.outputs.get().file.path)).is_file()
    assert job.gpu_seconds == 0 and job.wall_seconds > 0 and job.audio_seconds == 0
