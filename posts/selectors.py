import functools

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from artists.selectors import artists_visible_to
from mcn_site.lib.roles import is_ops
from posts.costs import storyboard_costs
from posts.models import ALLOWED_TRANSITIONS, Post, PostEvent, PostStatus, Shot, ShotKind
from posts.provenance import shot_provenance, with_jobs

# What a storyboard edit needs: the model permissions of the user's role (mcn_site.lib.roles). The one
# rule for every door: the API's routes require these (posts.api), the storyboard page's endpoints ask
# `may()` before they call a service (posts.views), and the page offers only the controls it allows.
SHOT_PERMS = {
    "add": ("posts.add_shot",),
    "change": ("posts.change_shot",),  # edit, lock, reorder, upload, generate a picture
    "delete": ("posts.delete_shot",),
}
POST_ACTION_PERMS = {
    "generate": SHOT_PERMS["change"],  # the director rewrites the shots
    PostStatus.REVIEW: ("posts.change_post",),  # submit
    PostStatus.APPROVED: ("posts.review_post",),
    PostStatus.REJECTED: ("posts.review_post",),
    PostStatus.RENDERING: ("posts.change_post",),  # render, retry a render
    PostStatus.DRAFT: ("posts.change_post",),  # back to draft
    "cancel": ("posts.change_post",),  # cancel the post's jobs (API)
}


