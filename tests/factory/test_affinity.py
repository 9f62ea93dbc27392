"""Workflow-aware dispatch (factory.dispatch): a GPU worker takes the queued jobs of the workflow its server
has loaded first, VIP lane still first, and no job is passed over past FACTORY_AFFINITY_MAX_WAIT_SECONDS.

Real Redis, the fake ComfyUI, real jobs. Most tests drive rq's dequeue of an in-process worker directly (one
dequeue, one answer: nothing races); one runs a real worker process over a mixed backlog.
"""

import threading
from datetime import timedelta

import django_rq
import pytest
from django.db import connections
from django.utils import timezone
from rq.job import Job as RqJob
from rq.utils import utcformat

from factory import services, vram
from factory.dispatch import AffinityWorker
from factory.models import Job, JobEvent, JobStatus, Lane
from factory.queues import gpu_queues, rq_job_alive
from tests.factories import TINY_WORKFLOW
from tests.factory.conftest import wait_for
from tests.factory.test_worker import INVERTED

pytestmark = pytest.mark.django_db(transaction=True)

SCALED = {  # a third workflow, other nodes again
    **TINY_WORKFLOW,
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "blurred"}},
}


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch, settings, fake_comfyui, rq_clean):
    """This process has run nothing on any server yet; its jobs go to the fake, as run_worker points them."""
    monkeypatch.setattr(vram, "_last_workflow", {})
    settings.COMFYUI_URL = fake_comfyui.url
    settings.FACTORY_FREE_AFTER_JOB = "auto"
    services.template_import(name="plain", workflow=TINY_WORKFLOW)
    services.template_import(name="inverted", workflow=INVERTED)
    services.template_import(name="blurred", workflow=SCALED)


def worker(fake, *, max_wait: float = 300, name: str = "gpu-affinity") -> AffinityWorker:
    queues = [django_rq.get_queue(name) for name in gpu_queues("default")]
    return AffinityWorker(
        queues, connection=django_rq.get_connection("gpu"), name=name, server_url=fake.url, max_wait=max_wait
    )


def enqueue(template: str, *, lane: str = Lane.NORMAL, n: int = 0) -> Job:
    return services.job_enqueue(template=template, params={"WIDTH": 32}, subject=f"post.1/shot.{n}", lane=lane)


def has_run(fake, template: str) -> None:
    """Run one job of `template` through a real worker in this process: vram now remembers it as loaded."""
    job = enqueue(template)
    worker(fake, name=f"gpu-warmup-{template}").work(burst=True, max_jobs=1)
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


def taken(fake, **options) -> int:
    """The Job id of what the worker's next dequeue takes."""
    rq_job, _queue = worker(fake, **options).dequeue_job_and_maintain_ttl(None)
    return rq_job.args[0]


def waiting(queue: str = "gpu") -> list[int]:
    return [rq_job.args[0] for rq_job in django_rq.get_queue(queue).get_jobs()]


def queued_ago(job: Job, seconds: float) -> None:
    """As if rq had put the job in its queue `seconds` ago."""
    when = timezone.now() - timedelta(seconds=seconds)
    django_rq.get_connection("gpu").hset(RqJob.key_for(job.rq_job_id), "enqueued_at", utcformat(when))


def test_a_worker_that_last_ran_a_workflow_takes_its_queued_job_before_older_ones(fake_comfyui):
    has_run(fake_comfyui, "plain")
    older = [enqueue("inverted", n=1), enqueue("blurred", n=2)]
    same = enqueue("plain", n=3)

    assert taken(fake_comfyui) == same.pk
    assert waiting() == [job.pk for job in older]  # the others keep their places


def test_the_vip_lane_goes_first_even_when_the_normal_lane_has_the_loaded_workflow(fake_comfyui):
    has_run(fake_comfyui, "plain")
    enqueue("plain", n=1)
    vip = enqueue("inverted", lane=Lane.VIP, n=2)

    assert taken(fake_comfyui) == vip.pk


def test_within_the_vip_lane_the_loaded_workflow_goes_first(fake_comfyui):
    has_run(fake_comfyui, "plain")
    enqueue("inverted", lane=Lane.VIP, n=1)
    vip_same = enqueue("plain", lane=Lane.VIP, n=2)

    assert taken(fake_comfyui) == vip_same.pk


