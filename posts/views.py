"""The storyboard page and the JSON endpoints it edits through.

Thin views: parse, authorize with the selector (a post you may not see is a
404), call one service, answer with the whole fresh state. Errors come back as
JSON a producer can read: 400 {"error", "fields"}, 403 {"error"} for a role,
409 {"error", "current_version"} when someone else saved first.
"""

import json
from decimal import Decimal, InvalidOperation
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from artists.selectors import artists_visible_to
from posts import pipeline, services
from posts.director.jobs import storyboard_generate
from posts.models import PostStatus, Shot
from posts.selectors import (
    POST_ACTION_PERMS,
    SHOT_PERMS,
    may,
    post_for_page,
    posts_visible_to,
    storyboard_state,
)


def _post_or_404(request, post_id: int):
    post = post_for_page(user=request.user, post_id=post_id)
    if post is None:
        raise Http404("No such post, or you are not a member of its artist.")
    return post


def _body(request) -> dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            raise ValidationError("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ValidationError("The request body must be a JSON object.")
        return data
    return request.POST.dict()


def _version(data: dict) -> int:
    try:
        return int(data["version"])
    except (KeyError, TypeError, ValueError):
        raise ValidationError({"version": "Send the version of the storyboard you edited."}) from None


def _state(request, post_id: int, status: int = 200) -> JsonResponse:
    return JsonResponse(storyboard_state(post=_post_or_404(request, post_id), user=request.user), status=status)


def _error(error: Exception) -> JsonResponse:
    if isinstance(error, services.ConcurrentEditError):
        return JsonResponse(
            {"error": error.messages[0], "code": "stale", "current_version": error.current_version}, status=409
        )
    if isinstance(error, PermissionDenied):
        return JsonResponse({"error": str(error) or "You may not do this."}, status=403)
    fields = error.message_dict if hasattr(error, "error_dict") else {}
    message = " ".join(m for msgs in fields.values() for m in msgs) if fields else " ".join(error.messages)
    return JsonResponse({"error": message, "fields": fields}, status=400)


# What a refused user reads, per permission their role lacks (the first one missing is named).
REFUSALS = {
    "posts.add_shot": "Your role may not add shots to a storyboard.",
    "posts.change_shot": "Your role may not edit storyboards (shots, locks, order, assets, the director).",
    "posts.delete_shot": "Your role may not delete shots.",
    "posts.change_post": "Your role may not change posts.",
    "posts.review_post": "Only reviewers may approve or reject a post.",
}


def edit(perms: tuple[str, ...] | dict[str, tuple[str, ...]]):
    """Run an editing endpoint: authorize, apply, answer with the fresh state or a readable error.

    `perms` are what the user's role needs (posts.selectors, the rule the API applies), or a dict of
    them by the endpoint's `action`. As in the API, the role is asked first (403), then whether the
    user may see the post (404).
    """

    def decorate(view):
        @wraps(view)
        def wrapped(request, post_id: int, *args, **kwargs):
            needed = perms.get(kwargs.get("action"), ()) if isinstance(perms, dict) else perms
            if not may(user=request.user, perms=needed):
                missing = next(p for p in needed if not request.user.has_perm(p))
                return JsonResponse({"error": REFUSALS.get(missing, "Your role may not do this.")}, status=403)
            post = _post_or_404(request, post_id)
            try:
                view(request, post, *args, **kwargs)
            except (ValidationError, PermissionDenied) as error:
                return _error(error)
            return _state(request, post_id)

        return login_required(wrapped)

    return decorate


def _shot_data(data: dict) -> dict:
    """The shot fields a page may send, converted; unknown keys are ignored (version, position)."""
    out = {}
    for name in ("kind", "script", "visual_prompt"):
        if name in data:
            out[name] = str(data[name])
    if "duration" in data:
        try:
            out["duration_seconds"] = Decimal(str(data["duration"])).quantize(Decimal("0.01"))
        except (InvalidOperation, ValueError):
            raise ValidationError({"duration_seconds": "Duration must be a number of seconds."}) from None
    if "locked" in data:
        out["locked"] = data["locked"] in (True, "true", "1", "on")
    return out


# --- pages -------------------------------------------------------------------------------


@login_required
@require_GET
def post_list(request):
    posts = posts_visible_to(user=request.user).select_related("artist").order_by("-updated_at")
    artist_id, status = request.GET.get("artist", ""), request.GET.get("status", "")
    if artist_id.isdecimal():
        posts = posts.filter(artist_id=int(artist_id))
    if status in PostStatus.values:
        posts = posts.filter(status=status)
    return render(
        request,
        "posts/post_list.html",
        {
            "posts": posts[:200],
            "artists": artists_visible_to(user=request.user),
            "statuses": PostStatus.choices,
            "selected": {"artist": artist_id, "status": status},
        },
    )


@login_required
@require_GET
def storyboard(request, post_id: int):
    post = _post_or_404(request, post_id)
    return render(
        request, "posts/storyboard.html", {"post": post, "state": storyboard_state(post=post, user=request.user)}
    )


@login_required
@require_GET
def state(request, post_id: int):
    return _state(request, post_id)


# --- editing endpoints ------------------------------------------------------------------------


@require_POST
@edit(SHOT_PERMS["add"])
def shot_create(request, post):
    data = _body(request)
    position = data.get("position")
    services.shot_save(
        post=post,
        actor=request.user,
        expected_version=_version(data),
        data=_shot_data(data),
        position=int(position) if str(position or "").isdecimal() else None,
    )


@require_http_methods(["POST", "PATCH"])
@edit(SHOT_PERMS["change"])
def shot_update(request, post, shot_id: int):
    data = _body(request)
    services.shot_save(
        post=post, actor=request.user, expected_version=_version(data), data=_shot_data(data), shot_id=shot_id
    )


@require_POST
@edit(SHOT_PERMS["delete"])
def shot_delete(request, post, shot_id: int):
    data = _body(request)
    services.shot_delete(post=post, actor=request.user, expected_version=_version(data), shot_id=shot_id)


@require_POST
@edit(SHOT_PERMS["change"])
def shots_reorder(request, post):
    data = _body(request)
    order = data.get("order")
    if not isinstance(order, list) or not all(str(i).isdecimal() for i in order):
        raise ValidationError({"order": "Send the shot ids in their new order."})
    services.shots_reorder(
        post=post, actor=request.user, expected_version=_version(data), shot_ids=[int(i) for i in order]
    )


@require_POST
@edit(SHOT_PERMS["change"])
def shot_lock(request, post, shot_id: int):
    data = _body(request)
    shot = Shot.objects.filter(post=post, pk=shot_id).first()
    if shot is None:
        raise ValidationError("This shot is not part of the post any more.")
    services.shot_set_locked(
        shot=shot,
        actor=request.user,
        locked=data.get("locked") in (True, "true", "1", "on"),
        expected_version=_version(data),
    )


@require_POST
@edit(SHOT_PERMS["change"])
def shot_asset(request, post, shot_id: int):
    """Upload (multipart field `file`) or remove (`remove=1`) a shot's manual asset."""
    data = _body(request)
    upload = request.FILES.get("file")
    if upload is None and data.get("remove") not in ("1", "true", True):
        raise ValidationError({"manual_asset": "Choose an image or video to upload."})
    services.shot_save(
        post=post,
        actor=request.user,
        expected_version=_version(data),
        data={"manual_asset": upload or ""},
        shot_id=shot_id,
    )


@require_POST
@edit(POST_ACTION_PERMS)
def post_action(request, post, action: str):
    """Move the post to status `action` (submit = review, approve = approved, ...), as the user's role allows."""
    data = _body(request)
    version = _version(data)
    if action == "generate":
        storyboard_generate(post_id=post.pk, actor=request.user, feedback=str(data.get("feedback", "")))
    elif action == PostStatus.REVIEW:
        services.post_submit_for_review(post_id=post.pk, actor=request.user, expected_version=version)
    elif action == PostStatus.APPROVED:
        pipeline.post_approve(
            post_id=post.pk, actor=request.user, note=str(data.get("note", "")), expected_version=version
        )
    elif action == PostStatus.RENDERING:
        pipeline.post_produce(post_id=post.pk, actor=request.user, expected_version=version)
    elif action == PostStatus.REJECTED:
        services.post_reject(
            post_id=post.pk, actor=request.user, feedback=str(data.get("feedback", "")), expected_version=version
        )
    elif action in PostStatus.values:
        services.post_transition(
            post_id=post.pk,
            to_status=action,
            actor=request.user,
            note=str(data.get("note", "")),
            expected_version=version,
        )
    else:
        raise ValidationError(f"Unknown action “{action}”.")


@require_POST
@edit(SHOT_PERMS["change"])
def shot_generate(request, post, shot_id: int):
    """Queue the factory job that produces the shot's picture; progress arrives over the socket."""
    if not Shot.objects.filter(post=post, pk=shot_id).exists():
        raise ValidationError("This shot is not part of the post any more.")
    pipeline.shot_generate_picture(shot_id=shot_id, actor=request.user)


@require_POST
@edit(SHOT_PERMS["change"])
def shot_revoice(request, post, shot_id: int):
    """Queue a new take of the shot's voice (the one way a locked shot's voice changes); progress comes over the
    socket."""
    if not Shot.objects.filter(post=post, pk=shot_id).exists():
        raise ValidationError("This shot is not part of the post any more.")
    pipeline.shot_revoice(shot_id=shot_id, actor=request.user)
