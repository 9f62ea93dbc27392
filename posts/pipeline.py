"""Production of a post: voices and pictures per shot through the factory, then the render.

    approve (or retry) ─> post_produce: post -> rendering, then per shot:
      voice    script and COSYVOICE_URL      -> tts job      "post.<id>/shot.<id>/voice@<key>"
               (no voice server: silent, timed by the director's durations)
      picture  manual asset                  -> used as it is
               stored picture of the same key -> kept (a locked shot keeps whatever it has)
               a ShotWorkflow for its kind    -> comfyui job  "post.<id>/shot.<id>/picture@<key>"
               otherwise                      -> a title card, drawn at render time (animatic)
      nothing left to wait for               -> render job   "post.<id>/render"  (posts.assembly)
    factory.signals.job_changed -> on_job_changed: settle the shot, fail the post naming the
      shot, queue the render when the last shot is in, finish the post when the render is.

A key is the hash of everything that goes into a voice or a picture. A shot is produced again
only when its key changes, so a retry resumes where production stopped and a rewritten
storyboard re-produces only the shots whose inputs changed. The key travels in the job's
subject: what a job makes is known from the job alone, even when its answer comes late.
"""

import hashlib
import json
import logging
import re
import wave
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from factory.models import TERMINAL_STATUSES, Job, JobKind, JobOutput, JobStatus, WorkflowTemplate
from factory.services import (
    JobRequest,
    JobStateError,
    job_cancel,
    job_enqueue,
    job_enqueue_task,
    jobs_enqueue,
    template_latest,
)
from mcn_site.lib.logs import log_context
from mcn_site.realtime import post_group, publish
from posts import services, webhooks
from posts.director.jobs import storyboard_subject
from posts.models import ASPECT_SIZES, Post, PostEvent, PostStatus, Shot, ShotStatus, ShotWorkflow

log = logging.getLogger(__name__)

SHOT_SUBJECT_RE = re.compile(r"^post\.(\d+)/shot\.(\d+)/(picture|voice)@([0-9a-f]{16})$")
STORYBOARD_RE = re.compile(r"^post\.(\d+)/storyboard$")
RENDER_RE = re.compile(r"^post\.(\d+)/render$")
POST_SUBJECT_RE = re.compile(r"^post\.(\d+)/")  # any job made for a post
UNFINISHED = [JobStatus.QUEUED, JobStatus.RUNNING]
SETTLED_FIELDS = [
    *("voice_asset", "voice_key", "duration_seconds", "generated_asset", "picture_key", "error", "status", "updated_at")
]
# A voice the TTS server returns longer than a shot may be (60 s) is cut there by the render.
MAX_SHOT_SECONDS = Decimal("60")


# --------------------------------------------------------------------------- keys and subjects


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shot_subject(shot: Shot, what: str, key: str) -> str:
    return f"post.{shot.post_id}/shot.{shot.pk}/{what}@{key}"


def render_subject(post_id: int) -> str:
    return f"post.{post_id}/render"


def shot_parameters(shot: Shot, declared: dict) -> dict:
    """What a shot template may ask for, limited to the placeholders it declares."""
    post, artist = shot.post, shot.post.artist
    wardrobe = (post.wardrobe.comfy_payload or {}) if post.wardrobe_id else {}
    width, height = ASPECT_SIZES[post.aspect_ratio]
    seed = int(hashlib.sha256(f"{shot.pk}:{shot.visual_prompt}:{shot.script}".encode()).hexdigest()[:8], 16)
    offered = {
        "PROMPT": shot.visual_prompt or shot.script,
        "SCRIPT": shot.script,
        "FACE_IMAGE": artist.face_anchor.name,
        "ARTIST": artist.stage_name,
        "SEED": seed,
        "WIDTH": width,
        "HEIGHT": height,
        "DURATION": float(shot.duration_seconds),
        "LORA_NAME": wardrobe.get("lora_name", ""),
        "TRIGGER_WORD": wardrobe.get("trigger_word", ""),
        "LORA_STRENGTH": wardrobe.get("strength", 0.8),
    }
    return {key: value for key, value in offered.items() if key in declared}


def picture_key(shot: Shot, template: WorkflowTemplate) -> str:
    return _digest("picture", template.name, template.version, shot_parameters(shot, template.placeholders))


def voice_parameters(shot: Shot) -> dict:
    """The TTS job's plain-data params: zero-shot from the voice's sample, else its speaker id."""
    voice = shot.post.artist.voice
    if voice.sample_audio:
        return {"text": shot.script, "prompt_text": voice.sample_transcription, "prompt_wav": voice.sample_audio.name}
    return {"text": shot.script, "spk_id": voice.speaker_id}


