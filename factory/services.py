"""Every write to jobs goes through here; each function is one transaction.

Status changes are conditional UPDATEs (a worker that loses a race changes
nothing), every change leaves a JobEvent, and the rq doorbell and the
`job_changed` signal fire only after commit.
"""

import json
import logging
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from factory import queues
from factory.models import (
    TERMINAL_STATUSES,
    ErrorKind,
    Job,
    JobEvent,
    JobKind,
    JobOutput,
    JobStatus,
    Lane,
    WorkflowTemplate,
)
from factory.signals import job_changed
from factory.templating import (
    UI_FORMAT_HELP,
    InjectionError,
    infer_declarations,
    inject,
    is_ui_format,
    media_keys,
    resolve_values,
)

log = logging.getLogger(__name__)


class JobStateError(ValidationError):
    """The job is not in a state that allows this (cancel a finished job, retry a running one)."""


def _event(job_id: int, event_kind: str, message: str = "", **data) -> None:
    JobEvent.objects.create(job_id=job_id, kind=event_kind, message=message, data=data)


def _announce(job_id: int, event: str = "status") -> None:
    """Tell subscribers (after commit) what the job looks like now."""

    def send():
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            return
        try:
            job_changed.send(sender=Job, **job_payload(job, event=event))
        except Exception:  # a subscriber's failure must never break the job itself
            log.exception("job_changed receiver failed for job %s", job_id)

    transaction.on_commit(send)


def job_payload(job: Job, *, event: str) -> dict:
    return {
        "job_id": job.pk,
        "subject": job.subject,
        "status": job.status,
        "event": event,
        "progress": {
            "node": job.progress_node,
            "value": job.progress_value,
            "max": job.progress_max,
            "percent": job.progress_percent,
        },
        "error": {"kind": job.error_kind, "message": job.error_message} if job.error_kind else None,
    }


def _ring_after_commit(job: Job, *, delay_seconds: float = 0) -> None:
    job_id, queue = job.pk, queues.queue_name(job)

    def ring():
        rq_id = queues.ring(job_id, queue=queue, delay_seconds=delay_seconds)
        Job.objects.filter(pk=job_id).update(rq_job_id=rq_id)

    # robust: Redis down after the row committed must not turn the caller's request into a 500;
    # the reconciler rings the job again once Redis is back.
    transaction.on_commit(ring, robust=True)


# --- what callers use ------------------------------------------------------------------


def template_latest(name: str) -> WorkflowTemplate:
    template = WorkflowTemplate.objects.filter(name=name, active=True).order_by("-version").first()
    if template is None:
        raise ValidationError({"template": f"No active workflow template named “{name}”."})
    return template


def media_path(value: str) -> Path:
    """A media parameter as a file inside MEDIA_ROOT; anything else is refused (no path escapes)."""
    root = Path(settings.MEDIA_ROOT).resolve()
    try:
        path = (root / value).resolve()
        inside = path.is_relative_to(root)
        exists = inside and path.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long for the file system
        raise ValidationError(f"{value!r} is not a usable file name.") from None
    if not inside:
        raise ValidationError(f"{value} is outside the media folder.")
    if not exists:
        raise ValidationError(f"{value} does not exist in the media folder.")
    return path


def validate_params(template: WorkflowTemplate, params: dict, overrides: dict | None) -> dict:
    """Typed values for the template, or a ValidationError listing every problem before anything is sent."""
    try:
        values = resolve_values(template.placeholders, params)
        problems = []
        if "\\u0000" in json.dumps(overrides or {}):  # PostgreSQL's jsonb cannot store U+0000
            problems.append("Overrides must not contain the NUL character.")
        for key in media_keys(template.placeholders):
            try:
                media_path(values[key])
            except ValidationError as error:
                problems.append(f"{key}: {error.messages[0]}")
        if problems:
            raise InjectionError(problems)
        inject(template.workflow, values, overrides=overrides)
    except InjectionError as error:
        raise ValidationError(error.problems, code="bad_params") from None
    return values


