"""Every write to jobs goes through here; each function is one transaction.

Status changes are conditional UPDATEs (a worker that loses a race changes
nothing), every change leaves a JobEvent, and the rq doorbell and the
`job_changed` signal fire only after commit.
"""

import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Exists, F, Value, When
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
    OutputKind,
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
    output_nodes,
    resolve_values,
)

log = logging.getLogger(__name__)


class JobStateError(ValidationError):
    """The job is not in a state that allows this (cancel a finished job, retry a running one)."""


class ClaimLost(Exception):
    """This worker no longer holds the job: another took it over (this one was presumed dead), or it ended.

    Every worker-side service checks the claim token job_start handed out, in the same conditional
    UPDATE that writes, and raises this instead of writing. The worker then stops quietly: no event,
    no status, no interrupt of the prompt, no file over the live attempt's (factory.execution).
    """

    def __init__(self, job_id: int, claim):
        super().__init__(f"job {job_id}: claim {claim} is no longer this worker's (taken over or ended)")
        self.job_id, self.claim = job_id, claim


def _held(job_id: int, claim):
    """The job's row while the worker holding `claim` runs it: every worker-side write filters on this."""
    return Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, claim=claim)


def _hold(job_id: int, claim, **fields) -> None:
    """Touch the heartbeat (and `fields`) if `claim` still holds the job, else raise ClaimLost.

    Inside a transaction on PostgreSQL the UPDATE also locks the row until commit: a take-over
    (job_start's own UPDATE) waits for the write it fences instead of slipping in between.
    """
    if not _held(job_id, claim).update(heartbeat_at=timezone.now(), **fields):
        raise ClaimLost(job_id, claim)


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


# What job_payload reads (a query for it needs no more).
PAYLOAD_FIELDS = [
    *("subject", "status", "error_kind", "error_message"),
    *("progress_node", "progress_value", "progress_max", "progress_percent"),
]


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


def _ring_after_commit(job: Job, *, delay_seconds: float = 0, at_front: bool = False) -> None:
    job_id, queue = job.pk, queues.queue_name(job)

    def ring():
        rq_id = queues.ring(job_id, queue=queue, delay_seconds=delay_seconds, at_front=at_front)
        Job.objects.filter(pk=job_id).update(rq_job_id=rq_id)

    # robust: Redis down after the row committed must not turn the caller's request into a 500;
    # the reconciler rings the job again once Redis is back.
    transaction.on_commit(ring, robust=True)


def _ring_many_after_commit(jobs: list[Job]) -> None:
    """_ring_after_commit for new jobs queued together, in one Redis pipeline.

    Their rq ids were minted with the rows (jobs_enqueue), so nothing is written back: a ring lost
    with Redis leaves an id rq does not know, which the reconciler treats as no doorbell at all.
    """
    rings = [(job.pk, queues.queue_name(job), job.rq_job_id) for job in jobs]
    transaction.on_commit(lambda: queues.ring_many(rings), robust=True)  # robust: as in _ring_after_commit


def _announce_many(job_ids: list[int]) -> None:
    """_announce for jobs queued together: read back in one query after commit, then one signal each."""

    def send():
        for job in Job.objects.filter(pk__in=job_ids).order_by("pk"):
            try:
                job_changed.send(sender=Job, **job_payload(job, event="status"))
            except Exception:  # a subscriber's failure must never break the job itself
                log.exception("job_changed receiver failed for job %s", job.pk)

    transaction.on_commit(send)


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


@dataclass(frozen=True)
class JobRequest:
    """One job for jobs_enqueue: a ComfyUI job names its template, a CPU job (llm, tts, render) its kind."""

    params: dict
    subject: str = ""
    template: WorkflowTemplate | None = None
    kind: str = JobKind.COMFYUI
    lane: str = Lane.NORMAL
    overrides: dict | None = None
    max_attempts: int | None = None