def voice_key(shot: Shot) -> str:
    return _digest("voice", voice_parameters(shot), settings.COSYVOICE_SAMPLE_RATE)


def _shot_template(shot: Shot) -> WorkflowTemplate | None:
    mapping = ShotWorkflow.objects.filter(kind=shot.kind, step=ShotWorkflow.Step.PICTURE).first()
    if mapping is None:
        return None
    try:
        return template_latest(mapping.template_name)
    except ValidationError:
        return None


def _waiting_for(job: Job | None, subject: str) -> bool:
    """Whether this job, still running, is making exactly what we need (same subject, same key)."""
    return job is not None and job.subject == subject and job.status not in TERMINAL_STATUSES


# --------------------------------------------------------------------------- one shot's picture (page button)


@transaction.atomic
def shot_generate_picture(*, shot_id: int, actor) -> Shot:
    """Queue the factory job that produces this shot's picture (refused for locked or manual shots)."""
    shot = Shot.objects.select_for_update(of=("self",)).select_related("post__artist", "post__wardrobe").get(pk=shot_id)
    services._ensure_editable(shot.post)
    if shot.locked:
        raise ValidationError(f"Shot {shot.position} is locked: unlock it to produce it again.")
    if shot.manual_asset:
        raise ValidationError(f"Shot {shot.position} uses a manual asset: remove it to generate a picture.")
    if not ShotWorkflow.objects.filter(kind=shot.kind, step=ShotWorkflow.Step.PICTURE).exists():
        raise ValidationError(
            f"No workflow is set for {shot.get_kind_display()} shots: ops set one under Posts > Shot workflows."
        )
    template = template_latest(ShotWorkflow.objects.get(kind=shot.kind, step=ShotWorkflow.Step.PICTURE).template_name)
    _enqueue_picture(shot, template, actor)
    Shot.objects.filter(pk=shot.pk).update(job=shot.job, status=ShotStatus.PRODUCING, error="")
    shot.status = ShotStatus.PRODUCING
    services._record(
        post=shot.post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=f"Shot {shot.position}: picture queued"
    )
    return shot


def _enqueue_picture(shot: Shot, template: WorkflowTemplate, actor) -> None:
    shot.job = job_enqueue(
        template=template,
        params=shot_parameters(shot, template.placeholders),
        subject=shot_subject(shot, "picture", picture_key(shot, template)),
        created_by=actor,
    )


# --------------------------------------------------------------------------- the whole post


@transaction.atomic
def post_approve(*, post_id: int, actor, note: str = "", expected_version: int | None = None) -> Post:
    """A reviewer approves: the post goes straight into production."""
    post = services.post_approve(post_id=post_id, actor=actor, note=note, expected_version=expected_version)
    return post_produce(post_id=post.pk, actor=actor)


@transaction.atomic
def post_produce(*, post_id: int, actor, expected_version: int | None = None) -> Post:
    """Move an approved (or failed) post to rendering and queue what its shots still need.

    Returns the post; `post.started_jobs` lists the ids of the jobs this call queued.
    """
    post = services.post_transition(
        post_id=post_id, to_status=PostStatus.RENDERING, actor=actor, expected_version=expected_version
    )
    Post.objects.filter(pk=post.pk).update(failure="", render_job=None)
    post.failure, post.render_job = "", None
    shots = list(
        Shot.objects.select_for_update(of=("self",))
        .filter(post=post)
        .select_related("post__artist__voice", "post__wardrobe", "job", "voice_job")
        .order_by("position")
    )
    # Every job of every shot queued together: one INSERT for the rows, one Redis pipeline after
    # commit (bench B9: job by job, approving a post of 10 shots cost ~100 statements).
    templates: dict[str, WorkflowTemplate | None] = {}
    planned = [(shot, field, request) for shot in shots for field, request in _plan_shot(shot, templates)]
    jobs = jobs_enqueue(requests=[request for _, _, request in planned], created_by=actor)
    for (shot, field, _), job in zip(planned, jobs, strict=True):
        setattr(shot, field, job)
    now = timezone.now()
    for shot in shots:
        shot.error = ""
        shot.status = ShotStatus.PRODUCING if _is_waiting(shot) else ShotStatus.READY
        shot.updated_at = now  # bulk_update does not touch auto_now fields
    Shot.objects.bulk_update(shots, ["job", "voice_job", "error", "status", "updated_at"])
    started = [job.pk for job in jobs]
    waiting = sum(_is_waiting(shot) for shot in shots)
    plan = f"{len(started)} job(s) queued for {len(shots)} shot(s)"
    if waiting:
        services._record(post=post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=f"Production: {plan}.")
    else:
        started.append(_enqueue_render(post, actor).pk)
    post.started_jobs = started
    return post


