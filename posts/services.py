"""Every write to posts and storyboards goes through here.

Each service is one transaction. Post writes are optimistic: the caller says
which `version` it edited, and a write based on an older version is refused
with a ConcurrentEditError that names who changed the post and when.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, F, Max, Model
from django.utils import timezone
from django.utils.formats import date_format

from mcn_site.lib.roles import can_review
from mcn_site.lib.text import refuse_nul
from mcn_site.realtime import post_group, publish
from posts import webhooks
from posts.models import (
    ALLOWED_TRANSITIONS,
    EDITABLE_STATUSES,
    REVIEW_TRANSITIONS,
    Post,
    PostEvent,
    PostStatus,
    Shot,
    ShotWorkflow,
)

POST_EDITABLE_FIELDS = ("title", "artist", "wardrobe", "brief", "source_content", "created_from_source")


class ConcurrentEditError(ValidationError):
    """Somebody saved the post after the caller loaded it."""

    def __init__(self, current: Post):
        who = current.updated_by.get_username() if current.updated_by else "the system"
        when = date_format(timezone.localtime(current.updated_at), "DATETIME_FORMAT")
        super().__init__(
            f"{who} changed this post at {when} (now version {current.version}). "
            "Reload to see their changes; nothing was overwritten.",
            code="stale",
        )
        self.current_version = current.version


class TransitionError(ValidationError):
    """A status change the workflow does not allow."""


def _claim_version(*, post_id: int, expected_version: int, actor) -> int:
    """Bump the post's version if it is still `expected_version`; return the new version.

    Race: two editors save from the same version. The conditional UPDATE lets exactly
    one of them through; the other matches no row and gets ConcurrentEditError.
    """
    updated = Post.objects.filter(pk=post_id, version=expected_version).update(
        version=F("version") + 1, updated_by=actor, updated_at=timezone.now()
    )
    if not updated:
        raise ConcurrentEditError(Post.objects.select_related("updated_by").get(pk=post_id))
    return expected_version + 1


def post_check_version(*, post_id: int, expected_version: int) -> None:
    """Lock the post for the rest of the transaction and refuse if it moved on.

    Forms call this from clean() so the editor sees the refusal next to their
    unsaved input; the lock stops anyone sneaking in before the save.
    """
    current = Post.objects.select_for_update(of=("self",)).select_related("updated_by").get(pk=post_id)
    if current.version != expected_version:
        raise ConcurrentEditError(current)


def _record(
    *, post: Post, kind: str, actor, note: str = "", from_status: str = "", to_status: str = "", push: bool = True
) -> PostEvent:
    """Append to the post's trail and tell open storyboard pages (after commit) to refresh (unless `push=False`)."""
    event = PostEvent.objects.create(
        post=post, kind=kind, actor=actor, note=note, from_status=from_status, to_status=to_status
    )
    if not push:
        return event
    publish(
        post_group(post.pk),
        "post.changed",
        {
            "version": Post.objects.values_list("version", flat=True).get(pk=post.pk),
            "by": actor.get_username() if actor else "",
            "kind": kind,
            "note": note,
        },
    )
    return event


@transaction.atomic
def post_create(*, actor, title: str, artist, wardrobe=None, brief: str = "", **extra) -> Post:
    """Create a draft post and record who made it."""
    post = Post(title=title, artist=artist, wardrobe=wardrobe, brief=brief, updated_by=actor, **extra)
    # full_clean costs a query per foreign key and per named constraint (each in a savepoint on
    # PostgreSQL): a third of a scheduler tick (bench B8). Skipped only where it cannot fail here:
    # - status, version and sanity_id keep the defaults the constraints allow, unless the caller set them;
    # - a foreign key given as a row the caller holds was read from the database just now (the
    #   database's own foreign-key constraint still refuses one deleted since).
    # Post.clean() (the wardrobe rule) always runs.
    defaults = [name for name in ("status", "version", "sanity_id") if name not in extra]
    held = [
        name
        for name in ("artist", "wardrobe", "created_from_schedule", "created_from_source", "updated_by")
        if isinstance(getattr(post, name), Model) and getattr(post, name).pk is not None
    ]
    post.full_clean(exclude=defaults + held)
    post.save()
    # No page can be open on a post that did not exist: nothing to push.
    _record(post=post, kind=PostEvent.Kind.CREATED, actor=actor, to_status=post.status, push=False)
    return post


