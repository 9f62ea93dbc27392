"""Production of a post: voices and pictures per shot through the factory, then the render.

    approve (or retry) ─> post_produce: post -> rendering, then per shot:
      voice    script and COSYVOICE_URL      -> tts job      "post.<id>/shot.<id>/voice@<key>"
               (no voice server: silent, timed by the director's durations)
      picture  manual asset                  -> used as it is
               stored picture of the same key -> kept (a locked shot keeps whatever it has)
               a ShotWorkflow for its kind    -> comfyui job  "post.<id>/shot.<id>/picture@<key>"
               otherwise                      -> a title card, drawn at render time (animatic)
      clip     once the shot's voice and picture are in, a video ShotWorkflow for its kind:
               avatar  (a voice, and a still or the face) -> comfyui job "post.<id>/shot.<id>/avatar@<key>"
               motion  (a still: made or manual)          -> comfyui job "post.<id>/shot.<id>/motion@<key>"
               none mapped                    -> the still with a Ken Burns move (or the title card)
      nothing left to wait for               -> render job   "post.<id>/render"  (posts.assembly)
    factory.signals.job_changed -> on_job_changed: settle the shot, fail the post naming the
      shot, queue the render when the last shot is in, finish the post when the render is.

A key is the hash of everything that goes into a voice, a picture or a clip (a clip's inputs hold
its upstream files: a new voice or still makes a new clip). A shot is produced again
only when its key changes, so a retry resumes where production stopped and a rewritten
storyboard re-produces only the shots whose inputs changed. The key travels in the job's
subject: what a job makes is known from the job alone, even when its answer comes late.
Nothing in a key or a seed comes from a row id or a position (issue 17): the seed is the post's and
the shot's content, so a shot moved, rewritten back to the same words or added again keeps its files,
and before queueing a step production asks the post's content cache (posts.reuse.made_assets): a job
of this post that made, or is making, the same `<step>@<key>` serves every shot that needs it. A locked
shot keeps the voice it has (and the length that voice set) until someone asks for a new one:
shot_revoice.
"""

import hashlib
import json
import logging
import math
import re
import wave
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

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
from posts import costs, services, webhooks
from posts.director.jobs import storyboard_subject
from posts.models import ASPECT_SIZES, Post, PostEvent, PostStatus, Shot, ShotStatus, ShotWorkflow
from posts.reuse import VIDEO_SUFFIXES, Made, made_assets, output_name
from posts.workflows import workflow_parameters

log = logging.getLogger(__name__)

SHOT_SUBJECT_RE = re.compile(r"^post\.(\d+)/shot\.(\d+)/(picture|voice|avatar|motion)@([0-9a-f]{16})$")
STORYBOARD_RE = re.compile(r"^post\.(\d+)/storyboard$")
RENDER_RE = re.compile(r"^post\.(\d+)/render$")
POST_SUBJECT_RE = re.compile(r"^post\.(\d+)/")  # any job made for a post
UNFINISHED = [JobStatus.QUEUED, JobStatus.RUNNING]
SETTLED_FIELDS = [
    *("voice_asset", "voice_key", "duration_seconds", "generated_asset", "picture_key", "generated_clip"),
    *("clip_key", "clip_job", "error", "status", "updated_at"),
]
CLIP_STEPS = (ShotWorkflow.Step.AVATAR, ShotWorkflow.Step.MOTION)
DEFAULT_CLIP_FPS = 25  # a video template whose manifest names no frame rate (InfiniteTalk's own rate)
# A voice the TTS server returns longer than a shot may be (60 s) is cut there by the render.
MAX_SHOT_SECONDS = Decimal("60")


# --------------------------------------------------------------------------- keys and subjects


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shot_subject(shot: Shot, what: str, key: str) -> str:
    return f"post.{shot.post_id}/shot.{shot.pk}/{what}@{key}"


def render_subject(post_id: int) -> str:
    return f"post.{post_id}/render"


def shot_seed(shot: Shot) -> int:
    """The shot's seed: from the post and the shot's content (kind, visual prompt, script), never its row id or
    position, so the same shot written again (or moved) draws the same picture and keeps its key."""
    return int(_digest("seed", shot.post_id, shot.kind, shot.visual_prompt, shot.script)[:8], 16)


