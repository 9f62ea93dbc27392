"""rq entry points: thin, idempotent adapters that load by id and call the factory."""

from django.db import close_old_connections

from factory.execution import run_comfyui_job
from factory.models import Job, JobKind
from factory.runners import run_task_job


def run_job(job_id: int) -> None:
    """Run a factory job by its row id. Safe to run twice: the row decides what happens."""
    close_old_connections()
    kind = Job.objects.filter(pk=job_id).values_list("kind", flat=True).first()
    if kind == JobKind.COMFYUI:
        run_comfyui_job(job_id)
    elif kind is not None:
        run_task_job(job_id)