def _unsaved_job(request: JobRequest, *, created_by, now) -> Job:
    """The row a request makes, after every check (a ValidationError before anything is saved)."""
    if request.template is None:
        if request.kind == JobKind.COMFYUI or request.kind not in JobKind.values:
            raise ValidationError({"kind": f"“{request.kind}” is not a CPU job kind."})
        return Job(
            kind=request.kind,
            params=request.params,
            subject=request.subject,
            created_by=created_by,
            max_attempts=1,
            queued_at=now,
        )
    template = request.template
    if request.lane not in Lane.values:
        raise ValidationError({"lane": f"Lane must be one of {', '.join(Lane.values)}."})
    pool_problem = queues.pool_problem(template.gpu_pool)
    if pool_problem:  # the template was saved while its pool was declared; its queue is gone now
        raise ValidationError({"template": f"{template} cannot run: {pool_problem}"})
    validate_params(template, request.params, request.overrides)
    return Job(
        kind=JobKind.COMFYUI,
        template=template,
        params=request.params,
        overrides=request.overrides or {},
        subject=request.subject,
        lane=request.lane,
        created_by=created_by,
        max_attempts=request.max_attempts or settings.FACTORY_MAX_ATTEMPTS,
        queued_at=now,
    )


@transaction.atomic
def jobs_enqueue(*, requests: list[JobRequest], created_by=None) -> list[Job]:
    """Queue several jobs at once; returns them in the order asked. All or nothing: a bad request raises
    before any row is saved.

    The same rows, events, rings and announcements as job_enqueue / job_enqueue_task one by one, in a
    few statements (one INSERT for the jobs, one for their events) and one Redis pipeline after commit:
    approving a post queues a voice and a picture per shot (bench B9).
    """
    now = timezone.now()
    jobs = [_unsaved_job(request, created_by=created_by, now=now) for request in requests]
    for job in jobs:
        job.rq_job_id = str(uuid.uuid4())  # the doorbell's id, given to rq after commit (_ring_many_after_commit)
    jobs = Job.objects.bulk_create(jobs)
    JobEvent.objects.bulk_create(
        JobEvent(
            job_id=job.pk,
            kind="queued",
            message=f"Queued in the {job.lane} lane.",
            data={"template": str(job.template)},
        )
        if job.kind == JobKind.COMFYUI
        else JobEvent(job_id=job.pk, kind="queued", message=f"Queued ({JobKind(job.kind).label}).", data={})
        for job in jobs
    )
    if jobs:
        _ring_many_after_commit(jobs)
        _announce_many([job.pk for job in jobs])
    return jobs


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
    request = JobRequest(
        params=params, subject=subject, template=template, lane=lane, overrides=overrides, max_attempts=max_attempts
    )
    return jobs_enqueue(requests=[request], created_by=created_by)[0]