def shot_parameters(shot: Shot, declared: dict) -> dict:
    """What a shot template may ask for, limited to the placeholders it declares."""
    return {key: value for key, value in offered_parameters(shot).items() if key in declared}


def offered_parameters(shot: Shot, *, step: str = ShotWorkflow.Step.PICTURE, template=None) -> dict:
    """The contract's values (posts.workflows.PARAMETERS) production has for this shot and step.

    A clip step (avatar, motion) is offered its upstream files: SOURCE_IMAGE (the shot's still, manual or
    made), VOICE_AUDIO (its voice) and, for the avatar, FACE_IMAGE = the still when the shot has one, else the
    artist's face anchor. DURATION is the voice's real length when the shot speaks (the clip the avatar makes
    lasts as long as the voice), FPS the template manifest's `fps` (else 25), FRAMES = DURATION x FPS rounded up.
    """
    post, artist = shot.post, shot.post.artist
    wardrobe = (post.wardrobe.comfy_payload or {}) if post.wardrobe_id else {}
    width, height = ASPECT_SIZES[post.aspect_ratio]
    seed = shot_seed(shot)
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
    if step in CLIP_STEPS:
        still = _still_name(shot)
        seconds = _voice_seconds(shot) or float(shot.duration_seconds)
        fps = int((getattr(template, "manifest", None) or {}).get("fps") or DEFAULT_CLIP_FPS)
        offered.update(DURATION=round(seconds, 3), FPS=fps, FRAMES=max(1, math.ceil(round(seconds * fps, 6))))
        if still:
            offered["SOURCE_IMAGE"] = still
        if shot.voice_asset:
            offered["VOICE_AUDIO"] = shot.voice_asset.name
        if step == ShotWorkflow.Step.AVATAR and still:
            offered["FACE_IMAGE"] = still
    return offered


def _still_name(shot: Shot) -> str:
    """The shot's still as a media name (its manual image, else its made picture); "" when it has none."""
    if shot.manual_asset and not _is_video(shot.manual_asset.name):
        return shot.manual_asset.name
    return "" if shot.manual_asset else shot.generated_asset.name


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_SUFFIXES)


def _voice_seconds(shot: Shot) -> float | None:
    if not shot.voice_asset:
        return None
    try:
        return _wav_seconds(Path(settings.MEDIA_ROOT) / shot.voice_asset.name)
    except (OSError, EOFError, wave.Error):
        return None  # not a readable WAV: the shot's own length stands


def picture_values(shot: Shot, mapping: ShotWorkflow, template: WorkflowTemplate) -> dict:
    """The picture template's values for this shot, through the mapping's bindings (ValidationError names
    the shot, the step and the template when one has no value)."""
    try:
        return workflow_parameters(mapping, offered_parameters(shot), template=template)
    except ValidationError as error:
        message = " ".join(error.messages)
        raise ValidationError(f"{_describe_step(shot, 'picture', template.name)}: {message}") from None


def picture_key(template: WorkflowTemplate, values: dict) -> str:
    return _digest("picture", template.name, template.version, values)


def voice_parameters(shot: Shot) -> dict:
    """The TTS job's plain-data params: zero-shot from the voice's sample, else its speaker id."""
    voice = shot.post.artist.voice
    if voice.sample_audio:
        return {"text": shot.script, "prompt_text": voice.sample_transcription, "prompt_wav": voice.sample_audio.name}
    return {"text": shot.script, "spk_id": voice.speaker_id}


def voice_key(shot: Shot) -> str:
    return _digest("voice", voice_parameters(shot), settings.COSYVOICE_SAMPLE_RATE)


def _step_workflow(shot: Shot, step: str) -> tuple[ShotWorkflow, WorkflowTemplate] | None:
    """The mapping for this shot's kind and step with its template's latest version; None when none is mapped.

    A mapping whose template has no active version any more (deactivated or deleted since it was saved) is a
    ValidationError naming the shot, the step and the template, never a silent title card or still.
    """
    mapping = ShotWorkflow.objects.filter(kind=shot.kind, step=step).first()
    if mapping is None:
        return None
    try:
        return mapping, template_latest(mapping.template_name)
    except ValidationError as error:
        raise ValidationError(
            f"{_describe_step(shot, step, mapping.template_name)}: {' '.join(error.messages)} "
            "Import the template again, or change the mapping under Posts > Shot workflows."
        ) from None


