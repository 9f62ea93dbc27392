"""Rows 2, 2b, 2c, 6c and the Redis variant of row 6: the test's own redis-server, killed, paused, restarted.

Every test points this process (rq queues, channel layer, cache) and the processes it starts at a
redis-server of its own (tests/fakes/redis_server.py), never at the machine's shared Redis. A worker that
exits because Redis went away is started again, as systemd's Restart=always does in production
(docs/deploy.md); `supervise()` counts those restarts so the test can say what happened.
"""

import json
import time
from datetime import timedelta

import django_rq
import pytest
import websocket
from django.conf import settings
from django.db.models import F
from django.test import Client

from artists.services import api_token_create
from factory import queues, services
from factory.models import Job, JobStatus
from mcn_site.lib import roles
from mcn_site.realtime import post_group, publish
from tests.e2e.conftest import AsgiServer, free_port
from tests.factories import BASIC_WORKFLOW as BASIC  # model-free, three executed nodes
from tests.factories import make_artist, make_post, make_user
from tests.factory.conftest import subprocess_env
from tests.faults.conftest import wait_for
from tests.faults.invariants import assert_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault, pytest.mark.timeout(120)]

STALE = 2
JOBS = 20


@pytest.fixture(autouse=True)
def _stale(settings):
    settings.FACTORY_STALE_SECONDS = STALE


def enqueue(count: int, *, subject: str = "post.1/shot.{n}/picture@0123456789abcdef") -> list[int]:
    """`count` ComfyUI jobs with the subjects the pipeline gives shot pictures (their progress is pushed)."""
    services.template_import(name="basic", workflow=BASIC)
    return [
        services.job_enqueue(template="basic", params={"WIDTH": 64 + n}, subject=subject.format(n=n + 1)).pk
        for n in range(count)
    ]


def all_finished(ids: list[int]) -> list[Job] | None:
    jobs = list(Job.objects.filter(pk__in=ids).order_by("pk"))
    return jobs if all(job.is_terminal for job in jobs) else None


class Supervisor:
    """Restart a GPU worker that exited, as systemd's Restart=always would."""

    def __init__(self, start_worker, comfyui_url: str, env: dict):
        self.start_worker, self.comfyui_url, self.env = start_worker, comfyui_url, env
        self.workers = [start_worker(comfyui_url, env=env)]
        self.restarts = 0

    def __call__(self) -> None:
        if self.workers[-1].process.poll() is not None:
            self.restarts += 1
            self.workers.append(self.start_worker(self.comfyui_url, env=self.env))

    def output(self) -> str:
        return "\n---\n".join(worker.output() for worker in self.workers)


def recover(ids: list[int], supervise: Supervisor) -> list[Job]:
    """Supervise the workers and run the reconciler until every job is terminal."""

    def step():
        supervise()
        services.reconcile_once()
        return all_finished(ids)

    try:
        return wait_for(step, timeout=90, what="every job to finish", interval=0.2)
    except pytest.fail.Exception as timed_out:
        rows = "\n".join(
            f"job {job.pk} {job.status} attempts={job.attempts} worker={job.worker_name!r} "
            f"events={list(job.events.values_list('kind', flat=True))}"
            for job in Job.objects.filter(pk__in=ids).order_by("pk")
        )
        pytest.fail(f"{timed_out}\n{rows}\nworkers (restarted {supervise.restarts}x):\n{supervise.output()}")


# --- rows 2 and 2b: Redis restarts mid-queue -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("appendonly", "how"), [(True, "kill"), (False, "shutdown")], ids=["2-aof-sigkill", "2b-no-aof-shutdown-nosave"]
)
def test_a_redis_restart_mid_queue_loses_no_job_and_runs_none_twice(
    redis_server, fake_comfyui, start_worker, appendonly, how
):
    server = redis_server(appendonly=appendonly)
    supervise = Supervisor(start_worker, fake_comfyui.url, {"FACTORY_STALE_SECONDS": str(STALE)})
    ids = enqueue(JOBS)
    wait_for(lambda: Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() >= 2, what="two jobs done")
    waiting = django_rq.get_queue("gpu").count
    assert waiting > 0, "the worker emptied the queue before Redis went down"

    server.kill() if how == "kill" else server.shutdown_nosave()
    server.start()

    kept = django_rq.get_queue("gpu").count
    if appendonly:
        assert kept > 0, "the AOF kept no doorbell"
    else:
        assert kept == 0
    jobs = recover(ids, supervise)

    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * JOBS, supervise.output()
    # None twice: one attempt each and one POST /prompt per job.
    assert [job.attempts for job in jobs] == [1] * JOBS
    assert len(fake_comfyui.prompts_submitted()) == JOBS
    reconciled = Job.objects.filter(pk__in=ids, events__kind="reconciled").count()
    if appendonly:
        assert reconciled <= 1, "doorbells the AOF kept were rung again"  # at most the one running at the crash
    else:
        assert reconciled >= 1
    assert_invariants(jobs=jobs, fakes=[fake_comfyui])


