"""Run one ComfyUI job: reconcile, submit, watch, collect. The steps of the robust client.

Called by factory.jobs.run_job inside a worker. It reads and writes the job only
through factory.services, and never submits a prompt twice for one attempt:
a prompt id is stored before submitting, and any re-run first asks ComfyUI
where that prompt stands (/history, /queue).
"""

import contextlib
import errno
import hashlib
import logging
import mimetypes
import os
import socket
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

from factory import preflight, provenance, services, usage, vram
from factory.comfyui import (
    Cancelled,
    ComfyUIClient,
    ComfyUIError,
    Deadlines,
    OutOfMemory,
    OutputFile,
    Progress,
    PromptLost,
    Stalled,
    Unreachable,
    WorkflowRejected,
    output_files,
)
from factory.models import ErrorKind, Job
from factory.templating import InjectionError, inject, media_keys, prefix_outputs, resolve_values

log = logging.getLogger(__name__)


class GaveUp(PromptLost):
    """Out of attempts: the prompt was lost too often."""


class OutputNotSaved(Exception):
    """An output could not be written under MEDIA_ROOT (disk full, quota, I/O error): retried later."""

    def __init__(self, message: str, *, details: dict):
        super().__init__(message)
        self.message, self.details = message, details


# How a failed write reads to a producer; anything else shows the system's own words.
WRITE_ERRORS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EROFS: "the disk is read-only",
}


_CLIENTS: dict[str, ComfyUIClient] = {}
UPLOAD_SUBFOLDER = "mcn"  # our inputs' folder under the server's input/
PROGRESS_INTERVAL = 0.5  # seconds between progress writes to the row (the final state is never throttled)