def _describe_step(shot: Shot, step: str, template_name: str = "") -> str:
    """ "Shot 3 (B-roll), motion step, template wan22_i2v": what a failure message starts with."""
    kind = shot.get_kind_display().split(" (")[0]  # "B-roll", not "B-roll (cutaway)"
    where = f"Shot {shot.position} ({kind}), {step} step"
    return f"{where}, template {template_name}" if template_name else where


def _clip_plan(shot: Shot, workflows: dict) -> tuple[str, WorkflowTemplate, dict] | None:
    """The video step that makes this shot's clip now, its template and values; None when none applies.

    Called once the shot's voice and picture are in. Avatar: a spoken shot (it has its voice) with a still or
    the artist's face. Motion: a shot with a still. A manual video is the shot's clip as it is. `workflows`
    caches (kind, step) -> mapping for the rest of the post. Raises ValidationError (naming the shot, step and
    template) when the mapping leaves a placeholder without a value.
    """
    if shot.manual_asset and _is_video(shot.manual_asset.name):
        return None
    still = _still_name(shot)
    for step in CLIP_STEPS:
        if (shot.kind, step) not in workflows:
            workflows[shot.kind, step] = _step_workflow(shot, step)
        found = workflows[shot.kind, step]
        if found is None:
            continue
        if step == ShotWorkflow.Step.AVATAR and not (shot.voice_asset and shot.script.strip()):
            continue
        if step == ShotWorkflow.Step.AVATAR and not (still or shot.post.artist.face_anchor):
            continue
        if step == ShotWorkflow.Step.MOTION and not still:
            continue
        mapping, template = found
        offered = offered_parameters(shot, step=step, template=template)
        try:
            params = workflow_parameters(mapping, offered, template=template)
        except ValidationError as error:
            raise ValidationError(f"{_describe_step(shot, step, template.name)}: {' '.join(error.messages)}") from None
        return step, template, params
    return None


def _clip_need(shot: Shot, workflows: dict) -> tuple[str, JobRequest] | None:
    """The clip job this shot lacks (None when it has it, is making it, or no video step applies).

    A shot no video step applies to any more drops its old clip (unless locked): the render then shows its
    still, as it did before a video workflow was mapped. The caller saves the shot.
    """
    plan = _clip_plan(shot, workflows)
    if plan is None:
        if shot.generated_clip and not shot.locked:
            shot.generated_clip, shot.clip_key = "", ""
        return None
    step, template, params = plan
    key = _digest("clip", step, template.name, template.version, params)
    subject = shot_subject(shot, step, key)
    if shot.generated_clip and (shot.clip_key == key or shot.locked):
        return None
    if _waiting_for(shot.clip_job, subject):
        return None
    return "clip_job", JobRequest(template=template, params=params, subject=subject)


def _waiting_for(job: Job | None, subject: str) -> bool:
    """Whether this job, still running, is making exactly what we need (same subject, same key)."""
    return job is not None and job.subject == subject and job.status not in TERMINAL_STATUSES


# --------------------------------------------------------------------------- one shot's picture (page button)


@transaction.atomic
def shot_generate_picture(*, shot_id: int, actor) -> Shot:
    """Queue the factory job that produces this shot's picture (refused for locked or manual shots)."""
    shot = Shot.objects.select_for_update(of=("self",)).select_related("post__artist", "post__wardrobe").get(pk=shot_id)
    services._ensure_editable(shot.post)
    costs.budget_check(post_id=shot.post_id)  # a month over budget starts no new work (ops lift it)
    if shot.locked:
        raise ValidationError(f"Shot {shot.position} is locked: unlock it to produce it again.")
    if shot.manual_asset:
        raise ValidationError(f"Shot {shot.position} uses a manual asset: remove it to generate a picture.")
    mapping = ShotWorkflow.objects.filter(kind=shot.kind, step=ShotWorkflow.Step.PICTURE).first()
    if mapping is None:
        raise ValidationError(
            f"No workflow is set for {shot.get_kind_display()} shots: ops set one under Posts > Shot workflows."
        )
    template = template_latest(mapping.template_name)
    values = picture_values(shot, mapping, template)
    shot.job = job_enqueue(
        template=template,
        params=values,
        subject=shot_subject(shot, "picture", picture_key(template, values)),
        created_by=actor,
    )
    Shot.objects.filter(pk=shot.pk).update(job=shot.job, status=ShotStatus.PRODUCING, error="")
    shot.status = ShotStatus.PRODUCING
    services._record(
        post=shot.post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=f"Shot {shot.position}: picture queued"
    )
    return shot