def test_a_paused_redis_only_delays_the_queue(redis_server, fake_comfyui, start_worker):
    """Row 2c: CLIENT PAUSE: every client waits, none fails, nothing is rung again."""
    server = redis_server(appendonly=True)
    supervise = Supervisor(start_worker, fake_comfyui.url, {"FACTORY_STALE_SECONDS": str(STALE)})
    ids = enqueue(JOBS)
    wait_for(lambda: Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() >= 2, what="two jobs done")
    with server.paused(3.0):
        done_during_pause = Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count()
        # The worker is blocked on Redis at its next dequeue; the database keeps answering.
        client = Client(raise_request_exception=False)
        assert client.get("/healthz").status_code == 200
    jobs = recover(ids, supervise)

    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * JOBS
    assert done_during_pause < JOBS
    assert supervise.restarts == 0, supervise.output()
    assert not Job.objects.filter(pk__in=ids, events__kind="reconciled").exists()
    assert len(fake_comfyui.prompts_submitted()) == JOBS
    assert_invariants(jobs=jobs, fakes=[fake_comfyui])


# --- row 2, the API during the outage ----------------------------------------------------------------------------


def api_client(user) -> Client:
    _, key = api_token_create(user=user, name="tests")
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {key}")


def test_while_redis_is_down_the_api_answers_503_with_a_retry_hint_and_never_500(redis_server):
    server = redis_server(appendonly=False)  # the failed job's first doorbell must not come back
    producer, ops = make_user(role=roles.PRODUCER), make_user(role=roles.OPS)
    post = make_post(artist=make_artist(members=[producer]))
    failed = Job.objects.get(pk=enqueue(1)[0])
    Job.objects.filter(pk=failed.pk).update(status=JobStatus.FAILED, error_kind="execution")
    as_producer, as_ops = api_client(producer), api_client(ops)

    server.kill()
    during = {
        # Throttled (the counters live in Redis): 503, the client retries later.
        "generate": as_producer.post(f"/api/v1/posts/{post.pk}/generate", {}, content_type="application/json"),
        # An Idempotency-Key needs Redis to be honoured: 503 rather than run without the guarantee.
        "retry-with-key": as_ops.post(f"/api/v1/jobs/{failed.pk}/retry", HTTP_IDEMPOTENCY_KEY="k-1"),
        # Neither: the row is written and committed; its doorbell waits for the reconciler.
        "retry": as_ops.post(f"/api/v1/jobs/{failed.pk}/retry"),
        # Reads come from the database.
        "list": as_producer.get("/api/v1/posts/"),
        "job": as_ops.get(f"/api/v1/jobs/{failed.pk}/"),
    }
    for name in ("generate", "retry-with-key"):
        answer = during[name]
        assert answer.status_code == 503, (name, answer.status_code, answer.content[:300])
        assert answer["Retry-After"] == "5"
        assert answer.json()["error"] == {
            "code": "unavailable",
            "message": "A backing service is restarting. Retry in 5 seconds.",
            "fields": {},
            "retry_after": 5,
        }
    assert [during[name].status_code for name in ("retry", "list", "job")] == [200, 200, 200]
    failed.refresh_from_db()
    assert failed.status == JobStatus.QUEUED  # committed; its doorbell rang into the dead Redis (robust on_commit)

    server.start()
    after = as_producer.post(f"/api/v1/posts/{post.pk}/generate", {}, content_type="application/json")
    assert after.status_code in (200, 201, 202), after.content[:300]
    # The retried row's doorbell rang into the dead Redis; the reconciler rings it now.
    Job.objects.filter(pk=failed.pk).update(queued_at=F("queued_at") - timedelta(seconds=60))
    assert failed.pk in services.reconcile_once()
    failed.refresh_from_db()
    assert failed.status == JobStatus.QUEUED
    assert queues.rq_job_alive(failed.rq_job_id)
    assert_invariants(jobs=[], responses=[*during.values(), after], check_rq=False)


