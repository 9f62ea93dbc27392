"""rq entry points: thin, idempotent adapters that load by id and call the factory."""

import logging

from django.db import close_old_connections

from factory.execution import run_comfyui_job, worker_name
from factory.models import Job, JobKind
from factory.runners import run_task_job
from mcn_site.lib.logs import log_context

log = logging.getLogger(__name__)


def run_job(job_id: int) -> None:
    """Run a factory job by its row id. Safe to run twice: the row decides what happens."""
    close_old_connections()
    row = Job.objects.filter(pk=job_id).values_list("kind", "subject").first()
    if row is None:
        return
    kind, subject = row
    # Every log line of this run carries the job (the caller's code adds its own ids, e.g. post_id).
    with log_context(job_id=job_id, subject=subject, worker=worker_name()):
        log.info("job run starts")
        if kind == JobKind.COMFYUI:
            run_comfyui_job(job_id)
        else:
            run_task_job(job_id)
        log.info("job run ends: %s", Job.objects.filter(pk=job_id).values_list("status", flat=True).first())