def job_enqueue_task(*, kind: str, params: dict, subject: str = "", created_by=None) -> Job:
    """Queue a CPU job (llm, tts, render) run by the runner its kind registered in factory.runners."""
    return jobs_enqueue(requests=[JobRequest(params=params, subject=subject, kind=kind)], created_by=created_by)[0]


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
    """Run a failed or cancelled job again from scratch (a fresh attempt budget).

    Refused for a job superseded by a later one for the same work (Job.objects.superseding): its
    caller moved on (a post rendered again), and running it would write an output nobody uses.
    """
    who = getattr(actor, "username", "") or "the system"
    job = Job.objects.filter(pk=job_id).first()
    newer = Job.objects.superseding(job) if job is not None else Job.objects.none()
    # Attempts keep counting (a fresh budget on top): the failed run's files stay under their own
    # attempt number and are never taken for the new run's.
    # Race: a newer job made between a check and the update; the NOT EXISTS sits in the update itself.
    retryable = Job.objects.filter(pk=job_id, status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
    if not retryable.exclude(Exists(newer)).update(
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
        latest = newer.order_by("-pk").first()
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and latest is not None:
            raise JobStateError(
                f"Job {job_id} was superseded by job {latest.pk} ({latest.get_status_display().lower()}), made "
                f"later for the same work ({job.subject.partition('@')[0]}): only the latest job of a work "
                "is retried.",
                code="superseded",
            )
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
    The job returned carries the new claim token (`job.claim`) that every later write must name.
    """
    now = timezone.now()
    # A new fencing token for every claim, a take-over's included: the silent worker's token stops working.
    token = uuid.uuid4()
    claim = {"status": JobStatus.RUNNING, "worker_name": worker_name, "heartbeat_at": now, "claim": token}
    # Race: two workers (or a re-delivered rq job) start the same row; one UPDATE wins.
    # server_url says where the stored prompt was sent: a job back in the queue with a prompt in
    # doubt (its reply was lost) keeps it, so whichever worker claims it asks that server first.
    queued = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED, cancel_requested=False)
    if queued.update(
        started_at=now,
        queue_seconds=F("queue_seconds") + _queue_wait(queued, now),
        server_url=Case(When(prompt_id="", then=Value(server_url)), default=F("server_url")),
        **claim,
    ):
        _event(job_id, "started", f"Started on {worker_name}.", server=server_url)
    elif Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=stale_before(now)).update(**claim):
        deaths = JobEvent.objects.filter(job_id=job_id, kind="taken_over").count() + 1
        _event(job_id, "taken_over", f"{worker_name} took over from a silent worker ({deaths}); reconciling.")
        if deaths >= settings.FACTORY_MAX_ATTEMPTS:
            # A job that kills its worker every time (a poison pill) must not loop forever.
            job_fail(
                job_id=job_id,
                claim=token,
                kind=ErrorKind.LOST,
                message=f"Failed: its worker died {deaths} times (see the worker logs).",
            )
            return None
    else:
        return None
    _announce(job_id)
    return Job.objects.select_related("template").get(pk=job_id)


def job_workflow_switched(*, job_id: int, server_url: str, previous: int | None, workflow: int | None) -> None:
    """Record that this job made its GPU server load another workflow's models (`previous`: the template
    id that server had loaded, None when nothing or unknown). A trail row only: ops and bench B10 count
    the switches a worker made (factory.dispatch keeps them rare). Not written for a re-run that starts by
    reattaching to an earlier attempt's prompt (a take-over): that prompt loaded its models already."""
    was = f"workflow {previous}" if previous is not None else "nothing known"
    _event(
        job_id,
        "workflow_switch",
        f"Loading workflow {workflow}'s models on {server_url} (it had {was}).",
        server=server_url,
        previous=previous,
        workflow=workflow,
    )


def _queue_wait(queued, now) -> float:
    """Seconds a queued job waited for this first start (see Job.queue_seconds): 0 for a later start.

    Read before the claiming UPDATE, in its transaction; should the row change in between, that UPDATE
    finds it no longer queued and claims (and counts) nothing.
    """
    row = queued.values("queued_at", "started_at").first()
    if row is None or row["started_at"] is not None or row["queued_at"] is None:
        return 0.0
    return max(0.0, (now - row["queued_at"]).total_seconds())


@transaction.atomic
def job_begin_attempt(*, job_id: int, claim, server_url: str, workflow: dict) -> str | None:
    """Mint and store the prompt id of a new attempt before anything is sent; None if out of attempts.

    Raises ClaimLost when `claim` no longer holds the job.
    """
    prompt_id = str(uuid.uuid4())
    updated = (
        _held(job_id, claim)
        .filter(attempts__lt=F("max_attempts"))
        .update(
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
    )
    if not updated:
        if not _held(job_id, claim).exists():
            raise ClaimLost(job_id, claim)
        return None
    attempt = Job.objects.values_list("attempts", flat=True).get(pk=job_id)
    _event(job_id, "submitted", f"Attempt {attempt}: prompt {prompt_id}.", prompt_id=prompt_id, attempt=attempt)
    return prompt_id


@transaction.atomic
def job_abandon_prompt(*, job_id: int, claim, prompt_id: str, server_url: str) -> bool:
    """Give up the stored prompt: its GPU server (another machine) does not answer.

    The job keeps running on the calling worker, whose next attempt mints a new prompt id,
    so nothing that prompt might still make is ever taken for this job's. False if the row moved on
    to another prompt; ClaimLost when `claim` no longer holds the job.
    """
    # Race: only the worker that holds the job (its claim, this prompt) may let the prompt go.
    if not _held(job_id, claim).filter(prompt_id=prompt_id).update(heartbeat_at=timezone.now()):
        _hold(job_id, claim)
        return False
    _event(
        job_id,
        "prompt_abandoned",
        f"Prompt {prompt_id} was on {server_url}, which does not answer; running it again here.",
        prompt_id=prompt_id,
        server=server_url,
    )
    return True


def job_progress(*, job_id: int, claim, node: str, value: int, maximum: int, percent: float) -> bool:
    """Record progress (the caller throttles), count it as a heartbeat; returns whether cancel was asked.

    One statement between a ComfyUI frame and its push (bench B4): an UPDATE that returns what the
    push needs and the cancel flag, so the worker's once-a-second heartbeat and cancel check can skip
    a second that had progress. On PostgreSQL it commits without waiting for its WAL flush: a progress
    value and a heartbeat are hints, rewritten within the second, and only a crash of the database
    itself could lose the last one. A job this claim no longer holds is not written and not pushed:
    ClaimLost (the token is part of the same UPDATE's WHERE, so the fence costs no statement).
    """
    job = Job(
        pk=job_id,
        claim=claim,
        status=JobStatus.RUNNING,
        progress_node=node[:200],
        progress_value=max(0, value),
        progress_max=max(0, maximum),
        progress_percent=min(100.0, max(0.0, percent)),
        heartbeat_at=timezone.now(),
    )
    row = _update_returning(job, PROGRESS_FIELDS, returning=("subject", "cancel_requested"))
    if row is None:
        raise ClaimLost(job_id, claim)
    job.subject, cancel_requested = row
    try:
        job_changed.send(sender=Job, **job_payload(job, event="progress"))
    except Exception:
        log.exception("job_changed receiver failed for job %s", job_id)
    return bool(cancel_requested)


PROGRESS_FIELDS = ("progress_node", "progress_value", "progress_max", "progress_percent", "heartbeat_at")


def _update_returning(job: Job, fields: tuple[str, ...], *, returning: tuple[str, ...]) -> tuple | None:
    """UPDATE `fields` of a running `job` held by `job.claim`, RETURNING those columns (None: not running
    under that claim).

    Django's update() cannot return columns; PostgreSQL and SQLite >= 3.35 can, which saves the
    SELECT that would follow (a round trip per progress frame). Values go through each field's own
    database conversion, as save() does.
    """
    meta, quote = Job._meta, connection.ops.quote_name
    assignments = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in fields)
    values = [meta.get_field(name).get_db_prep_save(getattr(job, name), connection) for name in fields]
    columns = ", ".join(quote(meta.get_field(name).column) for name in returning)
    claim_field = meta.get_field("claim")
    where = (
        f"{quote(meta.pk.column)} = %s AND {quote(meta.get_field('status').column)} = %s"
        f" AND {quote(claim_field.column)} = %s"
    )
    # Identifiers from the model's meta, quoted; every value is a parameter.
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {where} RETURNING {columns}"  # noqa: S608
    postgresql = connection.vendor == "postgresql"
    # SET LOCAL needs a transaction of its own; elsewhere the statement is one (autocommit).
    with transaction.atomic() if postgresql else contextlib.nullcontext(), connection.cursor() as cursor:
        if postgresql:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        claim = claim_field.get_db_prep_value(job.claim, connection)
        cursor.execute(sql, [*values, job.pk, JobStatus.RUNNING, claim])
        return cursor.fetchone()


@transaction.atomic
def job_note(*, job_id: int, claim, kind: str, message: str, **data) -> None:
    """Add to the job's trail what its worker saw (a long node, a stall, an interrupt, a retry), as a heartbeat;
    ClaimLost if `claim` no longer holds the job (a worker presumed dead writes nothing)."""
    _hold(job_id, claim)
    _event(job_id, kind, message, **data)


def job_touch(*, job_id: int, claim) -> bool:
    """The worker's heartbeat: returns whether cancel was asked; ClaimLost if `claim` no longer holds the job.

    One statement (UPDATE ... RETURNING), the heartbeat and the cancel check of a second together.
    """
    row = _update_returning(
        Job(pk=job_id, claim=claim, heartbeat_at=timezone.now()), ("heartbeat_at",), returning=("cancel_requested",)
    )
    if row is None:
        raise ClaimLost(job_id, claim)
    return bool(row[0])


def job_is_cancel_requested(*, job_id: int, claim) -> bool:
    """Whether cancel was asked (a read); ClaimLost if `claim` no longer holds the job (stop, write nothing)."""
    row = _held(job_id, claim).values_list("cancel_requested", flat=True).first()
    if row is None:
        raise ClaimLost(job_id, claim)
    return row


@transaction.atomic
def job_record_output(
    *,
    job_id: int,
    claim,
    attempt: int,
    node_id: str,
    index: int,
    name: str,
    stored_name: str,
    size: int,
    sha256: str,
    content_type: str,
    kind: str = "",
) -> JobOutput:
    """Attach a file already written (atomically) under MEDIA_ROOT; a repeat returns the existing row.

    ClaimLost (nothing recorded) when `claim` no longer holds the job.
    """
    _hold(job_id, claim)  # Race: a take-over between this check and commit waits on the row lock (PostgreSQL)
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
            "kind": kind or _output_kind(content_type),
        },
    )
    if created:
        _event(job_id, "output", f"Saved {name} ({size} bytes).", file=stored_name, sha256=sha256)
        _announce(job_id, event="output")
    return output


