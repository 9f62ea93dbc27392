"""Production of a post's shots through the factory, and the factory's news fed back to the page.

A shot's picture is a factory job with subject "post.<id>/shot.<id>", made from the
workflow template mapped to the shot's kind (ShotWorkflow, editable in the admin),
with parameters built from the shot and its artist. The factory reports through
factory.signals.job_changed; `on_job_changed` turns that into shot state and pushes.
"""

import hashlib
import logging
import re

from django.core.exceptions import ValidationError
from django.db import transaction

from factory.models import JobOutput, JobStatus
from factory.services import job_enqueue, template_latest
from mcn_site.realtime import post_group, publish
from posts.models import Post, PostEvent, Shot, ShotStatus, ShotWorkflow
from posts.services import _ensure_editable, _record

log = logging.getLogger(__name__)

SUBJECT_RE = re.compile(r"^post\.(\d+)/shot\.(\d+)$")
STORYBOARD_RE = re.compile(r"^post\.(\d+)/storyboard$")
ASPECT_SIZES = {"9:16": (1080, 1920), "16:9": (1920, 1080), "1:1": (1080, 1080)}


def shot_subject(shot: Shot) -> str:
    return f"post.{shot.post_id}/shot.{shot.pk}"


def shot_parameters(shot: Shot, declared: dict) -> dict:
    """What a shot template may ask for, limited to the placeholders it declares."""
    post, artist = shot.post, shot.post.artist
    wardrobe = (post.wardrobe.comfy_payload or {}) if post.wardrobe_id else {}
    width, height = ASPECT_SIZES["9:16"]
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


@transaction.atomic
def shot_generate_picture(*, shot_id: int, actor) -> Shot:
    """Queue the factory job that produces this shot's picture (refused for locked or manual shots)."""
    shot = Shot.objects.select_for_update(of=("self",)).select_related("post__artist", "post__wardrobe").get(pk=shot_id)
    _ensure_editable(shot.post)
    if shot.locked:
        raise ValidationError(f"Shot {shot.position} is locked: unlock it to produce it again.")
    if shot.manual_asset:
        raise ValidationError(f"Shot {shot.position} uses a manual asset: remove it to generate a picture.")
    mapping = ShotWorkflow.objects.filter(kind=shot.kind).first()
    if mapping is None:
        raise ValidationError(
            f"No workflow is set for {shot.get_kind_display()} shots: ops set one under Posts > Shot workflows."
        )
    template = template_latest(mapping.template_name)
    job = job_enqueue(
        template=template,
        params=shot_parameters(shot, template.placeholders),
        subject=shot_subject(shot),
        created_by=actor,
    )
    Shot.objects.filter(pk=shot.pk).update(job=job, status=ShotStatus.PRODUCING)
    shot.job, shot.status = job, ShotStatus.PRODUCING
    _record(post=shot.post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=f"Shot {shot.position}: picture queued")
    return shot


def on_job_changed(sender, *, job_id, subject, status, event, progress, error, **kwargs) -> None:
    """factory.signals.job_changed receiver: shot state and pushes for jobs made for a shot."""
    storyboard = STORYBOARD_RE.match(subject or "")
    if storyboard:
        # The director's job: the page shows it working, and re-reads the storyboard when it ends.
        event_name = (
            "job.finished"
            if status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
            else ("job.progress")
        )
        publish(
            post_group(int(storyboard.group(1))),
            event_name,
            {"shot_id": None, "job_id": job_id, "status": status, "error": error},
        )
        return
    match = SUBJECT_RE.match(subject or "")
    if not match:
        return
    post_id, shot_id = int(match.group(1)), int(match.group(2))
    group = post_group(post_id)
    if event == "progress" or (event == "status" and status == JobStatus.RUNNING):
        publish(
            group,
            "job.progress",
            {"shot_id": shot_id, "job_id": job_id, "status": status, **progress},
            progress=event == "progress",
        )
        return
    if status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}:
        return
    _shot_finished(post_id=post_id, shot_id=shot_id, job_id=job_id, status=status, error=error)


@transaction.atomic
def _shot_finished(*, post_id: int, shot_id: int, job_id: int, status: str, error: dict | None) -> None:
    # Only the shot's current job may settle it: a late message from an older job changes nothing.
    shot = Shot.objects.select_for_update(of=("self",)).filter(pk=shot_id, post_id=post_id, job_id=job_id).first()
    if shot is None:
        return
    if status == JobStatus.SUCCEEDED:
        output = JobOutput.objects.filter(job_id=job_id).order_by("attempt", "node_id", "index").last()
        shot.generated_asset.name = output.file.name if output else ""
        shot.status = ShotStatus.READY if output else ShotStatus.FAILED
    else:
        shot.status = ShotStatus.FAILED
    shot.save(update_fields=["generated_asset", "status", "updated_at"])
    post = Post.objects.get(pk=post_id)
    note = f"Shot {shot.position}: picture {'ready' if shot.status == ShotStatus.READY else 'failed'}"
    if error:
        note += f" ({error['message']})"
    _record(post=post, kind=PostEvent.Kind.STORYBOARD, actor=None, note=note)
    publish(
        post_group(post_id), "job.finished", {"shot_id": shot_id, "job_id": job_id, "status": status, "error": error}
    )
