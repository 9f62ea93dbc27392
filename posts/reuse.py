"""Review rounds redo only what changed (issue 17): what a post already made is used again.

Two halves, both keyed by content, never by row ids or positions:

- `storyboard_reuse`: when the director rewrites a post's unlocked shots, a new shot whose content (kind,
  script, visual prompt) equals an old unlocked shot's takes that old row instead: its voice, picture and
  clip, their keys, its job links, trail and length stay.
- `made_assets`: the post's content cache, read once per production. A job of this post whose subject ends
  in `/<step>@<key>` made (or is making) exactly what any shot of the post with that key needs, whichever
  row asked for it: a shot deleted and added again by hand, or two identical shots, cost the GPU once.
"""

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from factory.models import TERMINAL_STATUSES, Job, JobOutput, JobStatus
from posts.models import Shot

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif", ".webp")
CLIP_STEPS = ("avatar", "motion")


def content_of(shot: Shot) -> tuple[str, str, str]:
    """What a shot is, for reuse: the seed and every key derive from these (and the post), never the row."""
    return shot.kind, shot.script, shot.visual_prompt


def storyboard_reuse(*, old: list[Shot], new: list[Shot]) -> tuple[list[Shot], list[Shot]]:
    """Match the director's `new` (unsaved) shots to the `old` unlocked rows they leave unchanged.

    Rule: exact equality of (kind, script, visual prompt); each old row is used once, the first unused one in
    playing order. A matched slot gets the old row as it is: its files, keys, jobs, status and its length (set
    by its voice, or the one its clip was made for; the director's figure for it is only an estimate, and
    taking it would make a motion clip again because a neighbour's line got longer).
    Returns (the new storyboard with old rows in the matched slots, the old rows left to delete).
    """
    unused: dict[tuple, list[Shot]] = defaultdict(list)
    for shot in sorted(old, key=lambda s: s.position):
        unused[content_of(shot)].append(shot)
    result = []
    for shot in new:
        candidates = unused.get(content_of(shot))
        if not candidates:
            result.append(shot)
            continue
        result.append(candidates.pop(0))
    reused = {shot.pk for shot in result if shot.pk}
    return result, [shot for shot in old if shot.pk not in reused]


@dataclass(frozen=True)
class Made:
    """One entry of the content cache: the job, and its file when it succeeded ("" while it is still working)."""

    job: Job
    name: str = ""


def made_assets(*, post_id: int) -> dict[str, Made]:
    """`"<step>@<key>" -> Made` for this post's shot jobs that succeeded with a file still on disk, or are
    still queued or running (the newest job of a key wins; a finished file beats a job still working).

    Two queries per post whatever its length: the jobs, then their outputs.
    """
    jobs = list(
        Job.objects.filter(
            subject__startswith=f"post.{post_id}/shot.",
            status__in=[JobStatus.SUCCEEDED, JobStatus.QUEUED, JobStatus.RUNNING],
        ).order_by("pk")
    )
    outputs: dict[int, list[str]] = defaultdict(list)
    done = [job.pk for job in jobs if job.status == JobStatus.SUCCEEDED]
    rows = JobOutput.objects.filter(job_id__in=done).order_by("job_id", "attempt", "node_id", "index")
    for job_id, name in rows.values_list("job_id", "file"):
        outputs[job_id].append(name)
    cache: dict[str, Made] = {}
    for job in jobs:
        what = job.subject.rsplit("/", 1)[-1]
        if "@" not in what:
            continue
        if job.status not in TERMINAL_STATUSES:
            if what not in cache or not cache[what].name:
                cache[what] = Made(job=job)
            continue
        name = output_name(outputs.get(job.pk, []), step=what.partition("@")[0])
        if name and (Path(settings.MEDIA_ROOT) / name).is_file():
            cache[what] = Made(job=job, name=name)
    return cache


def output_name(names: list[str], *, step: str) -> str:
    """The file a shot takes from its job's outputs (in (attempt, node, index) order): the last one, and for a
    clip the last video (a video workflow may also save a first-frame PNG). "" when there is none."""
    if step in CLIP_STEPS:
        names = [name for name in names if name.lower().endswith(VIDEO_SUFFIXES)] or names
    return names[-1] if names else ""