def _output_kind(content_type: str) -> str:
    """image | video | audio from a MIME type (a caller that knows better, e.g. an animated WebP, says so)."""
    family = content_type.partition("/")[0]
    return family if family in OutputKind.values else ""


def _run_seconds(job_id: int, now) -> float:
    """Seconds since the job's current run started (its wall time so far; GPU time is ComfyUI's, elsewhere)."""
    started_at = Job.objects.filter(pk=job_id).values_list("started_at", flat=True).first()
    return max(0.0, (now - started_at).total_seconds()) if started_at else 0.0


def _finish(job_id: int, claim, status: str, **fields) -> None:
    """End the job held by `claim`; ClaimLost when it no longer holds it (nothing written)."""
    now = timezone.now()
    wall = _run_seconds(job_id, now)
    if not _held(job_id, claim).update(
        status=status, finished_at=now, heartbeat_at=now, wall_seconds=F("wall_seconds") + wall, **fields
    ):
        raise ClaimLost(job_id, claim)


@transaction.atomic
def job_record_usage(
    *,
    job_id: int,
    claim,
    key: str = "",
    gpu_seconds: float = 0,
    queue_seconds: float = 0,
    audio_seconds: float = 0,
    llm_model: str = "",
    llm_prompt_tokens: int = 0,
    llm_completion_tokens: int = 0,
) -> bool:
    """Add what the job consumed to its ledger figures (the Job usage columns) and note it in its trail.

    Figures add up (F() increments): an OOM retry's two prompts, a director's analyst, writer and repair
    calls. `key` names what was measured (a prompt id, a file): a figure already recorded under it is not
    added again (a worker that took over reads the same prompt's history) and this returns False.
    `llm_model`, when given, replaces the model named. ClaimLost when `claim` no longer holds the job.
    """
    figures = {
        "gpu_seconds": max(0.0, float(gpu_seconds)),
        "queue_seconds": max(0.0, float(queue_seconds)),
        "audio_seconds": max(0.0, float(audio_seconds)),
        "llm_prompt_tokens": max(0, int(llm_prompt_tokens)),
        "llm_completion_tokens": max(0, int(llm_completion_tokens)),
    }
    # Race: two records under one key (a worker presumed dead and its successor); on PostgreSQL the row lock
    # this UPDATE takes makes the second wait, then find the first's event. A lost claim writes nothing.
    _hold(job_id, claim)
    if key and JobEvent.objects.filter(job_id=job_id, kind="usage", data__key=key).exists():
        return False
    updates = {name: F(name) + value for name, value in figures.items() if value}
    if llm_model:
        updates["llm_model"] = llm_model[: Job._meta.get_field("llm_model").max_length]
    if updates:
        _held(job_id, claim).update(**updates)
    said = [f"{name.replace('_', ' ')} {value:g}" for name, value in figures.items() if value]
    message = "Used " + (", ".join(said) or "nothing measurable") + (f" ({llm_model})" if llm_model else "") + "."
    _event(job_id, "usage", message, key=key, model=llm_model, **figures)
    return True


