"""Runners for CPU job kinds (llm, tts, render), registered by the apps that own the work.

The factory runs the row's life cycle (claim, status, events, signal); what the
work *is* belongs to the caller, which registers a function for its kind:

    @runners.register(JobKind.LLM)
    def write_storyboard(job: Job) -> None: ...   # raise TaskFailed to fail with a message

So the factory still imports nothing of posts.
"""

import logging
from collections.abc import Callable

from factory import services
from factory.execution import worker_name
from factory.models import ErrorKind, Job

log = logging.getLogger(__name__)

_RUNNERS: dict[str, Callable[[Job], None]] = {}


class TaskFailed(Exception):
    """A runner's clean failure: `message` is shown to producers, `details` to staff."""

    def __init__(self, message: str, *, kind: str = ErrorKind.EXECUTION, details: dict | None = None):
        super().__init__(message)
        self.message, self.kind, self.details = message, kind, details or {}


def register(kind: str) -> Callable:
    def decorate(function: Callable[[Job], None]) -> Callable[[Job], None]:
        _RUNNERS[kind] = function
        return function

    return decorate


def run_task_job(job_id: int) -> None:
    job = services.job_start(job_id=job_id, worker_name=worker_name(), server_url="")
    if job is None:
        return
    try:
        _run(job)
    except services.ClaimLost:
        # Presumed dead (stopped, paused) and taken over meanwhile: the job is another worker's now.
        log.warning("job %s: taken over by another worker while this one was silent; stopping quietly", job_id)


def _run(job: Job) -> None:
    """Run the claimed job and record how it ended; every write names the claim (ClaimLost once lost).

    A runner passes `job.claim` to every service it calls (progress, outputs, cancel checks).
    """
    job_id, claim = job.pk, job.claim
    runner = _RUNNERS.get(job.kind)
    if runner is None:
        services.job_fail(
            job_id=job_id, claim=claim, kind=ErrorKind.CONFIG, message=f"No runner handles {job.kind} jobs."
        )
        return
    try:
        runner(job)
    except services.ClaimLost:
        raise
    except TaskFailed as error:
        services.job_fail(job_id=job_id, claim=claim, kind=error.kind, message=error.message, details=error.details)
        return
    except Exception as error:
        services.job_fail(
            job_id=job_id,
            claim=claim,
            kind=ErrorKind.EXECUTION,
            message="Internal error in the worker; staff can see the details.",
            details={"exception": f"{type(error).__name__}: {error}"},
        )
        raise
    services.job_succeed(job_id=job_id, claim=claim, require_output=False)