def may(*, user, perms) -> bool:
    """Whether `user`'s role grants every permission in `perms` (which posts they reach is posts_visible_to)."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perms(perms))


def posts_visible_to(*, user) -> QuerySet[Post]:
    """Posts of the artists this user may see."""
    return Post.objects.filter(artist__in=artists_visible_to(user=user))


def shots_visible_to(*, user) -> QuerySet[Shot]:
    return Shot.objects.filter(post__artist__in=artists_visible_to(user=user))


def post_events_visible_to(*, user) -> QuerySet[PostEvent]:
    return PostEvent.objects.filter(post__artist__in=artists_visible_to(user=user))


# Every place a stored media file name is recorded, and the path from that row to the artist(s) the
# file belongs to: (model, lookup of the file name, lookup of the artist). A factory output belongs to
# the post or shot whose job made it (factory knows no post: the links are posts' own foreign keys);
# one that nothing links to (an ops test job, a superseded attempt) has no artist. A file no row
# names has none either. tests/test_media_access.py fails when a FileField of any app is missing here.
MEDIA_REFERENCES: list[tuple[str, str, str]] = [
    ("artists.Artist", "face_anchor", "pk"),
    ("artists.Artist", "full_body", "pk"),
    ("artists.Artist", "three_view_sheet", "pk"),
    ("artists.ArtistImage", "image", "artist"),
    ("artists.Voice", "sample_audio", "artists"),  # every artist speaking with it
    ("artists.Wardrobe", "preview", "artists"),  # every artist allowed to wear it
    ("posts.Post", "music", "artist"),
    ("posts.Post", "final_video", "artist"),
    ("posts.Post", "render_job__outputs__file", "artist"),
    ("posts.Shot", "manual_asset", "post__artist"),
    ("posts.Shot", "generated_asset", "post__artist"),
    ("posts.Shot", "voice_asset", "post__artist"),
    ("posts.Shot", "job__outputs__file", "post__artist"),
    ("posts.Shot", "voice_job__outputs__file", "post__artist"),
    ("posts.Shot", "generated_clip", "post__artist"),
    ("posts.Shot", "clip_job__outputs__file", "post__artist"),
]


def media_artists(*, name: str) -> RawSQL:
    """The ids of the artists the stored file `name` belongs to (NULL rows included), as one SQL
    expression for a `pk__in=` filter: a UNION of indexed lookups, one per MEDIA_REFERENCES entry."""
    sql, count = _media_artists_sql(connection.vendor)
    return RawSQL(sql, [name] * count)  # noqa: S611 - SQL compiled by the ORM; the name is a parameter


@functools.cache
def _media_artists_sql(vendor: str) -> tuple[str, int]:
    # Compiled once per process: building and compiling the fourteen querysets took 9 ms a request,
    # the query itself 0.4 ms (40 000 shots, SQLite). Every parameter is the file name.
    marker = "\x00media-file-name\x00"
    parts = [
        apps.get_model(model)._base_manager.filter(**{lookup: marker}).order_by().values_list(artist)
        for model, lookup, artist in MEDIA_REFERENCES
    ]
    sql, params = parts[0].union(*parts[1:]).query.sql_with_params()
    if any(param != marker for param in params):
        raise ImproperlyConfigured(f"MEDIA_REFERENCES must compare the file name only, got parameters {params}.")
    return sql, len(params)


def media_visible_to(*, user, name: str) -> bool:
    """Whether `user` may have the media file stored as `name`: ops any file; anyone else a file that
    belongs to an artist they may see (artists_visible_to). A file of no artist is for ops only."""
    if is_ops(user):
        return True  # unreferenced files too (a test job's output, an upload nothing names yet)
    return artists_visible_to(user=user).filter(pk__in=media_artists(name=name)).exists()


def post_for_page(*, user, post_id: int):
    """The post a page or endpoint works on, or None when it does not exist for this user (a 404)."""
    related = ("artist", "wardrobe", "updated_by", "render_job")
    return posts_visible_to(user=user).select_related(*related).filter(pk=post_id).first()


def _asset(file) -> dict | None:
    if not file:
        return None
    name = file.name.rsplit("/", 1)[-1]
    is_video = name.lower().endswith((".mp4", ".mov", ".webm"))
    return {"url": file.url, "name": name, "type": "video" if is_video else "image"}


def storyboard_state(*, post, user) -> dict:
    """Everything the storyboard page shows, as plain JSON: the page re-reads it on every (re)connect."""
    shots = list(with_jobs(post.shots.all()).order_by("position"))
    actions = []
    for target in sorted(ALLOWED_TRANSITIONS[post.status]):
        label = ACTION_LABELS.get((post.status, target))
        if label is None or not may(user=user, perms=POST_ACTION_PERMS[target]):
            continue  # system-only moves (rendering -> done) and what the user's role may not do
        actions.append({"name": target, "label": label, "needs_feedback": target == PostStatus.REJECTED})
    can = {name: may(user=user, perms=perms) for name, perms in SHOT_PERMS.items()}
    if post.is_editable and can["change"]:
        mode = "LLM" if settings.LLM_API_KEY else "offline director"
        verb = "Rewrite from feedback" if post.status == PostStatus.REJECTED else "Write storyboard"
        actions.insert(0, {"name": "generate", "label": f"{verb} ({mode})", "needs_feedback": False})
    return {
        "post": {
            "id": post.pk,
            "title": post.title,
            "status": post.status,
            "status_label": post.get_status_display(),
            "version": post.version,
            "editable": post.is_editable,
            # What this user's role lets them do to the shots (the page hides the other controls).
            "can": {f"{name}_shots": allowed for name, allowed in can.items()},
            "feedback": post.feedback,
            "artist": {
                "id": post.artist_id,
                "name": post.artist.stage_name,
                "colour": post.artist.colour,
                "face_url": post.artist.face_anchor.url if post.artist.face_anchor else None,
            },
            "wardrobe": {"id": post.wardrobe_id, "name": post.wardrobe.name} if post.wardrobe_id else None,
            "final_video": _asset(post.final_video),
            "aspect_ratio": post.aspect_ratio,
            "failure": post.failure,
            "render_job": _job(post.render_job) if post.render_job_id else None,
            "updated_by": post.updated_by.get_username() if post.updated_by else "",
            "updated_at": post.updated_at.isoformat(),
        },
        "actions": actions,
        "shots": [
            {
                "id": shot.pk,
                "position": shot.position,
                "kind": shot.kind,
                "kind_label": shot.get_kind_display(),
                "duration": float(shot.duration_seconds),
                "script": shot.script,
                "visual_prompt": shot.visual_prompt,
                "locked": shot.locked,
                "status": shot.status,
                "manual_asset": _asset(shot.manual_asset),
                "generated_asset": _asset(shot.generated_asset),
                "job": _job(shot.job) if shot.job_id else None,
                "voice": {"url": shot.voice_asset.url} if shot.voice_asset else None,
                "voice_job": _job(shot.voice_job) if shot.voice_job_id else None,
                # The clip a video workflow made (avatar: the artist speaking; motion: the still moving).
                "clip": {**_asset(shot.generated_clip), "type": "video"} if shot.generated_clip else None,
                "clip_job": _job(shot.clip_job) if shot.clip_job_id else None,
                # Which video step makes it: its job's subject ends ".../avatar@<key>" or ".../motion@<key>".
                "clip_step": shot.clip_job.subject.rsplit("/", 1)[-1].split("@")[0] if shot.clip_job_id else None,
                "error": shot.error,
                # How each produced asset was made (template, seed, models, ComfyUI; voice model and voice).
                "provenance": shot_provenance(shot),
            }
            for shot in shots
        ],
        "total_duration": float(sum(shot.duration_seconds for shot in shots)),
        "shot_kinds": [{"value": value, "label": label} for value, label in ShotKind.choices],
        # What the post cost so far (split GPU / LLM, per shot), the artist's budget and about what the next
        # action costs (posts.costs); None for a role that does not see costs.
        "costs": storyboard_costs(post=post, user=user),
    }


def _job(job) -> dict:
    return {
        "id": job.pk,
        "status": job.status,
        "percent": job.progress_percent,
        "node": job.progress_node,
        "error_kind": job.error_kind,
        "error_message": job.error_message,
    }


ACTION_LABELS = {
    ("draft", "review"): "Submit for review",
    ("review", "approved"): "Approve",
    ("review", "rejected"): "Reject with feedback",
    ("review", "draft"): "Back to draft",
    ("rejected", "draft"): "Rework as draft",
    ("approved", "rendering"): "Render",
    ("approved", "draft"): "Back to draft",
    ("failed", "rendering"): "Retry render",
    ("failed", "draft"): "Back to draft",
}