@transaction.atomic
def post_update(*, post: Post, actor, expected_version: int, data: dict) -> Post:
    """Apply edits to a post's fields; refuses a stale version or an invalid combination."""
    unknown = set(data) - set(POST_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"These fields cannot be edited here: {', '.join(sorted(unknown))}.")
    changed = [name for name, value in data.items() if getattr(post, name) != value]
    for name, value in data.items():
        setattr(post, name, value)
    post.full_clean()
    post.version = _claim_version(post_id=post.pk, expected_version=expected_version, actor=actor)
    post.updated_by = actor
    post.save(update_fields=[*data, "updated_at"])
    if changed:
        _record(post=post, kind=PostEvent.Kind.EDITED, actor=actor, note="Changed: " + ", ".join(changed))
    return post


@transaction.atomic
def post_transition(
    *, post_id: int, to_status: str, actor, note: str = "", expected_version: int | None = None
) -> Post:
    """Move a post to `to_status` if the workflow and the actor's role allow it.

    `actor=None` is the system (the factory finishing a render); review decisions
    always need a person with the reviewer role.
    """
    refuse_nul(**{"feedback" if to_status == PostStatus.REJECTED else "note": note})
    # Race: two reviewers decide at once, or a producer edits while a reviewer approves.
    # The row lock serialises them; the second sees the first one's status.
    post = Post.objects.select_for_update(of=("self",)).select_related("updated_by").get(pk=post_id)
    if expected_version is not None and post.version != expected_version:
        raise ConcurrentEditError(post)
    from_status = post.status
    if to_status not in PostStatus.values:
        raise TransitionError(f"“{to_status}” is not a post status.", code="bad_status")
    if to_status not in ALLOWED_TRANSITIONS[from_status]:
        allowed = ", ".join(PostStatus(s).label for s in sorted(ALLOWED_TRANSITIONS[from_status])) or "nothing"
        raise TransitionError(
            f"A post that is {PostStatus(from_status).label.lower()} cannot become "
            f"{PostStatus(to_status).label.lower()} (it can become: {allowed.lower()}).",
            code="bad_transition",
        )
    if (from_status, to_status) in REVIEW_TRANSITIONS and not can_review(actor):
        raise PermissionDenied("Only reviewers may approve or reject a post.")
    note = note.strip()
    if to_status == PostStatus.REJECTED:
        if not note:
            raise ValidationError({"feedback": "Say what to change: the feedback goes to the rewrite."})
        post.feedback = note
    now = timezone.now()
    post.status = to_status
    post.status_changed_at = now
    post.version += 1
    post.updated_by = actor
    post.save(update_fields=["status", "status_changed_at", "feedback", "version", "updated_by", "updated_at"])
    _record(post=post, kind=PostEvent.Kind.STATUS, actor=actor, note=note, from_status=from_status, to_status=to_status)
    webhooks.post_status_changed(post=post, from_status=from_status, actor=actor)
    return post


@transaction.atomic
def post_submit_for_review(*, post_id: int, actor, expected_version: int | None = None) -> Post:
    post = post_transition(post_id=post_id, to_status=PostStatus.REVIEW, actor=actor, expected_version=expected_version)
    # Checked under the row lock post_transition took: nobody can empty the storyboard in between.
    if not post.shots.exists():
        raise ValidationError("A post needs at least one shot before it can be reviewed.", code="empty_storyboard")
    return post


def post_approve(*, post_id: int, actor, note: str = "", expected_version: int | None = None) -> Post:
    return post_transition(
        post_id=post_id, to_status=PostStatus.APPROVED, actor=actor, note=note, expected_version=expected_version
    )


def post_reject(*, post_id: int, actor, feedback: str, expected_version: int | None = None) -> Post:
    return post_transition(
        post_id=post_id, to_status=PostStatus.REJECTED, actor=actor, note=feedback, expected_version=expected_version
    )


@dataclass
class StoryboardChange:
    """What an editor did to a storyboard in one save: shots to keep/add (in order) and to delete."""

    shots: list[Shot]  # every shot that remains, in the new playing order (unsaved new ones included)
    deleted: list[Shot] = field(default_factory=list)


def _ensure_editable(post: Post) -> None:
    if post.status not in EDITABLE_STATUSES:
        raise ValidationError(
            f"The storyboard of a post that is {post.get_status_display().lower()} cannot be edited. "
            "Move it back to draft first.",
            code="not_editable",
        )