def _plan_shot(shot: Shot, templates: dict[str, WorkflowTemplate | None]) -> list[tuple[str, JobRequest]]:
    """What this shot lacks, as (the shot's job field, the job to queue); none when everything is in the cache.

    `templates` remembers each kind's template for the rest of the post (two queries a kind, not a shot).
    """
    needs = []
    if shot.script.strip() and settings.COSYVOICE_URL:
        key = voice_key(shot)
        subject = shot_subject(shot, "voice", key)
        if not (shot.voice_asset and shot.voice_key == key) and not _waiting_for(shot.voice_job, subject):
            needs.append(("voice_job", JobRequest(kind=JobKind.TTS, params=voice_parameters(shot), subject=subject)))
    if not shot.manual_asset:
        if shot.kind not in templates:
            templates[shot.kind] = _shot_template(shot)
        template = templates[shot.kind]
        if template is not None:
            key = picture_key(shot, template)
            subject = shot_subject(shot, "picture", key)
            kept = shot.generated_asset and (shot.picture_key == key or shot.locked)
            if not kept and not _waiting_for(shot.job, subject):
                params = shot_parameters(shot, template.placeholders)
                needs.append(("job", JobRequest(template=template, params=params, subject=subject)))
    return needs


def _is_waiting(shot: Shot) -> bool:
    return any(job is not None and job.status not in TERMINAL_STATUSES for job in (shot.job, shot.voice_job))


def _enqueue_render(post: Post, actor) -> Job:
    job = job_enqueue_task(
        kind=JobKind.RENDER, params={"post_id": post.pk}, subject=render_subject(post.pk), created_by=actor
    )
    Post.objects.filter(pk=post.pk).update(render_job=job)
    post.render_job = job
    services._record(post=post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note="Every shot is ready: render queued.")
    return job


def _fail(post_id: int, reason: str) -> None:
    """Fail a post in production with the reason a producer reads (which shot, and what)."""
    services.post_transition(post_id=post_id, to_status=PostStatus.FAILED, actor=None, note=reason)
    Post.objects.filter(pk=post_id).update(failure=reason)


def post_cancel_jobs(*, post_id: int, actor) -> list[int]:
    """Cancel every unfinished job working for this post (director, voices, pictures, render).

    Returns the ids of the jobs cancelled (or asked to stop, when running). A shot whose job ends
    cancelled fails the post in production, naming the shot, as any failed job does.
    """
    post = Post.objects.get(pk=post_id)
    shot_jobs = Shot.objects.filter(post_id=post_id).values_list("job_id", "voice_job_id")
    ids = {job_id for pair in shot_jobs for job_id in pair if job_id} | {post.render_job_id} - {None}
    # The director's job is found by its subject: the post does not point at it.
    director = Job.objects.filter(subject=storyboard_subject(post_id)).values_list("pk", flat=True)
    cancelled = []
    for job_id in Job.objects.filter(pk__in=ids | set(director), status__in=UNFINISHED).values_list("pk", flat=True):
        try:
            job_cancel(job_id=job_id, actor=actor)
        except JobStateError:
            continue  # it finished between our read and the cancel: nothing left to stop
        cancelled.append(job_id)
    return sorted(cancelled)


# --------------------------------------------------------------------------- the factory's news


def on_job_changed(sender, *, job_id, subject, status, event, progress, error, **kwargs) -> None:
    """factory.signals.job_changed receiver: shot and post state, and pushes to the storyboard page."""
    post = POST_SUBJECT_RE.match(subject or "")
    with log_context(post_id=int(post.group(1)) if post else None):  # log lines from here on name the post
        _on_job_changed(job_id=job_id, subject=subject, status=status, event=event, progress=progress, error=error)