def worker_name() -> str:
    return os.environ.get("MCN_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def client_for(base_url: str) -> ComfyUIClient:
    """One client per server per process (building an httpx client costs tens of ms)."""
    base_url = base_url.rstrip("/")  # one key per server: "http://gpu:8188/" is "http://gpu:8188"
    if base_url not in _CLIENTS:
        _CLIENTS[base_url] = ComfyUIClient(
            base_url,
            client_id=f"mcn-{worker_name()}".replace(":", "-"),
            connect_timeout=settings.FACTORY_CONNECT_TIMEOUT,
            read_timeout=settings.FACTORY_READ_TIMEOUT,
        )
    return _CLIENTS[base_url]


def time_budget(template) -> float:
    """Seconds an attempt of `template` may run: its manifest's time_budget_seconds, else FACTORY_JOB_DEADLINE;
    never past rq's own timeout, which would kill the worker mid-download instead."""
    budget = (getattr(template, "manifest", None) or {}).get("time_budget_seconds") or settings.FACTORY_JOB_DEADLINE
    return min(float(budget), settings.RQ_DEFAULT_TIMEOUT - 60)


def deadlines(template=None) -> Deadlines:
    return Deadlines(
        total_seconds=time_budget(template),
        stall_seconds=settings.FACTORY_STALL_SECONDS,
        poll_seconds=settings.FACTORY_POLL_SECONDS,
    )


def run_comfyui_job(job_id: int, *, server_url: str | None = None) -> None:
    server_url = server_url or settings.COMFYUI_URL
    job = services.job_start(job_id=job_id, worker_name=worker_name(), server_url=server_url)
    if job is None:
        log.info("job %s is not ours to run (finished, cancelled or running elsewhere)", job_id)
        return
    # New attempts go to this worker's own server. An earlier prompt is asked after where it was sent
    # (job.server_url): a worker that died on another GPU machine may have left it running there.
    client = client_for(server_url)
    home = client_for(job.server_url) if job.prompt_id and job.server_url else client
    fenced = False
    try:
        _run(job, client, home=home)
    except services.ClaimLost:
        # Presumed dead (stopped, paused) and taken over meanwhile: the job is another worker's now. Write
        # nothing more, interrupt nothing, free nothing on the GPU server (the prompt may be the new holder's).
        fenced = True
        log.warning("job %s: taken over by another worker while this one was silent; stopping quietly", job_id)
    finally:
        vram.release(None if fenced else client, mode=settings.FACTORY_FREE_AFTER_JOB)


def _run(job: Job, client: ComfyUIClient, *, home: ComfyUIClient) -> None:
    """Drive the claimed job and record how it ended; every write names the claim (ClaimLost once lost)."""
    job_id, claim = job.pk, job.claim
    try:
        loaded = vram.loaded_workflow(client.base_url)
        vram.before_job(client, workflow=job.template_id, mode=settings.FACTORY_FREE_AFTER_JOB)
        if loaded != job.template_id and not job.prompt_id:  # a re-run first reattaches to its earlier prompt
            services.job_workflow_switched(
                job_id=job_id, server_url=client.base_url, previous=loaded, workflow=job.template_id
            )
        _drive(job, client, home=home)
    except services.ClaimLost:
        raise
    except OutputNotSaved as error:
        # The prompt's result stays in ComfyUI's history: the retry reconciles by prompt id and downloads
        # again, once there is room, without running the workflow a second time.
        services.job_wait_and_retry(
            job_id=job_id, claim=claim, kind=ErrorKind.EXECUTION, message=error.message, details=error.details
        )
    except (Unreachable, OSError) as error:
        services.job_wait_and_retry(
            job_id=job_id,
            claim=claim,
            kind=ErrorKind.UNREACHABLE,
            message=f"GPU server unreachable ({client.base_url}).",
            details=getattr(error, "details", {"error": str(error)}),
        )
    except WorkflowRejected as error:
        services.job_fail(
            job_id=job_id, claim=claim, kind=ErrorKind.CONFIG, message=error.message, details=error.details
        )
    except (InjectionError, ValidationError) as error:
        # The template or a media file changed since the job was queued.
        message = "Parameters no longer fit the template: " + " ".join(getattr(error, "problems", error.messages))
        services.job_fail(job_id=job_id, claim=claim, kind=ErrorKind.CONFIG, message=message)
    except ComfyUIError as error:
        services.job_fail(job_id=job_id, claim=claim, kind=error.kind, message=error.message, details=error.details)
    except Exception as error:
        # A bug of ours: the row must still end terminal (never stuck "running"); rq keeps the traceback.
        services.job_fail(
            job_id=job_id,
            claim=claim,
            kind=ErrorKind.EXECUTION,
            message="Internal error in the worker; staff can see the details.",
            details={"exception": f"{type(error).__name__}: {error}"},
        )
        raise


def _drive(job: Job, client: ComfyUIClient, *, home: ComfyUIClient) -> None:
    """Reconcile any earlier attempt (on `home`, where it was sent), then submit new attempts to
    `client` (this worker's server) until one succeeds or a rule stops us."""
    oom_retried = stall_retried = False
    entry = None
    resume = job.prompt_id  # an earlier attempt's prompt: a killed worker's, or a submit in doubt
    while entry is None:
        server = client
        try:
            if resume:
                # Inside the loop: what became of the earlier prompt (OOM, stall, lost) is handled
                # as it would have been had we watched it ourselves.
                prompt_id, resume, server = resume, "", home
                entry = _resume(job, home, prompt_id, own=client)
            else:
                entry = _attempt(job, client)
        except OutOfMemory as error:
            if oom_retried:
                raise OutOfMemory(
                    f"{error.message} Retried once after freeing memory.", details=error.details
                ) from None
            oom_retried = True
            services.job_touch(job_id=job.pk, claim=job.claim)  # ClaimLost: the server is the new holder's now
            server.free(unload_models=True, free_memory=True)
        except Stalled as error:
            _note_stall(job, server, error)
            if stall_retried or services.job_is_cancel_requested(job_id=job.pk, claim=job.claim):
                raise
            stall_retried = True
            log.warning("job %s: %s; retrying once", job.pk, error.message)
            services.job_note(
                job_id=job.pk, claim=job.claim, kind="retry", message="Retrying once after the stall: a new attempt."
            )
        except GaveUp:
            raise
        except PromptLost:
            log.warning("job %s: prompt lost on the server; new attempt", job.pk)
    _collect(job, server, entry)


def _note_stall(job: Job, server: ComfyUIClient, error: Stalled) -> None:
    """The stall and its interrupt in the job's trail (the log alone is lost with the worker's output)."""
    node = error.details.get("node") or ""
    services.job_note(job_id=job.pk, claim=job.claim, kind="stalled", message=error.message, node=node)
    if error.details.get("interrupted"):
        prompt_id = error.details.get("prompt_id", "")
        services.job_note(
            job_id=job.pk,
            claim=job.claim,
            kind="interrupted",
            message=f"Prompt {prompt_id} interrupted on {server.base_url} (by its id, nothing else).",
            prompt_id=prompt_id,
            server=server.base_url,
        )


def _resume(job: Job, client: ComfyUIClient, prompt_id: str, *, own: ComfyUIClient) -> dict | None:
    """Reconcile with a prompt submitted before: its result, or None when the server no longer has it.

    The prompt's server is another GPU machine that does not answer (it went down with its worker):
    the prompt is given up and the job goes on with a new attempt on this worker's own server.
    Its own server not answering is the usual wait-and-retry.
    """
    try:
        where = client.locate(prompt_id)
    except Unreachable:
        if client is own:
            raise
        services.job_abandon_prompt(job_id=job.pk, claim=job.claim, prompt_id=prompt_id, server_url=client.base_url)
        return None
    log.info("job %s: prompt %s is %s on the server", job.pk, prompt_id, where.state)
    if where.state == "done":
        _record_history(job, prompt_id, where.history)
        try:
            return client._outcome(where.history)
        except Cancelled:
            if services.job_is_cancel_requested(job_id=job.pk, claim=job.claim):
                raise
            return None  # interrupted by a worker that then died, not by a person: a new attempt
    if where.state == "absent":
        return None
    # Re-attach under the socket id it was submitted with: ComfyUI sends its events nowhere else.
    return _watch(
        job,
        client,
        prompt_id,
        socket=client.open_socket(client_id=where.client_id),
        client_id=where.client_id,
        borrowed=True,
    )


def _attempt(job: Job, client: ComfyUIClient) -> dict:
    template = job.template
    # Preflight (cached): a missing node or model is a config error before any GPU time.
    problems = preflight.template_problems(
        template, preflight.object_info(client, max_age=settings.FACTORY_PREFLIGHT_CACHE_SECONDS)
    )
    if problems:
        raise WorkflowRejected("Workflow cannot run on this GPU server: " + " ".join(problems))
    values = resolve_values(template.placeholders, job.params)
    for key in media_keys(template.placeholders):
        values[key] = upload_input(client, services.media_path(values[key]))
    workflow = inject(template.workflow, values, overrides=job.overrides)
    attempt = Job.objects.values_list("attempts", flat=True).get(pk=job.pk) + 1
    prefix_outputs(workflow, f"mcn/job{job.pk}-{attempt}")
    prompt_id = services.job_begin_attempt(
        job_id=job.pk, claim=job.claim, server_url=client.base_url, workflow=workflow
    )
    if prompt_id is None:
        raise GaveUp(f"The GPU server lost this job {job.max_attempts} times; giving up.")
    provenance.record_submission(job, workflow=workflow, values=values, attempt=attempt, prompt_id=prompt_id)
    # A socket id of the attempt's own: one this worker reused for its next job would make ComfyUI forget the
    # socket of a worker that took this attempt over (one socket per id).
    socket_id = f"{client.client_id}-{job.pk}-{attempt}"
    socket = client.open_socket(client_id=socket_id)  # before submitting, so no event of ours is missed
    # Still ours? A worker paused between minting and submitting may have been replaced meanwhile.
    services.job_touch(job_id=job.pk, claim=job.claim)
    submitted_at = time.time()
    client.submit(workflow, prompt_id=prompt_id, client_id=socket_id)
    return _watch(job, client, prompt_id, socket=socket, client_id=socket_id, submitted_at=submitted_at)


def upload_input(client: ComfyUIClient, path: Path) -> str:
    """Put a media file in the server's input folder once per content: the name LoadImage/LoadAudio takes.

    Named by its sha256, so the same face or voice is one file on the server however many jobs use it, and
    a job never depends on a shared disk. The server itself is asked whether it has it (a one-byte /view):
    a restarted or replaced GPU machine with an empty input folder gets it uploaded again. Audio goes through
    the same /upload/image endpoint, as LoadAudio reads the same input folder.
    """
    name = f"{_sha256_of(path)}{path.suffix.lower()}"
    if client.input_size(name, subfolder=UPLOAD_SUBFOLDER) == path.stat().st_size:
        return f"{UPLOAD_SUBFOLDER}/{name}"
    return client.upload(path, name=name, subfolder=UPLOAD_SUBFOLDER)


def _watch(
    job: Job,
    client: ComfyUIClient,
    prompt_id: str,
    *,
    socket,
    client_id: str | None = None,
    borrowed: bool = False,
    submitted_at: float | None = None,
) -> dict:
    last_write = 0.0
    last_touch = time.monotonic()
    cancel_asked = False
    budget = deadlines(job.template)
    long_nodes: set[str] = set()

    def on_progress(progress: Progress) -> None:
        nonlocal last_write, last_touch, cancel_asked
        now = time.monotonic()
        if now - last_write >= PROGRESS_INTERVAL:
            last_write = last_touch = now  # the progress write is this second's heartbeat and cancel check
            cancel_asked = services.job_progress(
                job_id=job.pk,
                claim=job.claim,
                node=progress.node,
                value=progress.value,
                maximum=progress.maximum,
                percent=progress.percent,
            )

    def should_cancel() -> bool:
        # Doubles as the heartbeat: a silent long node still proves this worker is alive. A worker that
        # was paused past the stale window finds its claim gone here, first thing after it wakes up.
        nonlocal last_touch
        now = time.monotonic()
        if cancel_asked or now - last_touch < 1.0:
            return cancel_asked
        last_touch = now
        return services.job_touch(job_id=job.pk, claim=job.claim)

    def on_long_node(node: str, seconds: float) -> None:
        # Once per node and attempt: the wait asks again every FACTORY_STALL_SECONDS while the node runs.
        if node in long_nodes:
            return
        long_nodes.add(node)
        services.job_note(
            job_id=job.pk,
            claim=job.claim,
            kind="long_node",
            message=f"Node {node or '?'}: no progress event for {seconds:.0f} s, but the GPU server still runs the "
            f"prompt: waiting (time budget {budget.total_seconds:.0f} s).",
            node=node,
            seconds=round(seconds, 1),
        )

    clock = usage.PromptClock(prompt_id, submitted_at=submitted_at)
    try:
        return client.wait(
            prompt_id,
            socket=socket,
            deadlines=budget,
            on_long_node=on_long_node,
            on_progress=on_progress,
            on_message=clock.see,
            on_history=clock.settle,
            should_cancel=should_cancel,
            # Before any /interrupt (cancel, stall, deadline): the prompt may be another worker's by now.
            before_interrupt=lambda: (services.job_touch(job_id=job.pk, claim=job.claim), clock.let_go()),
            client_id=client_id,
            borrowed=borrowed,
        )
    except Cancelled:
        if services.job_is_cancel_requested(job_id=job.pk, claim=job.claim):
            raise Cancelled("Cancelled by request; interrupted on the GPU server.") from None
        raise
    finally:
        _record_usage(job, clock)


def _record_history(job: Job, prompt_id: str, entry: dict) -> None:
    """The GPU time of a prompt found finished in /history (resumed after a worker died), once per prompt."""
    clock = usage.PromptClock(prompt_id)
    clock.settle(entry)
    _record_usage(job, clock)


def _record_usage(job: Job, clock: usage.PromptClock) -> None:
    # Whatever ended the watch (success, failure, stall, cancel) the prompt held the GPU that long. A claim
    # lost meanwhile writes nothing (the new holder records the prompt when it reads its history).
    with contextlib.suppress(services.ClaimLost):
        usage.record_prompt(job, clock)


def _collect(job: Job, client: ComfyUIClient, entry: dict) -> None:
    attempt = Job.objects.values_list("attempts", flat=True).get(pk=job.pk)
    # What killed or superseded runs of this job left half-written goes: this run holds the claim, so no
    # other run's download is live (one presumed dead that wakes up is fenced before its rename).
    for leftover in (Path(settings.MEDIA_ROOT) / "factory" / str(job.pk)).rglob("*.tmp"):
        leftover.unlink(missing_ok=True)
    for output in output_files(entry, result_node=job.template.result_node if job.template else ""):
        _store(job, client, output, attempt=attempt)
    provenance.record_server(job, client)
    services.job_succeed(job_id=job.pk, claim=job.claim)


def _store(job: Job, client: ComfyUIClient, output: OutputFile, *, attempt: int) -> None:
    """Download into MEDIA_ROOT atomically (tmp + fsync + rename); a re-run keeps what is there.

    A failed or interrupted download leaves no file behind: the final name appears only complete (rename),
    and the .tmp is removed on any error. A write error raises OutputNotSaved. The .tmp is this claim's
    own (a worker presumed dead may still be writing its own), and the rename waits for a claim check.
    """
    suffix = Path(output.filename).suffix.lower() or ".bin"
    stored_name = f"factory/{job.pk}/{attempt}/{output.node_id}-{output.index}{suffix}"
    final = Path(settings.MEDIA_ROOT) / stored_name
    if not final.exists():
        tmp = final.with_name(f"{final.name}.{job.claim.hex[:12]}.tmp")
        digest = hashlib.sha256()
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as handle, contextlib.closing(_touching(job, client.download(output))) as chunks:
                for chunk in chunks:
                    handle.write(chunk)
                    digest.update(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            services.job_touch(job_id=job.pk, claim=job.claim)  # ClaimLost: the live attempt's file stays as it is
            os.replace(tmp, final)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            reason = WRITE_ERRORS.get(error.errno) or error.strerror or type(error).__name__
            raise OutputNotSaved(
                f"Saving output failed: {reason}.",
                details={"file": stored_name, "error": f"{type(error).__name__}: {error}"},
            ) from error
        except BaseException:
            tmp.unlink(missing_ok=True)  # the download broke off: no half-written file stays behind
            raise
        sha256 = digest.hexdigest()
    else:
        sha256 = _sha256_of(final)
    services.job_record_output(
        job_id=job.pk,
        claim=job.claim,
        attempt=attempt,
        node_id=output.node_id,
        index=output.index,
        name=output.filename,
        stored_name=stored_name,
        size=final.stat().st_size,
        sha256=sha256,
        content_type=mimetypes.guess_type(output.filename)[0] or "application/octet-stream",
        kind=output.kind,
    )


def _touching(job: Job, chunks):
    """Pass the chunks through, touching the row every second: a long download (a large video) must not
    look like a dead worker to the reconciler, which would ring a second worker onto the same .tmp."""
    last_touch = time.monotonic()
    try:
        for chunk in chunks:
            yield chunk
            if time.monotonic() - last_touch >= 1.0:
                last_touch = time.monotonic()
                services.job_touch(job_id=job.pk, claim=job.claim)
    finally:
        chunks.close()  # ends the HTTP response now, not when the traceback lets go of it


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
