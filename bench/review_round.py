"""B11 review round: the GPU work of a post's second round, when the director rewrites k of its n shots.

A post of n shots (half spoken lines, half cutaways) is written by the director through a fake LLM (the real
rewrite path: `posts.director.service.write_storyboard` in LLM mode against tests/fakes/llm.py), approved and
produced (`posts.pipeline.post_approve`): every shot job is answered in-process as a worker would (claim, file,
succeed: `job_changed` runs the posts receivers, which queue the clips), the render is failed so the post is
editable again. Then review rounds, each a rewrite and `post_produce`, answered the same way:

  - the director writes k of the n shots anew (the reviewer's feedback), the other lines word for word;
  - the director writes the same storyboard again (a rewrite that changes nothing: the floor).

Per round: the jobs queued, by step (voice, picture, avatar, motion), counted by subject
(`post.<id>/shot.<id>/<step>@<key>`), and their GPU seconds at nominal per-job costs (--seconds: what one
job of each step costs on the GPU; an assumption, not measured here: no model runs). The shot workflows are
the tests' (a picture and a motion step for cutaways, an avatar step for lines), so each cutaway costs a
picture and a motion clip and each line a voice and an avatar clip.

    .venv/bin/python bench/review_round.py [--shots 8] [--rewritten 2] [--redis URL]
    .venv/bin/python bench/review_round.py --smoke      # 4 shots, 1 rewritten (CI)

The same script runs against an older checkout (it uses only services both have) for the "before" figures.
Jobs are rung on rq (Redis, DB 9 by default) and never run there: the bench empties the queues it used.
--write-docs: also put the table in docs/benchmarks.md (B11).
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections import Counter

REDIS_DEFAULT = "redis://127.0.0.1:6379/9"
NOMINAL = "voice=3,picture=15,avatar=180,motion=90"
_parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
_parser.add_argument("--shots", type=int, default=8)
_parser.add_argument("--rewritten", type=int, default=2)
_parser.add_argument("--seconds", default=NOMINAL, help=f"GPU seconds one job of each step costs ({NOMINAL})")
_parser.add_argument("--redis", default=REDIS_DEFAULT, help=f"a Redis no worker listens on (default {REDIS_DEFAULT})")
_parser.add_argument("--smoke", action="store_true", help="4 shots, 1 rewritten: only checks that it runs")
_parser.add_argument("--write-docs", action="store_true", help="put the table in docs/benchmarks.md")
ARGS = _parser.parse_args()

MEDIA = tempfile.TemporaryDirectory(prefix="mcn-bench-media-")
os.environ.update({"COSYVOICE_URL": "http://127.0.0.1:9", "REDIS_URL": ARGS.redis, "MEDIA_ROOT": MEDIA.name})

from harness import machine, setup_django, table, throwaway_database, write_docs  # noqa: E402

setup_django()

import django  # noqa: E402 - set up by the harness above
import django_rq  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402

from artists.models import Artist, Niche, Voice  # noqa: E402
from factory import services as factory  # noqa: E402
from factory.models import ErrorKind, Job, JobStatus  # noqa: E402
from factory.services import template_import  # noqa: E402
from mcn_site.lib import roles  # noqa: E402
from posts import pipeline, services  # noqa: E402
from posts.director.service import write_storyboard  # noqa: E402
from posts.models import Post, PostStatus, ShotKind, ShotWorkflow  # noqa: E402
from tests.factories import (  # noqa: E402 - the workflows and media the tests use
    PREVIEW_AVATAR_WORKFLOW,
    PREVIEW_MOTION_WORKFLOW,
    SHOT_WORKFLOW,
    VIDEO_PLACEHOLDERS,
    make_media_file,
    wav_bytes,
)
from tests.fakes.llm import FakeLLM  # noqa: E402

STEPS = ("voice", "picture", "avatar", "motion")
QUEUES = ["cpu", "gpu", "gpu-vip"]
TOPICS = ["gold", "bonds", "rates", "savings", "stocks", "housing", "oil", "the dollar", "wages", "tax"]


def storyboard(shots: int, rewritten: set[int]) -> str:
    """The director's answer: n shots alternating line and cutaway, 30 s; the shots in `rewritten` say new things."""
    items = []
    for n in range(shots):
        topic = TOPICS[n // 2 % len(TOPICS)]
        new = " (after the review)" if n in rewritten else ""
        if n % 2 == 0:
            script = f"Line {n + 1}: here is what {topic} did this week{new}."
            items.append({"kind": "a_roll", "duration": 4, "script": script, "visual_prompt": ""})
        else:
            prompt = f"Cutaway {n + 1}: {topic} on a desk, soft light{new}"
            items.append({"kind": "b_roll", "duration": 30 / shots, "script": "", "visual_prompt": prompt})
    total = sum(item["duration"] for item in items)
    for item in items:
        item["duration"] = round(item["duration"] * 30 / total, 2)
    return json.dumps({"shots": items})


def load() -> tuple[User, User, Post]:
    producer = User.objects.create_user(username="bench-producer", is_staff=True)
    producer.groups.add(Group.objects.get(name=roles.PRODUCER))
    reviewer = User.objects.create_user(username="bench-reviewer", is_staff=True)
    reviewer.groups.add(Group.objects.get(name=roles.REVIEWER))
    face = make_media_file("artists/bench-face.png")
    voice = Voice.objects.create(name="Bench voice", speaker_id="zh_female_1")
    artist = Artist.objects.create(stage_name="Bench", slug="bench", niche=Niche.FINANCE, voice=voice, face_anchor=face)
    artist.members.add(producer, reviewer)
    mappings = [
        (ShotKind.B_ROLL, "picture", SHOT_WORKFLOW, None),
        (ShotKind.B_ROLL, "motion", PREVIEW_MOTION_WORKFLOW, VIDEO_PLACEHOLDERS),
        (ShotKind.A_ROLL, "avatar", PREVIEW_AVATAR_WORKFLOW, VIDEO_PLACEHOLDERS),
    ]
    for kind, step, workflow, placeholders in mappings:
        template = template_import(name=f"bench-{kind}-{step}", workflow=workflow, placeholders=placeholders)
        ShotWorkflow.objects.create(kind=kind, step=step, template_name=template.name)
    post = Post.objects.create(title="Bench review round", artist=artist, brief="Markets.", status=PostStatus.DRAFT)
    return producer, reviewer, post


def answer(job: Job) -> None:
    """What a worker does with a shot job: claim it, store a file, succeed (the posts receivers run at commit)."""
    job = factory.job_start(job_id=job.pk, worker_name="bench-worker", server_url="")
    step = job.subject.rsplit("/", 1)[-1].partition("@")[0]
    data, suffix, node = {"voice": (wav_bytes(2.0, rate=24000), ".wav", "tts")}.get(step, (None, ".png", "6"))
    if step in ("avatar", "motion"):
        data, suffix = b"\x00\x00\x00\x18ftypmp42", ".mp4"
    name = make_media_file(f"factory/job{job.pk}/out{suffix}", data)
    payload = data or b""
    factory.job_record_output(
        job_id=job.pk,
        claim=job.claim,
        attempt=1,
        node_id=node,
        index=0,
        name=name.rsplit("/", 1)[-1],
        stored_name=name,
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        content_type="audio/wav" if step == "voice" else "application/octet-stream",
    )
    factory.job_succeed(job_id=job.pk, claim=job.claim, require_output=False)


def settle(post: Post) -> None:
    """Answer every shot job until only the render is left; fail the render: the post is editable again."""
    while True:
        queued = list(Job.objects.filter(subject__startswith=f"post.{post.pk}/shot.", status=JobStatus.QUEUED))
        if not queued:
            break
        for job in sorted(queued, key=lambda j: j.pk):
            answer(job)
    post.refresh_from_db()
    if post.render_job_id is None:
        raise SystemExit(f"production did not reach the render: post is {post.status}, {post.failure or 'no failure'}")
    render = factory.job_start(job_id=post.render_job_id, worker_name="bench-worker", server_url="")
    factory.job_fail(job_id=render.pk, claim=render.claim, kind=ErrorKind.EXECUTION, message="next review round")
    post.refresh_from_db()
    assert post.status == PostStatus.FAILED, post.status


def shot_jobs_after(post: Post, first_pk: int) -> Counter:
    """The post's shot jobs made after job `first_pk`, counted by step (from the subject)."""
    subjects = Job.objects.filter(pk__gt=first_pk, subject__startswith=f"post.{post.pk}/shot.")
    return Counter(s.rsplit("/", 1)[-1].partition("@")[0] for s in subjects.values_list("subject", flat=True))


def last_job() -> int:
    return Job.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def run(shots: int, rewritten: int) -> list[dict]:
    producer, reviewer, post = load()
    # Lines and cutaways in turn, from the middle of the post: shot 3 (a line), shot 6 (a cutaway), ...
    order = [i for i in (2, 5, 4, 7, 0, 3, 6, 1) if i < shots] + list(range(8, shots))
    changed = set(order[:rewritten])
    rounds = []
    with FakeLLM(api_key="sk-bench") as llm:
        settings.LLM_API_KEY, settings.LLM_BASE_URL, settings.LLM_TIMEOUT = "sk-bench", llm.url, 10
        start = last_job()
        llm.reply(storyboard(shots, set()))
        write_storyboard(post_id=post.pk, actor=producer)
        services.post_submit_for_review(post_id=post.pk, actor=producer)
        pipeline.post_approve(post_id=post.pk, actor=reviewer)
        settle(post)
        rounds.append({"name": f"first production, {shots} shots", "jobs": shot_jobs_after(post, start)})
        for name, replaced in [
            (f"review round: {len(changed)} of {shots} shots rewritten", changed),
            (f"review round: the same {shots} shots written again", changed),
        ]:
            start = last_job()
            llm.reply(storyboard(shots, replaced))
            write_storyboard(post_id=post.pk, actor=producer, feedback="Say it with the figures.")
            pipeline.post_produce(post_id=post.pk, actor=producer)
            settle(post)
            rounds.append({"name": name, "jobs": shot_jobs_after(post, start)})
    for queue in QUEUES:
        django_rq.get_queue(queue).empty()
    return rounds


def main() -> int:
    shots, rewritten = (4, 1) if ARGS.smoke else (ARGS.shots, ARGS.rewritten)
    cost = {step: float(seconds) for step, seconds in (pair.split("=") for pair in ARGS.seconds.split(","))}
    try:
        with throwaway_database() as engine:
            rounds = run(shots, rewritten)
    finally:
        MEDIA.cleanup()
    rows = []
    for item in rounds:
        jobs = item["jobs"]
        gpu = sum(cost.get(step, 0) * count for step, count in jobs.items())
        rows.append([item["name"], sum(jobs.values()), *(jobs.get(step, 0) for step in STEPS), f"{gpu:,.0f}"])
    headers = ["round", "shot jobs", *STEPS, "GPU s (nominal)"]
    nominal = ", ".join(f"{step} {cost[step]:g} s" for step in STEPS)
    text = (
        f"{engine}, {machine(Django=django.get_version())}; jobs answered in-process, "
        f"GPU seconds at nominal per-job costs ({nominal})\n\n" + table(headers, rows)
    )
    print(text)
    if ARGS.write_docs:
        write_docs("B11", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