@transaction.atomic
def job_succeed(*, job_id: int, claim, require_output: bool = True) -> bool:
    """Finish the job; True. Kinds that make files (ComfyUI) need one from the current attempt (else it
    fails, and this returns job_fail's True). ClaimLost when `claim` no longer holds the job."""
    attempt = Job.objects.values_list("attempts", flat=True).get(pk=job_id)
    if require_output and not JobOutput.objects.filter(job_id=job_id, attempt=attempt).exists():
        # No file, no success (invariant I3).
        return job_fail(
            job_id=job_id, claim=claim, kind=ErrorKind.EXECUTION, message="The workflow finished but saved no file."
        )
    _finish(job_id, claim, JobStatus.SUCCEEDED, progress_percent=100, error_kind="", error_message="", error_details={})
    _event(job_id, "succeeded", "Finished.")
    _announce(job_id)
    return True


@transaction.atomic
def job_fail(*, job_id: int, claim, kind: str, message: str, details: dict | None = None) -> bool:
    """Fail (or, for kind cancelled, cancel) the job; True. ClaimLost when `claim` no longer holds it."""
    status = JobStatus.CANCELLED if kind == ErrorKind.CANCELLED else JobStatus.FAILED
    _finish(job_id, claim, status, error_kind=kind, error_message=message, error_details=details or {})
    _event(job_id, status, message, kind=kind)
    _announce(job_id)
    return True


