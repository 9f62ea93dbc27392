"""The render job: a post's shots, voices and captions assembled into one MP4 by factory.render.

Runs as a factory job of kind `render` on the CPU queue (registered here, as the director is for
`llm`). It reads the post as it is when the job runs: each shot's picture (manual asset, else the
clip a video workflow made, else the generated still, else a title card), its voice (else silence for
the director's duration) and its script as captions. The factory's `assemble` knows nothing of posts:
it gets plain clips.
"""

import hashlib
import mimetypes
import re
from pathlib import Path

from django.conf import settings

from factory import runners
from factory.models import ErrorKind, Job, JobKind
from factory.render import Caption, Clip, Edit, RenderCancelled, RenderFailed, assemble, temp_files
from factory.services import job_is_cancel_requested, job_progress, job_record_output, job_touch
from posts.cards import title_card
from posts.models import ASPECT_SIZES, Post, Shot
from posts.provenance import video_metadata

# Where a caption may break: after sentence and clause punctuation, Chinese or Latin.
BREAK_AFTER = re.compile(r"(?<=[。！？；，、!?;,.:：])\s*")
CJK_LINE = 16  # characters per caption line in Chinese text
LATIN_LINE = 42


def _is_cjk(text: str) -> bool:
    return sum(ord(c) > 0x2E7F for c in text) > len(text) / 3


def caption_chunks(script: str) -> list[str]:
    """Split a script into caption-sized pieces at punctuation, then at the line length."""
    limit = CJK_LINE if _is_cjk(script) else LATIN_LINE
    chunks: list[str] = []
    for clause in (part.strip() for part in BREAK_AFTER.split(script.strip())):
        while clause:
            if len(clause) <= limit:
                piece, clause = clause, ""
            else:
                cut = clause.rfind(" ", 0, limit + 1)
                cut = cut if cut > limit // 2 else limit
                piece, clause = clause[:cut].strip(), clause[cut:].strip()
            if chunks and len(chunks[-1]) + len(piece) < limit // 2:
                chunks[-1] = f"{chunks[-1]}{'' if _is_cjk(piece) else ' '}{piece}"  # a lone short clause joins the last
            else:
                chunks.append(piece)
    return chunks


def captions_for(script: str, *, start: float, duration: float) -> list[Caption]:
    """Captions for one shot, each on screen for a share of the shot proportional to its length."""
    chunks = caption_chunks(script)
    total = sum(len(chunk) for chunk in chunks)
    captions, at = [], start
    for chunk in chunks:
        length = duration * len(chunk) / total
        captions.append(Caption(start=round(at, 3), end=round(at + length, 3), text=chunk))
        at += length
    return captions


def _is_still(path: Path) -> bool:
    kind = mimetypes.guess_type(path.name)[0] or ""
    return not kind.startswith("video/")


def edit_for(post: Post, *, output: Path) -> Edit:
    """The plain-data edit of a post as it stands: one clip per shot, captions from the scripts."""
    size = ASPECT_SIZES[post.aspect_ratio]
    media = Path(settings.MEDIA_ROOT)
    clips, captions, at = [], [], 0.0
    shots = Shot.objects.filter(post=post).select_related("post__artist").order_by("position")
    for shot in shots:
        duration = float(shot.duration_seconds)
        voice = media / shot.voice_asset.name if shot.voice_asset else None
        if shot.generated_clip and not shot.manual_asset:
            # The clip a video workflow made (avatar or motion). Its own audio is dropped: the voice stays the
            # audio of record, and the clip is cut, or held on its last frame, to the voice's length.
            clips.append(Clip(path=media / shot.generated_clip.name, duration=duration, still=False, audio=voice))
        else:
            picture = shot.manual_asset or shot.generated_asset
            path = media / picture.name if picture else title_card(shot, size=size)
            clips.append(Clip(path=path, duration=duration, still=_is_still(path), audio=voice))
        if shot.script.strip():
            captions += captions_for(shot.script, start=at, duration=duration)
        at += duration
    if not clips:
        raise RenderFailed("The storyboard has no shots to render.")
    music = media / post.music.name if post.music else None
    return Edit(
        clips=clips,
        output=output,
        width=size[0],
        height=size[1],
        captions=captions,
        music=music,
        music_volume=settings.MCN_MUSIC_VOLUME,
        metadata=video_metadata(post),  # how each shot was made, for an audit of the video itself
    )


@runners.register(JobKind.RENDER)
def run_render(job: Job) -> None:
    post = Post.objects.select_related("artist").get(pk=job.params["post_id"])
    relative = f"posts/final/post-{post.pk}-job-{job.pk}.mp4"
    output = Path(settings.MEDIA_ROOT) / relative
    output.parent.mkdir(parents=True, exist_ok=True)
    # A render of this job killed mid-way (its worker lost, or presumed dead and taken over) left its
    # .part: this run holds the claim, so no other render of it is live (a woken one is fenced, below).
    for leftover in temp_files(output):
        leftover.unlink(missing_ok=True)
    last = [-1.0]

    def on_progress(fraction: float) -> None:
        if fraction - last[0] >= 0.01 or fraction >= 1:  # a hundred steps at most
            last[0] = fraction
            job_progress(
                job_id=job.pk,
                claim=job.claim,
                node="ffmpeg",
                value=int(fraction * 1000),
                maximum=1000,
                percent=fraction * 100,
            )

    try:
        result = assemble(
            edit_for(post, output=output),
            on_progress=on_progress,
            # Both raise ClaimLost once another worker holds the job: ffmpeg is stopped, the MP4 left alone.
            should_cancel=lambda: job_is_cancel_requested(job_id=job.pk, claim=job.claim),
            before_publish=lambda: job_touch(job_id=job.pk, claim=job.claim),
        )
    except RenderCancelled as error:
        raise runners.TaskFailed(str(error) or "Cancelled.", kind=ErrorKind.CANCELLED) from None
    except RenderFailed as error:
        # Producers read media names, not the server's folders (staff get the full story in details).
        message = str(error).replace(f"{Path(settings.MEDIA_ROOT)}/", "")
        raise runners.TaskFailed(message, details=getattr(error, "details", {})) from None
    for leftover in temp_files(output):  # one killed while this run rendered (ours is in place already)
        leftover.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with open(result.output, "rb") as video:
        for block in iter(lambda: video.read(1 << 20), b""):
            digest.update(block)
    job_record_output(
        job_id=job.pk,
        claim=job.claim,
        attempt=max(1, job.attempts),
        node_id="render",
        index=0,
        name=output.name,
        stored_name=relative,
        size=result.output.stat().st_size,
        sha256=digest.hexdigest(),
        content_type="video/mp4",
    )
