"""The invariants every fault scenario ends on (reliability matrix section 7), in one call.

    assert_invariants(jobs=[job], fakes=[fake_comfyui], media_root=settings.MEDIA_ROOT,
                      responses=[...], frames=[...], forbidden=["Other artist"])

I1  every job row is terminal, or running with a heartbeat younger than FACTORY_STALE_SECONDS;
I2  no ComfyUI prompt was posted twice, and each posted id is one the job minted (stored) first: one
    live prompt per (row, attempt), read from each fake ComfyUI's request log;
I3  every output row has its file with the recorded size and sha256; no file under MEDIA_ROOT/factory
    lacks an output row (a half-written `.part`/`.tmp` counts as stray); a succeeded ComfyUI or TTS job
    has an output of its current attempt; rq's failed registry holds no entry of a job that succeeded
    (rq/rq #2289);
I4  no HTTP response of the scenario is a 5xx, except a 503 carrying Retry-After (an outage's designed answer);
I5  no response body or websocket frame contains a marker of another tenant's data (`forbidden`).

Returns the jobs, refreshed.
"""

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import django_rq
from django.conf import settings
from rq.job import Job as RqJob

from factory.models import Job, JobKind, JobOutput, JobStatus
from factory.services import stale_before
from tests.fakes.comfyui import FakeComfyUI

OUTPUT_KINDS = (JobKind.COMFYUI, JobKind.TTS)  # kinds whose success is a file


def assert_invariants(
    *,
    jobs: Iterable[Job | int],
    fakes: Iterable[object] = (),
    media_root: Path | str | None = None,
    responses: Iterable[object] = (),
    frames: Iterable[object] = (),
    forbidden: Iterable[str] = (),
    check_rq: bool = True,
) -> list[Job]:
    rows = [Job.objects.get(pk=job if isinstance(job, int) else job.pk) for job in jobs]
    _i1_terminal_or_progressing(rows)
    for fake in fakes:
        if isinstance(fake, FakeComfyUI):
            _i2_one_prompt_per_attempt(rows, fake)
    _i3_outputs(rows, Path(media_root or settings.MEDIA_ROOT))
    if check_rq:
        _i3_no_failed_entry_for_a_success(rows)
    bodies = _i4_no_5xx(list(responses))
    _i5_no_foreign_data([*bodies, *(_text(frame) for frame in frames)], list(forbidden))
    return rows


def _i1_terminal_or_progressing(rows: list[Job]) -> None:
    stale = stale_before()
    for job in rows:
        if job.is_terminal:
            continue
        assert job.status == JobStatus.RUNNING and job.heartbeat_at and job.heartbeat_at >= stale, (
            f"I1: job {job.pk} is {job.status} with no sign of life since {job.heartbeat_at}"
        )


def _i2_one_prompt_per_attempt(rows: list[Job], fake: FakeComfyUI) -> None:
    minted: dict[str, int] = {}
    for job in rows:
        events = list(job.events.filter(kind="submitted").values_list("data", flat=True))
        assert [e["attempt"] for e in events] == list(range(1, job.attempts + 1)), f"I2: job {job.pk}'s attempts"
        for event in events:
            assert event["prompt_id"] not in minted, f"I2: prompt id {event['prompt_id']} minted twice"
            minted[event["prompt_id"]] = job.pk
    posted = [prompt.prompt_id for prompt in fake.prompts_submitted()]
    twice = sorted({p for p in posted if posted.count(p) > 1})
    assert not twice, f"I2: prompt id(s) posted twice: {twice}"
    ours = [p for p in posted if p in minted]
    assert len(ours) == len(posted), f"I2: posted ids no job stored first: {set(posted) - set(minted)}"


def _i3_outputs(rows: list[Job], media: Path) -> None:
    known = set(JobOutput.objects.values_list("file", flat=True))
    for job in rows:
        outputs = list(job.outputs.all())
        for output in outputs:
            path = media / output.file.name
            assert path.is_file(), f"I3: job {job.pk}'s output {output.file.name} has no file"
            data = path.read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (output.size, output.sha256), (
                f"I3: {output.file.name} is not the file recorded (size or checksum)"
            )
        if job.status == JobStatus.SUCCEEDED and job.kind in OUTPUT_KINDS:
            current = job.attempts or 1
            assert any(o.attempt == current for o in outputs), f"I3: job {job.pk} succeeded without its file"
    on_disk = {p.relative_to(media).as_posix() for p in (media / "factory").rglob("*") if p.is_file()}
    stray = sorted(on_disk - known)
    assert not stray, f"I3: files in media without an output row (stray or half-written): {stray}"


def _i3_no_failed_entry_for_a_success(rows: list[Job]) -> None:
    succeeded = {job.pk for job in rows if job.status == JobStatus.SUCCEEDED}
    connection = django_rq.get_connection("default")
    for name in settings.RQ_QUEUES:
        registry = django_rq.get_queue(name).failed_job_registry
        for rq_id in registry.get_job_ids():
            rq_job = RqJob.fetch(rq_id, connection=connection)
            if rq_job.func_name == "factory.jobs.run_job" and rq_job.args and rq_job.args[0] in succeeded:
                raise AssertionError(
                    f"I3: rq's failed registry ({name}) holds {rq_id} of succeeded job {rq_job.args[0]}"
                )


def _i4_no_5xx(responses: list[object]) -> list[str]:
    bodies = []
    for response in responses:
        status = getattr(response, "status_code", None)
        if status is None:
            status = getattr(response, "status", None)
        # A 503 with Retry-After is the designed answer to an outage (matrix row 2); any other 5xx is a bug.
        retry_hint = status == 503 and getattr(response, "get", lambda _name: None)("Retry-After")
        assert status is not None and (status < 500 or retry_hint), f"I4: a {status} answered: {_text(response)[:300]}"
        bodies.append(_text(response))
    return bodies


def _i5_no_foreign_data(texts: list[str], forbidden: list[str]) -> None:
    for marker in forbidden:
        leaked = [text[:200] for text in texts if marker in text]
        assert not leaked, f"I5: {marker!r} reached a user who is not a member: {leaked}"


def _text(item: object) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bytes):
        return item.decode(errors="replace")
    content = getattr(item, "content", None)
    if isinstance(content, bytes):
        return content.decode(errors="replace")
    return json.dumps(item, default=str, ensure_ascii=False)
