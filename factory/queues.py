"""Which rq queue a job goes to, and putting it there (the doorbell; the row is the truth)."""

from datetime import timedelta

import django_rq

from factory.models import Job, JobKind, Lane

GPU_QUEUES = {Lane.VIP: "gpu-vip", Lane.NORMAL: "gpu"}
CPU_QUEUE = "cpu"


def queue_name(job: Job) -> str:
    if job.kind == JobKind.COMFYUI:
        return GPU_QUEUES[job.lane]
    return CPU_QUEUE


def ring(job_id: int, *, queue: str, delay_seconds: float = 0) -> str:
    """Enqueue `factory.jobs.run_job(job_id)`; return the rq job id."""
    from django.conf import settings

    rq_queue = django_rq.get_queue(queue)
    # rq's own timeout sits above our deadlines, so our clean "timed out" path always runs first.
    options = {"job_timeout": settings.RQ_DEFAULT_TIMEOUT, "result_ttl": 3600, "failure_ttl": 7 * 86400}
    if delay_seconds > 0:
        rq_job = rq_queue.enqueue_in(timedelta(seconds=delay_seconds), "factory.jobs.run_job", job_id, **options)
    else:
        rq_job = rq_queue.enqueue("factory.jobs.run_job", job_id, **options)
    return rq_job.id


def rq_job_alive(rq_job_id: str) -> bool:
    """Whether rq still holds this job as waiting, scheduled or running (its doorbell still rings)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RqJob

    if not rq_job_id:
        return False
    try:
        status = RqJob.fetch(rq_job_id, connection=django_rq.get_connection("default")).get_status()
    except NoSuchJobError:
        return False
    return status in {"queued", "started", "scheduled", "deferred"}