@transaction.atomic
def shot_revoice(*, shot_id: int, actor) -> Shot:
    """Queue a new take of this shot's voice, locked or not: the one way a locked shot's voice changes.

    Production keeps a locked shot's voice (and the length it set) whatever changed since; this asks the voice
    server again with the shot's script and the artist's voice as they are now. When it lands, the new voice
    sets the shot's length, and a locked shot's clip (cut to the old voice) is dropped to be made again.
    """
    shot = (
        Shot.objects.select_for_update(of=("self",)).select_related("post__artist__voice", "voice_job").get(pk=shot_id)
    )
    services._ensure_editable(shot.post)
    costs.budget_check(post_id=shot.post_id)  # a new take is new work: refused over budget like the rest
    if not shot.script.strip():
        raise ValidationError(f"Shot {shot.position} has no script: there is nothing to say.")
    if not settings.COSYVOICE_URL:
        raise ValidationError("No voice server is configured (COSYVOICE_URL): ops set one to make voices.")
    if shot.voice_job is not None and shot.voice_job.status not in TERMINAL_STATUSES:
        raise ValidationError(f"Shot {shot.position}'s voice is being made already.")
    shot.voice_job = job_enqueue_task(
        kind=JobKind.TTS,
        params=voice_parameters(shot),
        subject=shot_subject(shot, "voice", voice_key(shot)),
        created_by=actor,
    )
    Shot.objects.filter(pk=shot.pk).update(voice_job=shot.voice_job, status=ShotStatus.PRODUCING, error="")
    shot.status = ShotStatus.PRODUCING
    services._record(
        post=shot.post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=f"Shot {shot.position}: new voice queued"
    )
    return shot


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
    costs.budget_check(post_id=post_id)  # a month over budget starts no new work (ops lift it)
    post = services.post_transition(
        post_id=post_id, to_status=PostStatus.RENDERING, actor=actor, expected_version=expected_version
    )
    Post.objects.filter(pk=post.pk).update(failure="", render_job=None)
    post.failure, post.render_job = "", None
    shots = list(
        Shot.objects.select_for_update(of=("self",))
        .filter(post=post)
        .select_related("post__artist__voice", "post__wardrobe", "job", "voice_job", "clip_job")
        .order_by("position")
    )
    # Every job of every shot queued together: one INSERT for the rows, one Redis pipeline after
    # commit (bench B9: job by job, approving a post of 10 shots cost ~100 statements).
    workflows: dict[tuple[str, str], tuple | None] = {}
    made = made_assets(post_id=post.pk)  # what this post's jobs made or are making, by step and key
    # Two shots that need the same thing (same step and key) in this round share one job.
    requests: dict[str, JobRequest] = {}
    planned = []
    for shot in shots:
        for field, request in _plan_shot(shot, workflows, made):
            planned.append((shot, field, requests.setdefault(_step_key(request.subject), request)))
    jobs = dict(zip(requests, jobs_enqueue(requests=list(requests.values()), created_by=actor), strict=True))
    for shot, field, request in planned:
        setattr(shot, field, jobs[_step_key(request.subject)])
    now = timezone.now()
    for shot in shots:
        shot.error = ""
        shot.status = ShotStatus.PRODUCING if _is_waiting(shot) else ShotStatus.READY
        shot.updated_at = now  # bulk_update does not touch auto_now fields
    Shot.objects.bulk_update(shots, ["job", "voice_job", *SETTLED_FIELDS])
    started = [job.pk for job in jobs.values()]
    waiting = sum(_is_waiting(shot) for shot in shots)
    plan = f"{len(started)} job(s) queued for {len(shots)} shot(s)"
    if waiting:
        services._record(post=post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=f"Production: {plan}.")
    else:
        started.append(_enqueue_render(post, actor).pk)
    post.started_jobs = started
    return post