@transaction.atomic
def job_enqueue(
    *,
    template: WorkflowTemplate | str,
    params: dict,
    subject: str = "",
    lane: str = Lane.NORMAL,
    overrides: dict | None = None,
    created_by=None,
    max_attempts: int | None = None,
) -> Job:
    """Queue a ComfyUI job; the worker is rung after commit. Bad parameters raise before anything is saved."""
    if isinstance(template, str):
        template = template_latest(template)
    if lane not in Lane.values:
        raise ValidationError({"lane": f"Lane must be one of {', '.join(Lane.values)}."})
    validate_params(template, params, overrides)
    job = Job.objects.create(
        kind=JobKind.COMFYUI,
        template=template,
        params=params,
        overrides=overrides or {},
        subject=subject,
        lane=lane,
        created_by=created_by,
        max_attempts=max_attempts or settings.FACTORY_MAX_ATTEMPTS,
        queued_at=timezone.now(),
    )
    _event(job.pk, "queued", f"Queued in the {lane} lane.", template=str(template))
    _ring_after_commit(job)
    _announce(job.pk)
    return job


@transaction.atomic
def job_enqueue_task(*, kind: str, params: dict, subject: str = "", created_by=None) -> Job:
    """Queue a CPU job (llm, tts, render) run by the runner its kind registered in factory.runners."""
    if kind == JobKind.COMFYUI or kind not in JobKind.values:
        raise ValidationError({"kind": f"“{kind}” is not a CPU job kind."})
    job = Job.objects.create(
        kind=kind,
        params=params,
        subject=subject,
        created_by=created_by,
        max_attempts=1,
        queued_at=timezone.now(),
    )
    _event(job.pk, "queued", f"Queued ({JobKind(kind).label}).")
    _ring_after_commit(job)
    _announce(job.pk)
    return job


@transaction.atomic
def job_cancel(*, job_id: int, actor=None) -> Job:
    """Cancel now if queued; if running, ask the worker (it interrupts the prompt on ComfyUI)."""
    who = getattr(actor, "username", "") or "the system"
    # Race: the worker may pick the job up between our read and write; the conditional
    # update decides, and the loser takes the "running" branch below.
    if Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED,
        error_kind=ErrorKind.CANCELLED,
        error_message=f"Cancelled by {who}.",
        finished_at=timezone.now(),
    ):
        _event(job_id, "cancelled", f"Cancelled by {who} before it started.")
        _announce(job_id)
        return Job.objects.get(pk=job_id)
    if Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(cancel_requested=True):
        _event(job_id, "cancel_requested", f"{who} asked to cancel; interrupting on the GPU server.")
        return Job.objects.get(pk=job_id)
    job = Job.objects.get(pk=job_id)
    raise JobStateError(f"Job {job_id} is {job.get_status_display().lower()}: there is nothing to cancel.")


@transaction.atomic
def job_retry(*, job_id: int, actor=None) -> Job:
    """Run a failed or cancelled job again from scratch (a fresh attempt budget)."""
    who = getattr(actor, "username", "") or "the system"
    # Attempts keep counting (a fresh budget on top): the failed run's files stay under their own
    # attempt number and are never taken for the new run's.
    if not Job.objects.filter(pk=job_id, status__in=[JobStatus.FAILED, JobStatus.CANCELLED]).update(
        status=JobStatus.QUEUED,
        max_attempts=F("attempts") + settings.FACTORY_MAX_ATTEMPTS,
        retries=0,
        prompt_id="",
        cancel_requested=False,
        error_kind="",
        error_message="",
        error_details={},
        progress_node="",
        progress_value=0,
        progress_max=0,
        progress_percent=0,
        queued_at=timezone.now(),
        started_at=None,
        finished_at=None,
        heartbeat_at=None,
    ):
        job = Job.objects.get(pk=job_id)
        raise JobStateError(f"Job {job_id} is {job.get_status_display().lower()}: only failed or cancelled jobs retry.")
    _event(job_id, "retried", f"Retried by {who}.")
    job = Job.objects.get(pk=job_id)
    _ring_after_commit(job)
    _announce(job_id)
    return job


# --- what the worker uses ------------------------------------------------------------------


def stale_before(now=None):
    """A running job whose worker has been silent since this moment is presumed dead."""
    # The worker touches the row at least every second while it waits (execution._watch).
    return (now or timezone.now()) - timedelta(seconds=settings.FACTORY_STALE_SECONDS)