@transaction.atomic
def storyboard_apply(*, post: Post, actor, expected_version: int, change: StoryboardChange) -> Post:
    """Save a whole storyboard edit: deletions, edits, new shots and the new order.

    Positions come out dense (1..n) and unique whatever the editor typed.
    Locked shots can be moved but not edited or deleted: unlock them first.
    """
    _ensure_editable(post)
    _ensure_within_cap(len(change.shots))
    originals = {s.pk: s for s in Shot.objects.filter(post=post)}
    problems = storyboard_problems(originals=originals, change=change)
    if problems:
        raise ValidationError(problems, code="locked")
    new_version = _claim_version(post_id=post.pk, expected_version=expected_version, actor=actor)
    Shot.objects.filter(pk__in=[s.pk for s in change.deleted if s.pk]).delete()
    _renumber(post=post, shots=change.shots)
    post.version = new_version  # only once everything is saved: a refused edit leaves the caller's copy as it was
    _record(post=post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=_summary(change, originals))
    return post


def _ensure_within_cap(count: int) -> None:
    cap = settings.MCN_MAX_SHOTS_PER_POST
    if count > cap:
        raise ValidationError(
            f"A post has at most {cap} shots (MCN_MAX_SHOTS_PER_POST); this storyboard would have {count}. "
            "Merge or delete shots first.",
            code="too_many_shots",
        )


def storyboard_problems(*, originals: dict[int, Shot], change: StoryboardChange) -> list[str]:
    """Why a storyboard edit may not be saved: it deletes or edits a locked shot."""
    problems = []
    for shot in change.deleted:
        original = originals.get(shot.pk)
        if original and original.locked:
            problems.append(f"Shot {original.position} is locked: unlock it before deleting it.")
    for shot in change.shots:
        original = originals.get(shot.pk)
        if original and original.locked and shot.locked and _content_changed(original, shot):
            problems.append(f"Shot {original.position} is locked: unlock it before editing it.")
    return problems


def _content_changed(original: Shot, edited: Shot) -> bool:
    fields = ("kind", "duration_seconds", "script", "visual_prompt", "manual_asset")
    return any(getattr(original, f) != getattr(edited, f) for f in fields)


def _summary(change: StoryboardChange, originals: dict) -> str:
    added = sum(1 for s in change.shots if s.pk not in originals)
    parts = [f"{len(change.shots)} shots"]
    if added:
        parts.append(f"{added} added")
    if change.deleted:
        parts.append(f"{len(change.deleted)} deleted")
    return ", ".join(parts)


def _renumber(*, post: Post, shots: Iterable[Shot]) -> None:
    """Save `shots` at positions 1..n in the given order.

    The (post, position) unique constraint is checked per row, so existing shots
    first park above every position in use now or after (positions cannot be
    negative: PositiveIntegerField has a CHECK >= 0), then take their final ones.
    """
    shots = list(shots)
    existing = [s for s in shots if s.pk]
    park = max(Shot.objects.filter(post=post).aggregate(top=Max("position"))["top"] or 0, len(shots))
    for offset, shot in enumerate(existing, start=1):
        Shot.objects.filter(pk=shot.pk).update(position=park + offset)
    for position, shot in enumerate(shots, start=1):
        shot.post = post
        shot.position = position
        shot.full_clean(exclude=["position"], validate_constraints=False)
        shot.save()


@transaction.atomic
def shots_reorder(*, post: Post, actor, expected_version: int, shot_ids: list[int]) -> Post:
    """Put the post's shots in the order of `shot_ids` (which must name each shot once)."""
    _ensure_editable(post)
    shots = {s.pk: s for s in Shot.objects.filter(post=post)}
    if sorted(shot_ids) != sorted(shots):
        raise ValidationError("The new order must list every shot of this post exactly once.", code="bad_order")
    post.version = _claim_version(post_id=post.pk, expected_version=expected_version, actor=actor)
    _renumber(post=post, shots=[shots[i] for i in shot_ids])
    _record(post=post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note="Shots reordered")
    return post


@transaction.atomic
def shot_set_locked(*, shot: Shot, actor, locked: bool, expected_version: int) -> Shot:
    """Lock or unlock one shot (locking is allowed in any status: it protects work)."""
    post = shot.post
    post.version = _claim_version(post_id=post.pk, expected_version=expected_version, actor=actor)
    Shot.objects.filter(pk=shot.pk).update(locked=locked, updated_at=timezone.now())
    shot.locked = locked
    note = f"Shot {shot.position} {'locked' if locked else 'unlocked'}"
    _record(post=post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=note)
    return shot