def _plan_shot(shot: Shot, workflows: dict, made: dict[str, Made]) -> list[tuple[str, JobRequest]]:
    """What this shot lacks, as (the shot's job field, the job to queue); none when everything is in the cache.

    The clip (a video step) comes only once the voice and the picture are in: when they are still to be
    made, _shot_job_finished plans it as the last of them arrives. `workflows` remembers each (kind, step)
    mapping for the rest of the post (two queries a kind and step, not a shot). A step the post's content
    cache `made` holds is not queued: the shot takes its file, or waits for the job making it.
    A locked shot keeps the voice it has whatever changed (the artist's voice, the sample rate): a new
    take is asked for by hand (shot_revoice).
    """
    needs = []
    if shot.script.strip() and settings.COSYVOICE_URL:
        key = voice_key(shot)
        subject = shot_subject(shot, "voice", key)
        kept = shot.voice_asset and (shot.voice_key == key or shot.locked)
        if not kept and not _waiting_for(shot.voice_job, subject):
            request = JobRequest(kind=JobKind.TTS, params=voice_parameters(shot), subject=subject)
            if not _serve(shot, "voice_job", request, made):
                needs.append(("voice_job", request))
    if not shot.manual_asset:
        if (shot.kind, ShotWorkflow.Step.PICTURE) not in workflows:
            workflows[shot.kind, ShotWorkflow.Step.PICTURE] = _step_workflow(shot, ShotWorkflow.Step.PICTURE)
        found = workflows[shot.kind, ShotWorkflow.Step.PICTURE]
        if found is not None:
            mapping, template = found
            values = picture_values(shot, mapping, template)
            key = picture_key(template, values)
            subject = shot_subject(shot, "picture", key)
            kept = shot.generated_asset and (shot.picture_key == key or shot.locked)
            if not kept and not _waiting_for(shot.job, subject):
                request = JobRequest(template=template, params=values, subject=subject)
                if not _serve(shot, "job", request, made):
                    needs.append(("job", request))
    if not needs and not _upstream_waiting(shot):
        clip = _clip_need(shot, workflows)
        if clip is not None and not _serve(shot, *clip, made):
            needs.append(clip)
    return needs


def _step_key(subject: str) -> str:
    """ "post.4/shot.9/voice@3f2a..." -> "voice@3f2a...": what a shot job makes, whichever shot asked."""
    return subject.rsplit("/", 1)[-1]


def _serve(shot: Shot, field: str, request: JobRequest, made: dict[str, Made]) -> bool:
    """Serve one step of `shot` from the post's content cache; False when the cache does not have it.

    A job of this post made the same step with the same key (for this row or another: a shot deleted and
    added again, a twin): the shot takes its file now. A job is still making it: the shot waits for that job,
    which settles every shot waiting for it (_shot_job_finished).
    """
    step_key = _step_key(request.subject)
    found = made.get(step_key)
    if found is None:
        return False
    setattr(shot, field, found.job)
    if found.name:
        what, _, key = step_key.partition("@")
        _take(shot, what, key, found.name)
    return True


def _take(shot: Shot, what: str, key: str, name: str) -> None:
    """The shot takes the file `name`, made from inputs hashed as `key`, as its voice, picture or clip."""
    if what == "voice":
        replaced = bool(shot.voice_asset) and shot.voice_asset.name != name
        shot.voice_asset.name, shot.voice_key = name, key
        seconds = Decimal(str(_wav_seconds(shot.voice_asset.path))).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
        # The voice sets the shot's length: the picture is held for as long as the artist speaks.
        shot.duration_seconds = min(max(seconds, Decimal("0.10")), MAX_SHOT_SECONDS)
        if replaced and shot.locked:
            # A locked shot re-voiced by hand: its clip was cut to the old voice (an avatar's lips, a motion's
            # length). It goes, so the next production makes it again; a locked clip is never re-planned.
            shot.generated_clip, shot.clip_key = "", ""
    elif what == "picture":
        shot.generated_asset.name, shot.picture_key = name, key
    else:
        shot.generated_clip.name, shot.clip_key = name, key


