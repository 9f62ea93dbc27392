"""Write or rewrite a post's storyboard: an LLM when one is configured, the rule-based director otherwise.

Locked shots, and shots with a manual asset, are sacred: they keep their row, text,
duration and files exactly; the director writes only the other slots around them.
A new shot the director writes exactly as an old unlocked one was (kind, script, visual prompt) takes
that old row, with its voice, picture and clip (posts.reuse): a review round re-produces what changed.
The storyboard is replaced all-or-nothing in one transaction.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from posts.director.llm import LLMClient, LLMError, Usage
from posts.director.offline import offline_storyboard
from posts.director.prompts import render
from posts.director.schema import StoryboardInvalid, parse_storyboard
from posts.director.timing import fit_durations, speaking_seconds
from posts.models import Post, PostStatus, PromptTemplate, Shot
from posts.reuse import storyboard_reuse
from posts.services import StoryboardChange, post_transition, storyboard_apply

TARGET_SECONDS = 30
MIN_NEW_SECONDS = 5


@dataclass
class DirectorFailed(Exception):
    message: str
    kind: str = "execution"
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def director_mode() -> str:
    """ "llm" with an API key configured, else "offline" (the rule-based director, labelled so in the UI)."""
    return "llm" if settings.LLM_API_KEY else "offline"


def _sacred(shot: Shot) -> bool:
    return shot.locked or bool(shot.manual_asset)


def _as_dict(shot: Shot) -> dict:
    return {
        "position": shot.position,
        "kind": shot.kind,
        "duration": float(shot.duration_seconds),
        "script": shot.script,
        "visual_prompt": shot.visual_prompt,
    }


def write_storyboard(
    *,
    post_id: int,
    actor,
    feedback: str = "",
    before_write: Callable[[], object] | None = None,
    on_usage: Callable[[Usage], object] | None = None,
) -> Post:
    """Replace the post's unlocked shots with a new storyboard; returns the post (draft again if it was rejected).

    `before_write()` runs first inside the transaction that writes the shots, and raises to write nothing
    (the director job's worker was taken over while the LLM answered: factory.services.ClaimLost).
    `on_usage(Usage)` hears what each LLM answer cost (analyst, writer, repair), as it comes.
    """
    post = Post.objects.select_related("artist", "wardrobe").get(pk=post_id)
    feedback = (feedback or post.feedback).strip()  # a rewrite of a rejected post answers its reviewer
    shots = list(post.shots.order_by("position"))
    kept = [s for s in shots if _sacred(s)]
    budget = max(MIN_NEW_SECONDS, TARGET_SECONDS - float(sum(s.duration_seconds for s in kept)))
    if director_mode() == "llm":
        # The "editor": spoken lines last as long as they take to say, cutaways share the rest,
        # until real TTS durations replace them.
        written = fit_durations(
            [
                {**shot, "duration": speaking_seconds(shot["script"])} if shot["kind"] == "a_roll" else shot
                for shot in _from_llm(post, kept, feedback=feedback, target_seconds=budget, on_usage=on_usage)
            ],
            budget,
        )
    else:
        try:
            written = offline_storyboard(
                post.brief or post.title,
                artist_name=post.artist.stage_name,
                keywords=list(post.artist.content_focus or []),
                target_seconds=budget,
                locked=[_as_dict(s) for s in kept],
            )
        except ValueError as error:
            raise DirectorFailed(str(error), kind="config") from None
    new_shots = [
        Shot(
            kind=item["kind"],
            duration_seconds=Decimal(str(item["duration"])).quantize(Decimal("0.01")),
            script=item.get("script", ""),
            visual_prompt=item.get("visual_prompt", ""),
        )
        for item in written
    ]
    changes = {"shots": shots, "kept": kept, "new_shots": new_shots}
    return _replace(post=post, **changes, actor=actor, feedback=feedback, before_write=before_write)


@transaction.atomic
def _replace(
    *,
    post: Post,
    shots: list[Shot],
    kept: list[Shot],
    new_shots: list[Shot],
    actor,
    feedback: str,
    before_write: Callable[[], object] | None = None,
) -> Post:
    if before_write is not None:
        before_write()
    if post.status == PostStatus.REJECTED:
        # Rewriting from feedback puts the post back in the producers' hands.
        post = post_transition(
            post_id=post.pk, to_status=PostStatus.DRAFT, actor=actor, note=f"Rewrite from feedback: {feedback}"
        )
    # The rows as they are now, locked: the LLM took a while, and a job may have landed on one meanwhile
    # (the page's picture button); saving the copies read before it would lose its file.
    rows = Shot.objects.select_for_update(of=("self",)).in_bulk([s.pk for s in shots])
    kept = [rows[s.pk] for s in kept if s.pk in rows]
    # New shots equal to old unlocked ones take those rows, files and all; the rest of the old ones go.
    unlocked = [rows[s.pk] for s in shots if s.pk in rows and not _sacred(s)]
    new_shots, deleted = storyboard_reuse(old=unlocked, new=new_shots)
    # Sacred shots stay at their positions while the new shots fill the other slots in order.
    slots = {s.position: s for s in kept}
    fresh = iter(new_shots)
    order: list[Shot] = []
    for position in range(1, max(len(shots), len(kept) + len(new_shots)) + 1):
        if position in slots:
            order.append(slots[position])
        else:
            shot = next(fresh, None)
            if shot is not None:
                order.append(shot)
    order += list(fresh)
    post.refresh_from_db()
    return storyboard_apply(
        post=post, actor=actor, expected_version=post.version, change=StoryboardChange(shots=order, deleted=deleted)
    )


def _prompt(role: str) -> str:
    template = PromptTemplate.objects.filter(role=role, active=True).first()
    if template is None:
        raise DirectorFailed(f"No active {role} prompt: ops set one under Posts > Prompt templates.", kind="config")
    return template.template


def _from_llm(
    post: Post,
    kept: list[Shot],
    *,
    feedback: str,
    target_seconds: float,
    on_usage: Callable[[Usage], object] | None = None,
) -> list[dict]:
    artist = post.artist
    variables = {
        "artist_name": artist.stage_name,
        "niche": artist.get_niche_display(),
        "persona": artist.persona,
        "speaking_style": artist.speaking_style,
        "content_focus": ", ".join(artist.content_focus or []),
        "excluded_keywords": ", ".join(artist.excluded_keywords or []) or "nothing in particular",
        "wardrobe": post.wardrobe.name if post.wardrobe_id else "",
        "brief": post.brief or post.title,
        "source_content": post.source_content,
        "analysis": "",
        "target_seconds": round(target_seconds),
        "feedback": feedback or "none",
        "locked_shots": json.dumps([_as_dict(s) for s in kept], ensure_ascii=False) if kept else "none",
    }
    client = LLMClient.from_settings()
    try:
        if post.source_content.strip():
            variables["analysis"] = client.chat(
                [{"role": "user", "content": render(_prompt("analyst"), variables)}], json_mode=False, on_usage=on_usage
            )
        messages = [
            {"role": "system", "content": render(_prompt("director"), variables)},
            {"role": "user", "content": render(_prompt("writer"), variables)},
        ]
        raw = client.chat(messages, on_usage=on_usage)
        try:
            return parse_storyboard(raw, target_seconds=target_seconds)
        except StoryboardInvalid as error:
            # One repair request quoting what was wrong; then we give up with the raw text kept for staff.
            messages += [
                {"role": "assistant", "content": raw},
                {
                    "role": "user",
                    "content": "That storyboard is invalid: "
                    + "; ".join(error.problems)
                    + ". Reply with the corrected JSON only.",
                },
            ]
            raw = client.chat(messages, on_usage=on_usage)
            try:
                return parse_storyboard(raw, target_seconds=target_seconds)
            except StoryboardInvalid as again:
                raise DirectorFailed(
                    f"The LLM returned an invalid storyboard: {again.problems[0]}",
                    kind="execution",
                    details={"problems": again.problems, "raw": raw},
                ) from None
    except LLMError as error:
        kind = {"unavailable": "unreachable", "timeout": "stalled", "rejected": "config"}.get(error.kind, "execution")
        raise DirectorFailed(error.message, kind=kind, details=error.details) from None