@transaction.atomic
def job_wait_and_retry(*, job_id: int, claim, kind: str, message: str, details: dict | None = None) -> bool:
    """A transient failure: put the job back in the queue after the next backoff step, or fail it.

    Returns True when a retry was scheduled; ClaimLost when `claim` no longer holds the job.
    """
    delays = [int(d) for d in settings.FACTORY_UNREACHABLE_RETRIES]
    job = _held(job_id, claim).select_for_update().first()  # Race: a take-over waits for this decision
    if job is None:
        raise ClaimLost(job_id, claim)
    if job.retries >= len(delays):
        job_fail(
            job_id=job_id,
            claim=claim,
            kind=kind,
            message=f"Failed: {message.rstrip('.')} (gave up after {job.retries} retries).",
            details=details,
        )
        return False
    delay = delays[job.retries]
    text = f"{message} Retrying in {delay} s ({job.retries + 1}/{len(delays)})."
    if not _held(job_id, claim).update(
        status=JobStatus.QUEUED,
        wall_seconds=F("wall_seconds") + _run_seconds(job_id, timezone.now()),
        retries=F("retries") + 1,
        error_kind=kind,
        error_message=text,
        error_details=details or {},
        heartbeat_at=None,
        queued_at=timezone.now() + timedelta(seconds=delay),
    ):
        raise ClaimLost(job_id, claim)
    _event(job_id, "retry_scheduled", text, kind=kind, delay=delay)
    job.refresh_from_db()
    _ring_after_commit(job, delay_seconds=delay)
    _announce(job_id)
    return True


@transaction.atomic
def job_worker_lost(*, job_id: int, worker_name: str, reason: str) -> bool:
    """The process running the job died under it (its rq work horse was killed): queue it again at once.

    Only the claim of that process moves (status running under `worker_name`): a row the reconciler
    already handed on, or one that finished, is left alone. A job whose process died
    FACTORY_MAX_ATTEMPTS times fails as lost (a poison pill must not loop). True if queued again.
    """
    # Race: the reconciler may take the row over at the same moment; the conditional UPDATEs decide.
    held = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, worker_name=worker_name)
    deaths = JobEvent.objects.filter(job_id=job_id, kind__in=["worker_lost", "taken_over"]).count() + 1
    if deaths >= settings.FACTORY_MAX_ATTEMPTS:
        claim = held.values_list("claim", flat=True).first()
        if claim is not None:
            job_fail(
                job_id=job_id,
                claim=claim,
                kind=ErrorKind.LOST,
                message=f"Failed: its worker died {deaths} times ({reason}; see the worker logs).",
            )
        return False
    text = f"Worker lost ({reason}); running it again ({deaths}/{settings.FACTORY_MAX_ATTEMPTS - 1})."
    requeued = held.update(
        status=JobStatus.QUEUED,
        wall_seconds=F("wall_seconds") + _run_seconds(job_id, timezone.now()),
        error_kind=ErrorKind.LOST,
        error_message=text,
        heartbeat_at=None,
        queued_at=timezone.now(),
    )
    if not requeued:
        return False
    _event(job_id, "worker_lost", text, reason=reason, worker=worker_name)
    _ring_after_commit(Job.objects.select_related("template").get(pk=job_id), at_front=True)
    _announce(job_id)
    return True