@transaction.atomic
def job_start(*, job_id: int, worker_name: str, server_url: str) -> Job | None:
    """Claim the job for this worker; None when someone else has it or it is finished.

    A queued job is claimed; a running job is taken over only when its worker has
    gone silent (killed): the new run then reconciles with ComfyUI by prompt id.
    """
    now = timezone.now()
    claim = {"status": JobStatus.RUNNING, "worker_name": worker_name, "heartbeat_at": now}
    # Race: two workers (or a re-delivered rq job) start the same row; one UPDATE wins.
    if Job.objects.filter(pk=job_id, status=JobStatus.QUEUED, cancel_requested=False).update(
        started_at=now, server_url=server_url, **claim
    ):
        _event(job_id, "started", f"Started on {worker_name}.", server=server_url)
    elif Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=stale_before(now)).update(**claim):
        deaths = JobEvent.objects.filter(job_id=job_id, kind="taken_over").count() + 1
        _event(job_id, "taken_over", f"{worker_name} took over from a silent worker ({deaths}); reconciling.")
        if deaths >= settings.FACTORY_MAX_ATTEMPTS:
            # A job that kills its worker every time (a poison pill) must not loop forever.
            job_fail(
                job_id=job_id,
                kind=ErrorKind.LOST,
                message=f"Failed: its worker died {deaths} times (see the worker logs).",
            )
            return None
    else:
        return None
    _announce(job_id)
    return Job.objects.select_related("template").get(pk=job_id)


@transaction.atomic
def job_begin_attempt(*, job_id: int, server_url: str, workflow: dict) -> str | None:
    """Mint and store the prompt id of a new attempt before anything is sent; None if out of attempts."""
    prompt_id = str(uuid.uuid4())
    updated = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts__lt=F("max_attempts")).update(
        attempts=F("attempts") + 1,
        prompt_id=prompt_id,
        server_url=server_url,
        submitted_workflow=workflow,
        heartbeat_at=timezone.now(),
        progress_node="",
        progress_value=0,
        progress_max=0,
        progress_percent=0,
    )
    if not updated:
        return None
    attempt = Job.objects.values_list("attempts", flat=True).get(pk=job_id)
    _event(job_id, "submitted", f"Attempt {attempt}: prompt {prompt_id}.", prompt_id=prompt_id, attempt=attempt)
    return prompt_id


def job_progress(*, job_id: int, node: str, value: int, maximum: int, percent: float) -> None:
    """Record progress (the caller throttles) and count it as a heartbeat."""
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        progress_node=node[:200],
        progress_value=max(0, value),
        progress_max=max(0, maximum),
        progress_percent=min(100.0, max(0.0, percent)),
        heartbeat_at=timezone.now(),
    )
    job = Job.objects.filter(pk=job_id).first()
    if job is not None:
        try:
            job_changed.send(sender=Job, **job_payload(job, event="progress"))
        except Exception:
            log.exception("job_changed receiver failed for job %s", job_id)


def job_touch(*, job_id: int) -> None:
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())


def job_is_cancel_requested(*, job_id: int) -> bool:
    return Job.objects.filter(pk=job_id, cancel_requested=True).exists()


@transaction.atomic
def job_record_output(
    *,
    job_id: int,
    attempt: int,
    node_id: str,
    index: int,
    name: str,
    stored_name: str,
    size: int,
    sha256: str,
    content_type: str,
) -> JobOutput:
    """Attach a file already written (atomically) under MEDIA_ROOT; a repeat returns the existing row."""
    output, created = JobOutput.objects.get_or_create(
        job_id=job_id,
        attempt=attempt,
        node_id=node_id,
        index=index,
        defaults={
            "file": stored_name,
            "original_name": name,
            "size": size,
            "sha256": sha256,
            "content_type": content_type,
        },
    )
    if created:
        _event(job_id, "output", f"Saved {name} ({size} bytes).", file=stored_name, sha256=sha256)
        _announce(job_id, event="output")
    return output


def _finish(job_id: int, status: str, **fields) -> bool:
    now = timezone.now()
    job = Job.objects.filter(pk=job_id).values("started_at").first()
    seconds = (now - job["started_at"]).total_seconds() if job and job["started_at"] else 0
    return bool(
        Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=status, finished_at=now, heartbeat_at=now, gpu_seconds=F("gpu_seconds") + seconds, **fields
        )
    )


@transaction.atomic
def job_succeed(*, job_id: int, require_output: bool = True) -> bool:
    """Finish the job. Kinds that make files (ComfyUI) need one from the current attempt."""
    attempt = Job.objects.values_list("attempts", flat=True).get(pk=job_id)
    if require_output and not JobOutput.objects.filter(job_id=job_id, attempt=attempt).exists():
        # No file, no success (invariant I3).
        return job_fail(job_id=job_id, kind=ErrorKind.EXECUTION, message="The workflow finished but saved no file.")
    if _finish(job_id, JobStatus.SUCCEEDED, progress_percent=100, error_kind="", error_message="", error_details={}):
        _event(job_id, "succeeded", "Finished.")
        _announce(job_id)
        return True
    return False