def _upstream_waiting(shot: Shot) -> bool:
    """Whether the shot's voice or picture is still being made (its clip waits for both)."""
    return any(job is not None and job.status not in TERMINAL_STATUSES for job in (shot.job, shot.voice_job))


def _is_waiting(shot: Shot) -> bool:
    jobs = (shot.job, shot.voice_job, shot.clip_job)
    return any(job is not None and job.status not in TERMINAL_STATUSES for job in jobs)


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
    shot_jobs = Shot.objects.filter(post_id=post_id).values_list("job_id", "voice_job_id", "clip_job_id")
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
                {
                    "shot_id": shot_id,
                    "job_id": job_id,
                    "status": status,
                    "render": bool(render),
                    # Which step of the shot (voice, picture, avatar, motion): the page draws each on its own line.
                    "step": shot.group(3) if shot else None,
                    **progress,
                },
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
    # Only a shot's current job may settle it: a late answer from an older job changes nothing. The job settles
    # the shot it was queued for (shot_id) and every other shot of the post waiting for the same step and key
    # (a twin, a shot added again: posts.reuse).
    field = {"voice": "voice_job_id", "picture": "job_id"}.get(what, "clip_job_id")
    shots = list(
        Shot.objects.select_for_update(of=("self",))
        .select_related("post__artist__voice", "post__wardrobe", "job", "voice_job", "clip_job")
        .filter(post_id=post_id, **{field: job_id})
        .order_by("position")
    )
    if post is None or not shots:
        return
    names = list(
        JobOutput.objects.filter(job_id=job_id).order_by("attempt", "node_id", "index").values_list("file", flat=True)
    )
    name = output_name(names, step=what)
    made: dict[str, Made] | None = None  # the content cache, read once the first clip is planned
    problems = []
    for shot in shots:
        problem = ""
        if status == JobStatus.SUCCEEDED and name:
            _take(shot, what, key, name)
        else:
            message = (error or {}).get("message") or "it finished without a file"
            # "Shot 3 (B-roll), motion step, template wan22-i2v: ...": the shot, its kind, the step and the
            # template (a voice has none), so a producer knows where to look and ops which workflow to fix.
            template = Job.objects.filter(pk=job_id).values_list("template__name", flat=True).first() or ""
            problem = f"{_describe_step(shot, what, template)}: {message}"
            shot.error = problem
        producing = post.status == PostStatus.RENDERING and not problem
        if producing and what not in CLIP_STEPS and not _upstream_waiting(shot):
            # The voice and the picture are in: the clip they feed (avatar, motion) is made now.
            try:
                clip = _clip_need(shot, {})
            except ValidationError as unbound:
                problem = shot.error = " ".join(unbound.messages)
            else:
                made = made_assets(post_id=post_id) if made is None and clip is not None else made
                if clip is not None and not _serve(shot, *clip, made):
                    (shot.clip_job,) = jobs_enqueue(requests=[clip[1]], created_by=None)
                    made[_step_key(clip[1].subject)] = Made(job=shot.clip_job)  # a twin next in line waits for it
        shot.status = (
            ShotStatus.FAILED if shot.error else (ShotStatus.PRODUCING if _is_waiting(shot) else ShotStatus.READY)
        )
        shot.save(update_fields=SETTLED_FIELDS)
        services._record(
            post=post,
            kind=PostEvent.Kind.STORYBOARD,
            actor=None,
            note=problem or f"Shot {shot.position}: {what} ready",
        )
        publish(
            post_group(post_id),
            "job.finished",
            {"shot_id": shot.pk, "job_id": job_id, "status": status, "error": error, "step": what},
        )
        if problem:
            problems.append(problem)
    if post.status != PostStatus.RENDERING:
        return  # made for the page's button, or production already failed: the shot keeps it for next time
    if problems:
        _fail(post_id, problems[0])
    elif not _post_waiting(post_id):
        _enqueue_render(post, None)


def _post_waiting(post_id: int) -> bool:
    return Shot.objects.filter(
        Q(job__status__in=UNFINISHED) | Q(voice_job__status__in=UNFINISHED) | Q(clip_job__status__in=UNFINISHED),
        post_id=post_id,
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