def test_a_job_waiting_past_the_bound_is_taken_first_oldest_first(fake_comfyui):
    has_run(fake_comfyui, "plain")
    newer_overdue, oldest_overdue = enqueue("inverted", n=1), enqueue("blurred", n=2)
    enqueue("plain", n=3)
    queued_ago(newer_overdue, 90)
    queued_ago(oldest_overdue, 120)

    assert taken(fake_comfyui, max_wait=60) == oldest_overdue.pk
    assert taken(fake_comfyui, max_wait=60) == newer_overdue.pk


def test_a_silent_workers_job_rung_again_at_the_front_is_still_taken_first(fake_comfyui):
    """The reconciler rings a running job whose worker went silent at the front: the next worker re-attaches
    to its prompt whatever workflow it is, rather than leaving its result waiting behind the loaded workflow."""
    has_run(fake_comfyui, "plain")
    enqueue("plain", n=1)
    orphan = enqueue("inverted", n=2)
    stale = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=orphan.pk).update(status=JobStatus.RUNNING, worker_name="gpu-gone", heartbeat_at=stale)
    django_rq.get_queue("gpu").remove(orphan.rq_job_id)
    assert services.reconcile_once() == [orphan.pk]

    assert taken(fake_comfyui) == orphan.pk


def test_without_affinity_the_worker_takes_jobs_in_queue_order(fake_comfyui):
    has_run(fake_comfyui, "plain")
    first = enqueue("inverted", n=1)
    enqueue("plain", n=2)

    assert taken(fake_comfyui, max_wait=0) == first.pk


def test_a_worker_that_does_not_know_what_its_server_has_loaded_takes_fifo(fake_comfyui):
    first = enqueue("inverted", n=1)
    enqueue("plain", n=2)

    assert vram.loaded_workflow(fake_comfyui.url) is None
    assert taken(fake_comfyui) == first.pk


def test_two_workers_never_take_the_same_job(fake_comfyui):
    has_run(fake_comfyui, "plain")
    jobs = [enqueue(name, n=n) for n in range(30) for name in ("plain", "inverted", "blurred")]
    got: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def drain(key: str) -> None:
        try:
            me = worker(fake_comfyui, name=f"gpu-{key}")
            start.wait()
            while (result := me.dequeue_job_and_maintain_ttl(None)) is not None:
                got[key].append(result[0].args[0])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=drain, args=(key,)) for key in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == sorted(job.pk for job in jobs)


def test_a_job_taken_by_the_affinity_path_stays_alive_for_the_reconciler(fake_comfyui, settings):
    has_run(fake_comfyui, "plain")
    enqueue("inverted", n=1)
    same = enqueue("plain", n=2)
    me = worker(fake_comfyui)

    rq_job, _queue = me.dequeue_job_and_maintain_ttl(None)
    assert rq_job.id == same.rq_job_id and same.rq_job_id not in django_rq.get_queue("gpu").job_ids
    # Taken, not yet started (what rq's own multi-queue BLPOP leaves): the reconciler must not ring it again,
    # even once the row has waited past FACTORY_STALE_SECONDS.
    later = timezone.now() + timedelta(seconds=settings.FACTORY_STALE_SECONDS + 1)
    assert services.reconcile_once(now=later) == []
    assert rq_job_alive(same.rq_job_id)
    # Then rq marks it started, as the worker does next.
    me.prepare_job_execution(rq_job)
    assert rq_job_alive(same.rq_job_id)
    assert services.reconcile_once(now=later) == []
    assert Job.objects.get(pk=same.pk).rq_job_id == same.rq_job_id


def test_a_real_worker_groups_a_mixed_backlog_by_workflow_and_switches_models_once_per_workflow(
    fake_comfyui, start_worker
):
    order = ["plain", "inverted", "blurred"] * 3
    ids = [enqueue(name, n=n).pk for n, name in enumerate(order)]
    start_worker(fake_comfyui.url, env={"FACTORY_AFFINITY_MAX_WAIT_SECONDS": "300"})

    wait_for(lambda: all(Job.objects.get(pk=pk).is_terminal for pk in ids), what="every job to finish")
    assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    ran = list(Job.objects.filter(pk__in=ids).order_by("started_at").values_list("template__name", flat=True))
    assert ran == ["plain"] * 3 + ["inverted"] * 3 + ["blurred"] * 3
    # The server loaded each workflow's models once, and the worker recorded each switch on the job that made it.
    assert fake_comfyui.model_switches() == 3
    switches = JobEvent.objects.filter(job_id__in=ids, kind="workflow_switch").order_by("pk")
    assert [event.job.template.name for event in switches] == ["plain", "inverted", "blurred"]
    assert len(fake_comfyui.free_calls()) == 3  # vram's auto mode: an unload at each real switch only