# --- row 6c: the channel layer's Redis fails while a worker pushes progress -------------------------------------


@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_a_render_pushing_progress_to_a_dead_or_paused_redis_still_succeeds(
    redis_server, fake_comfyui, start_worker, fault
):
    server = redis_server(appendonly=True)
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 10, 0.1
    # A stall deadline above the push timeout: a push blocked on a paused Redis holds the watch loop that long.
    worker = start_worker(fake_comfyui.url, env={"FACTORY_STALL_SECONDS": "20"})
    [job_id] = enqueue(1)
    job = wait_for(
        lambda: Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).exclude(prompt_id="").first(),
        what="the job to submit",
    )
    fake_comfyui.wait_until(lambda: fake_comfyui.nodes_started(job.prompt_id), 10, "the first node")

    if fault == "kill":
        server.kill()
        job = wait_for(lambda: all_finished([job_id]), timeout=30, what="the job to finish")[0]
        server.start()
    else:
        with server.paused(60):
            # Finished while Redis still holds every client: the pushes gave up, the render did not wait.
            job = wait_for(lambda: all_finished([job_id]), timeout=40, what="the job to finish")[0]

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message, worker.output())
    assert "push to post.1 failed" in worker.output(), worker.output()
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert_invariants(jobs=[job], fakes=[fake_comfyui], check_rq=False)


# --- row 6, variant: a browser's socket across a Redis restart without persistence ------------------------------


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_a_live_socket_hears_pushes_again_after_redis_restarts_without_persistence(redis_server, tmp_path):
    server = redis_server(appendonly=False)
    member = make_user(role=roles.PRODUCER)
    outsider = make_user(role=roles.PRODUCER)
    post = make_post(artist=make_artist(members=[member], stage_name="Secret Artist"))
    env = subprocess_env(ALLOWED_HOSTS="127.0.0.1,localhost", SECRET_KEY=settings.SECRET_KEY)
    web = AsgiServer(port=free_port(), env=env, log_path=tmp_path / "web.log").start()
    url = f"ws://127.0.0.1:{web.port}/ws/posts/{post.pk}/"
    origin = f"http://127.0.0.1:{web.port}"
    frames: list[dict] = []
    try:
        socket = websocket.create_connection(url, cookie=session_cookie(member), origin=origin, timeout=10)
        frames.append(json.loads(socket.recv()))
        assert frames[0] == {"event": "hello", "post_id": post.pk}
        publish(post_group(post.pk), "ping", {"n": 0})
        frames.append(json.loads(socket.recv()))
        assert frames[-1] == {"event": "ping", "n": 0}

        server.restart(how="kill")  # the pub/sub subscriptions lived in the old process only

        # Push until one arrives (the layer's receive loop reconnects and re-subscribes) or the server
        # closes the socket (the page would reconnect and re-fetch); silence until the deadline is the bug.
        socket.settimeout(0.5)
        deadline, n, heard = time.monotonic() + 30, 0, None
        while heard is None and time.monotonic() < deadline:
            n += 1
            publish(post_group(post.pk), "ping", {"n": n})
            try:
                frame = socket.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except websocket.WebSocketConnectionClosedException:
                heard = "closed"
                break
            if frame:
                frames.append(json.loads(frame))
                heard = "push"
        assert heard == "push", f"no push for 30 s after the restart and the socket still open\n{web.output()}"
        assert frames[-1]["event"] == "ping" and frames[-1]["n"] >= 1
        socket.close()

        # I5: an outsider's socket to the same post is closed with 4404 before any push reaches it.
        other = websocket.create_connection(url, cookie=session_cookie(outsider), origin=origin, timeout=10)
        publish(post_group(post.pk), "ping", {"n": -1, "artist": "Secret Artist"})
        opcode, data = other.recv_data(control_frame=True)
        outsider_frames = [data]
        assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(data[:2], "big") == 4404
        other.close()
    finally:
        web.stop()
    assert_invariants(jobs=[], frames=outsider_frames, forbidden=["Secret Artist"], check_rq=False)