def _current_order(post: Post) -> list[Shot]:
    return list(Shot.objects.filter(post=post).order_by("position"))


SHOT_FIELDS = ("kind", "duration_seconds", "script", "visual_prompt", "manual_asset", "locked")


def shot_save(
    *, post: Post, actor, expected_version: int, data: dict, shot_id: int | None = None, position: int | None = None
) -> Shot:
    """Create a shot (shot_id None; at `position`, default last) or edit one, under every storyboard rule."""
    unknown = set(data) - set(SHOT_FIELDS)
    if unknown:
        raise ValidationError(f"These shot fields cannot be set: {', '.join(sorted(unknown))}.")
    if shot_id is None:
        return _shot_add(post=post, actor=actor, expected_version=expected_version, data=data, position=position)
    shots = _current_order(post)
    shot = next((s for s in shots if s.pk == shot_id), None)
    if shot is None:
        raise ValidationError("This shot is not part of the post any more.", code="gone")
    for name, value in data.items():
        setattr(shot, name, value)
    storyboard_apply(post=post, actor=actor, expected_version=expected_version, change=StoryboardChange(shots=shots))
    return shot


@transaction.atomic
def _shot_add(*, post: Post, actor, expected_version: int, data: dict, position: int | None) -> Shot:
    """Insert one shot at `position` (1 = first; default or past the end: last) in a fixed number of
    statements, whatever the storyboard's length: the shots after it move down in two UPDATEs."""
    _ensure_editable(post)
    # The version claim locks the post's row: a concurrent add or edit waits, then finds a new version.
    new_version = _claim_version(post_id=post.pk, expected_version=expected_version, actor=actor)
    stats = Shot.objects.filter(post=post).aggregate(count=Count("pk"), top=Max("position"))
    _ensure_within_cap(stats["count"] + 1)
    top = stats["top"] or 0
    shot = Shot(post=post, **data)
    shot.position = top + 1 if position is None or position > top else max(position, 1)
    # Validated as saved; the post is the locked row (no lookup), the database holds the unique position.
    shot.full_clean(exclude=["post", "position"], validate_unique=False, validate_constraints=False)
    if shot.position <= top:
        # (post, position) is unique row by row, so the shots from `position` on first park above every
        # position in use (positions cannot be negative), then land one below where they were.
        after = Shot.objects.filter(post=post, position__gte=shot.position)
        after.update(position=F("position") + top + 1)
        Shot.objects.filter(post=post, position__gt=top).update(position=F("position") - top)
    shot.save(force_insert=True)
    post.version = new_version
    note = f"{stats['count'] + 1} shots, 1 added"  # as storyboard_apply sums up an edit
    _record(post=post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=note)
    return shot


def shot_delete(*, post: Post, actor, expected_version: int, shot_id: int) -> None:
    shots = _current_order(post)
    doomed = [s for s in shots if s.pk == shot_id]
    if not doomed:
        raise ValidationError("This shot is not part of the post any more.", code="gone")
    kept = [s for s in shots if s.pk != shot_id]
    storyboard_apply(
        post=post, actor=actor, expected_version=expected_version, change=StoryboardChange(shots=kept, deleted=doomed)
    )


@transaction.atomic
def shot_workflow_set(
    *, kind: str, step: str, template_name: str, bindings: dict | None = None
) -> tuple[ShotWorkflow, bool]:
    """Map `step` of `kind` shots to a template, validated (ShotWorkflow.clean); returns (mapping, changed).

    A mapping that already says exactly this is left as it is (changed is False), so an install re-run writes
    nothing. A ValidationError names the template and the placeholder at fault.
    """
    # Race: two installs of the same kind and step; the row lock serialises them and the unique
    # (kind, step) constraint refuses a second insert.
    mapping = ShotWorkflow.objects.select_for_update().filter(kind=kind, step=step).first()
    mapping = mapping or ShotWorkflow(kind=kind, step=step)
    unchanged = mapping.pk is not None and (mapping.template_name, mapping.bindings) == (template_name, bindings or {})
    mapping.template_name, mapping.bindings = template_name, bindings or {}
    mapping.full_clean()
    if unchanged:
        return mapping, False
    mapping.save()
    return mapping, True