def _on_job_changed(*, job_id, subject, status, event, progress, error) -> None:
    subject = subject or ""
    finished = status in TERMINAL_STATUSES and event == "status"
    storyboard = STORYBOARD_RE.match(subject)
    if storyboard:
        # The director's job: the page shows it working, and re-reads the storyboard when it ends.
        publish(
            post_group(int(storyboard.group(1))),
            "job.finished" if status in TERMINAL_STATUSES else "job.progress",
            {"shot_id": None, "job_id": job_id, "status": status, "error": error},
        )
        return
    render = RENDER_RE.match(subject)
    shot = SHOT_SUBJECT_RE.match(subject)
    if not render and not shot:
        return
    post_id = int((render or shot).group(1))
    shot_id = int(shot.group(2)) if shot else None
    if not finished:
        if event == "progress" or (event == "status" and status == JobStatus.RUNNING):
            publish(
                post_group(post_id),
                "job.progress",
                {"shot_id": shot_id, "job_id": job_id, "status": status, "render": bool(render), **progress},
                progress=event == "progress",
            )
        return
    if render:
        _render_finished(post_id=post_id, job_id=job_id, status=status, error=error)
    else:
        _shot_job_finished(
            post_id=post_id,
            shot_id=shot_id,
            what=shot.group(3),
            key=shot.group(4),
            job_id=job_id,
            status=status,
            error=error,
        )


def _wav_seconds(path) -> float:
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / float(audio.getframerate())


@transaction.atomic
def _shot_job_finished(*, post_id: int, shot_id: int, what: str, key: str, job_id: int, status: str, error) -> None:
    # Lock the post first: two shots finishing at once must not both think they were the last.
    post = Post.objects.select_for_update(of=("self",)).filter(pk=post_id).first()
    shot = (
        Shot.objects.select_for_update(of=("self",))
        .select_related("job", "voice_job")
        .filter(pk=shot_id, post_id=post_id)
        .first()
    )
    if post is None or shot is None:
        return
    # Only the shot's current job may settle it: a late answer from an older job changes nothing.
    if (shot.voice_job_id if what == "voice" else shot.job_id) != job_id:
        return
    output = JobOutput.objects.filter(job_id=job_id).order_by("attempt", "node_id", "index").last()
    label = "voice" if what == "voice" else "picture"
    problem = ""
    if status == JobStatus.SUCCEEDED and output is not None:
        if what == "voice":
            shot.voice_asset.name, shot.voice_key = output.file.name, key
            seconds = Decimal(str(_wav_seconds(output.file.path))).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
            # The voice sets the shot's length: the picture is held for as long as the artist speaks.
            shot.duration_seconds = min(max(seconds, Decimal("0.10")), MAX_SHOT_SECONDS)
        else:
            shot.generated_asset.name, shot.picture_key = output.file.name, key
    else:
        message = (error or {}).get("message") or "it finished without a file"
        problem = f"Shot {shot.position}: {label} failed: {message}"
        shot.error = problem
    shot.status = ShotStatus.FAILED if shot.error else (ShotStatus.PRODUCING if _is_waiting(shot) else ShotStatus.READY)
    shot.save(update_fields=SETTLED_FIELDS)
    services._record(
        post=post,
        kind=PostEvent.Kind.STORYBOARD,
        actor=None,
        note=problem or f"Shot {shot.position}: {label} ready",
    )
    publish(
        post_group(post_id), "job.finished", {"shot_id": shot_id, "job_id": job_id, "status": status, "error": error}
    )
    if post.status != PostStatus.RENDERING:
        return  # made for the page's button, or production already failed: the shot keeps it for next time
    if problem:
        _fail(post_id, problem)
    elif not _post_waiting(post_id):
        _enqueue_render(post, None)


def _post_waiting(post_id: int) -> bool:
    return Shot.objects.filter(
        Q(job__status__in=UNFINISHED) | Q(voice_job__status__in=UNFINISHED), post_id=post_id
    ).exists()


@transaction.atomic
def _render_finished(*, post_id: int, job_id: int, status: str, error) -> None:
    post = Post.objects.select_for_update(of=("self",)).filter(pk=post_id, render_job_id=job_id).first()
    if post is None or post.status != PostStatus.RENDERING:
        return  # an older render, or the post moved on
    output = JobOutput.objects.filter(job_id=job_id).order_by("attempt", "index").last()
    if status == JobStatus.SUCCEEDED and output is not None:
        Post.objects.filter(pk=post_id).update(final_video=output.file.name)
        services.post_transition(post_id=post_id, to_status=PostStatus.DONE, actor=None, note="Rendered.")
        webhooks.render_done(post_id=post_id, job_id=job_id)
    else:
        _fail(post_id, f"Render failed: {(error or {}).get('message') or 'no video was written'}")
    publish(post_group(post_id), "job.finished", {"shot_id": None, "job_id": job_id, "status": status, "error": error})