@transaction.atomic
def job_fail(*, job_id: int, kind: str, message: str, details: dict | None = None) -> bool:
    status = JobStatus.CANCELLED if kind == ErrorKind.CANCELLED else JobStatus.FAILED
    if _finish(job_id, status, error_kind=kind, error_message=message, error_details=details or {}):
        _event(job_id, status, message, kind=kind)
        _announce(job_id)
        return True
    return False


@transaction.atomic
def job_wait_and_retry(*, job_id: int, kind: str, message: str, details: dict | None = None) -> bool:
    """A transient failure: put the job back in the queue after the next backoff step, or fail it.

    Returns True when a retry was scheduled.
    """
    delays = [int(d) for d in settings.FACTORY_UNREACHABLE_RETRIES]
    job = Job.objects.get(pk=job_id)
    if job.retries >= len(delays):
        job_fail(
            job_id=job_id,
            kind=kind,
            message=f"Failed: {message.rstrip('.')} (gave up after {job.retries} retries).",
            details=details,
        )
        return False
    delay = delays[job.retries]
    text = f"{message} Retrying in {delay} s ({job.retries + 1}/{len(delays)})."
    if not Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED,
        retries=F("retries") + 1,
        error_kind=kind,
        error_message=text,
        error_details=details or {},
        heartbeat_at=None,
        queued_at=timezone.now() + timedelta(seconds=delay),
    ):
        return False
    _event(job_id, "retry_scheduled", text, kind=kind, delay=delay)
    job.refresh_from_db()
    _ring_after_commit(job, delay_seconds=delay)
    _announce(job_id)
    return True


def jobs_needing_a_ring(*, now=None) -> list[Job]:
    """Jobs the reconciler must ring again: running with a silent worker, or queued too long ago."""
    now = now or timezone.now()
    return list(Job.objects.unfinished().filter(queued_at__lt=now).stalled(before=stale_before(now)))


def job_reconcile(*, job: Job, rq_job_alive: bool) -> bool:
    """Re-ring a job whose doorbell was lost (Redis restarted) or whose worker died. True if rung."""
    if job.status in TERMINAL_STATUSES or rq_job_alive:
        return False
    with transaction.atomic():
        _event(job.pk, "reconciled", "Its worker or queue entry was lost; queued again.")
        _ring_after_commit(job)
    return True


def reconcile_once(*, now=None) -> list[int]:
    """One pass of the reconciler: re-ring every unfinished job whose doorbell or worker was lost.

    Returns the ids rung. Safe to run often and from several places at once:
    a re-rung job that is in fact fine finds its row claimed and does nothing.
    """
    rung = []
    for job in jobs_needing_a_ring(now=now):
        alive = job.status == JobStatus.QUEUED and queues.rq_job_alive(job.rq_job_id)
        if job_reconcile(job=job, rq_job_alive=alive):
            rung.append(job.pk)
    return rung


@transaction.atomic
def template_import(
    *, name: str, workflow, placeholders: dict | None = None, description: str = "", created_by=None
) -> WorkflowTemplate:
    """Save a workflow as the next version of template `name`.

    Placeholder types are inferred from where each `{{KEY}}` stands, and any
    given in `placeholders` win. A UI-format export is refused with how to export the API format.
    """
    if is_ui_format(workflow):
        raise ValidationError(UI_FORMAT_HELP, code="ui_format")
    declared = infer_declarations(workflow) if isinstance(workflow, dict) else {}
    if placeholders is not None and not isinstance(placeholders, dict):
        raise ValidationError(
            'Placeholders must be an object such as {"SEED": {"type": "int"}}.', code="bad_placeholders"
        )
    for key, spec in (placeholders or {}).items():
        if not isinstance(spec, dict):
            raise ValidationError(
                f'Placeholder {key}: give an object such as {{"type": "int"}}, not {spec!r}.', code="bad_placeholders"
            )
        declared[key] = {**declared.get(key, {}), **spec}
    # Race: two imports of the same name; the unique (name, version) constraint refuses the second.
    latest = WorkflowTemplate.objects.select_for_update().filter(name=name).order_by("-version").first()
    template = WorkflowTemplate(
        name=name,
        version=(latest.version + 1) if latest else 1,
        workflow=workflow,
        placeholders=declared,
        description=description,
        created_by=created_by,
    )
    template.full_clean()
    template.save()
    return template