def jobs_needing_a_ring(*, now=None) -> list[Job]:
    """Jobs the reconciler must ring again: running with a silent worker, or queued too long ago."""
    now = now or timezone.now()
    stalled = Job.objects.unfinished().filter(queued_at__lt=now).stalled(before=stale_before(now))
    # Only what reconciling reads (queue_name: kind, lane, the template's GPU pool): a backlog of
    # thousands would otherwise decode every row's JSON and its template's whole workflow.
    fields = ["kind", "status", "lane", "rq_job_id", "template__gpu_pool"]
    return list(stalled.select_related("template").only(*fields))


def job_reconcile(*, job: Job, rq_job_alive: bool) -> bool:
    """Re-ring a job whose doorbell was lost (Redis restarted) or whose worker died. True if rung.

    A running job (its worker died mid-prompt) is rung at the front of its pool's queue: its prompt
    may still be running on the GPU server, and the next free worker of the pool re-attaches to it.
    """
    if job.status in TERMINAL_STATUSES or rq_job_alive:
        return False
    with transaction.atomic():
        _event(job.pk, "reconciled", "Its worker or queue entry was lost; queued again.")
        _ring_after_commit(job, at_front=job.status == JobStatus.RUNNING)
    return True


def reconcile_once(*, now=None) -> list[int]:
    """One pass of the reconciler: re-ring every unfinished job whose doorbell or worker was lost.

    Returns the ids rung. Safe to run often and from several places at once:
    a re-rung job that is in fact fine finds its row claimed and does nothing.
    """
    rung = []
    now = now or timezone.now()
    jobs = jobs_needing_a_ring(now=now)
    queued = [job.rq_job_id for job in jobs if job.status == JobStatus.QUEUED]
    alive_ids = queues.rq_jobs_alive(queued, now=now.timestamp())
    for job in jobs:
        alive = job.status == JobStatus.QUEUED and job.rq_job_id in alive_ids
        if job_reconcile(job=job, rq_job_alive=alive):
            rung.append(job.pk)
    # rq marks a job abandoned when its worker or Redis died mid-run, though a later run may have finished it.
    queues.forget_failed_entries(succeeded=_succeeded_ids)
    return rung


def _succeeded_ids(ids: list[int]) -> set[int]:
    return set(Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).values_list("pk", flat=True))


def _only_output_node(workflow) -> str:
    candidates = list(output_nodes(workflow))
    return candidates[0] if len(candidates) == 1 else ""


@transaction.atomic
def template_import(
    *,
    name: str,
    workflow,
    placeholders: dict | None = None,
    description: str = "",
    created_by=None,
    gpu_pool: str | None = None,
    result_node: str | None = None,
    manifest: dict | None = None,
) -> WorkflowTemplate:
    """Save a workflow as the next version of template `name`.

    `result_node` names the node whose file is the job's result; left out, the workflow's only output node
    is taken, and a workflow saving files from several nodes is refused with them named.

    Placeholder types are inferred from where each `{{KEY}}` stands, and any
    given in `placeholders` win. A UI-format export is refused with how to export the API format.
    The GPU pool is the previous version's unless `gpu_pool` is given ("" = the default pool); likewise the
    manifest (model files, time budget) unless `manifest` is given.
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
        gpu_pool=(latest.gpu_pool if latest else "") if gpu_pool is None else gpu_pool,
        result_node=str(result_node or "") or _only_output_node(workflow),
        manifest=(latest.manifest if latest else {}) if manifest is None else manifest,
    )
    template.full_clean()
    template.save()
    return template
