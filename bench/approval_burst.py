"""B9 approval burst: approve P posts of S shots (a voice and a picture job per shot) against rq's enqueue_many.

Each approval is the real service behind the approve button and API (`posts.pipeline.post_approve`, its
own transaction): the post goes to rendering, every shot gets a TTS job (COSYVOICE_URL set) and a
ComfyUI picture job (a ShotWorkflow for its kind), each a Job row with its event, rung on rq after
commit, announced on `job_changed`. No worker runs: only the approval path is timed. The baseline,
in the same run, puts the same number of `factory.jobs.run_job` entries on rq with one
`Queue.enqueue_many` (same options, one pipeline). Interleaved, repeated, a rotating order; between
samples (untimed) the posts go back to review, the jobs and their rq entries are deleted.

    .venv/bin/python bench/approval_burst.py [--posts 100] [--shots 10] [--repeats 5] [--redis URL]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mcn_bench .venv/bin/python bench/approval_burst.py
    .venv/bin/python bench/approval_burst.py --smoke      # 3 posts of 2 shots, 1 repeat (CI)

The rq queues used (cpu, gpu, and the baseline's own) must be empty in that Redis: the bench refuses to
start otherwise, and empties them as it goes. --write-docs: also put the table in docs/benchmarks.md (B9).
"""

import argparse
import os
import sys
import tempfile
import time

REDIS_DEFAULT = "redis://127.0.0.1:6379/9"
_parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
_parser.add_argument("--posts", type=int, default=100)
_parser.add_argument("--shots", type=int, default=10)
_parser.add_argument("--repeats", type=int, default=5)
_parser.add_argument("--redis", default=REDIS_DEFAULT, help=f"a Redis no worker listens on (default {REDIS_DEFAULT})")
_parser.add_argument("--smoke", action="store_true", help="3 posts of 2 shots, 1 repeat: only checks that it runs")
_parser.add_argument("--write-docs", action="store_true", help="put the table in docs/benchmarks.md")
ARGS = _parser.parse_args()

# Settings read the environment once: the voice server, the Redis and the media folder come first.
MEDIA = tempfile.TemporaryDirectory(prefix="mcn-bench-media-")
os.environ.update({"COSYVOICE_URL": "http://127.0.0.1:9", "REDIS_URL": ARGS.redis, "MEDIA_ROOT": MEDIA.name})

from harness import (  # noqa: E402
    interleave,
    machine,
    ratio,
    setup_django,
    table,
    throwaway_database,
    write_docs,
)

setup_django()

import django  # noqa: E402 - set up by the harness above
import django_rq  # noqa: E402
import rq  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from rq import Queue  # noqa: E402

from artists.models import Artist, Niche, Voice  # noqa: E402
from factory.models import Job  # noqa: E402
from factory.services import template_import  # noqa: E402
from mcn_site.lib import roles  # noqa: E402
from posts.models import Post, PostEvent, PostStatus, Shot, ShotKind, ShotStatus, ShotWorkflow  # noqa: E402
from posts.pipeline import post_approve  # noqa: E402
from tests.factories import SHOT_WORKFLOW  # noqa: E402 - the shot template the tests use: face, LoRA, prompt, seed

BASELINE_QUEUE = "bench-b9-baseline"
QUEUES = ["cpu", "gpu", "gpu-vip"]


def load(posts: int, shots: int) -> tuple[User, list[int]]:
    """A reviewer, one artist, `posts` posts in review with `shots` shots each; returns the reviewer and post ids."""
    reviewer = User.objects.create_user(username="bench-reviewer", is_staff=True)
    reviewer.groups.add(Group.objects.get(name=roles.REVIEWER))
    face = "artists/bench-face.png"
    path = settings.MEDIA_ROOT / face
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n")  # only its existence is checked
    voice = Voice.objects.create(name="Bench voice", speaker_id="zh_female_1")
    artist = Artist.objects.create(stage_name="Bench", slug="bench", niche=Niche.FINANCE, voice=voice, face_anchor=face)
    template = template_import(name="bench-shot", workflow=SHOT_WORKFLOW)
    ShotWorkflow.objects.create(kind=ShotKind.A_ROLL, template_name=template.name)
    made = Post.objects.bulk_create(
        Post(title=f"Bench post {n}", artist=artist, brief="Markets.", status=PostStatus.REVIEW) for n in range(posts)
    )
    ids = [post.pk for post in Post.objects.filter(title__startswith="Bench post").order_by("pk")]
    assert len(ids) == len(made)
    Shot.objects.bulk_create(
        Shot(
            post_id=post_id,
            position=n,
            kind=ShotKind.A_ROLL,
            duration_seconds=4,
            script=f"今天的市场第{n}句：指数小幅上涨。",
            visual_prompt=f"Shot {n}: the artist at a desk, city at night behind.",
        )
        for post_id in ids
        for n in range(1, shots + 1)
    )
    return reviewer, ids


def rq_queues() -> list[Queue]:
    return [django_rq.get_queue(name) for name in QUEUES] + [baseline_queue()]


def baseline_queue() -> Queue:
    return Queue(BASELINE_QUEUE, connection=django_rq.get_connection("cpu"))


def reset(post_ids: list[int]) -> None:
    """Back to the starting state, untimed: posts in review, shots without jobs, no jobs, empty queues."""
    Shot.objects.filter(post_id__in=post_ids).update(job=None, voice_job=None, status=ShotStatus.PENDING, error="")
    Post.objects.filter(pk__in=post_ids).update(status=PostStatus.REVIEW, version=1, render_job=None, failure="")
    PostEvent.objects.all().delete()
    Job.objects.all().delete()  # their events and outputs go with them
    for queue in rq_queues():
        queue.empty()


def approve_all(reviewer: User, post_ids: list[int], expected_jobs: int) -> float:
    started = time.perf_counter()
    started_jobs = 0
    for post_id in post_ids:  # one click (one transaction) per post, as reviewers do
        started_jobs += len(post_approve(post_id=post_id, actor=reviewer).started_jobs)
    elapsed = time.perf_counter() - started
    assert started_jobs == expected_jobs, (started_jobs, expected_jobs)
    ringing = sum(django_rq.get_queue(name).count for name in QUEUES)
    assert ringing == expected_jobs, (ringing, expected_jobs)  # every job rung on rq after its commit
    return elapsed


def enqueue_many(count: int) -> float:
    queue = baseline_queue()
    options = {"timeout": settings.RQ_DEFAULT_TIMEOUT, "result_ttl": 3600, "failure_ttl": 7 * 86400}
    started = time.perf_counter()
    queue.enqueue_many([Queue.prepare_data("factory.jobs.run_job", (n,), **options) for n in range(count)])
    elapsed = time.perf_counter() - started
    assert queue.count == count
    return elapsed


def run(posts: int, shots: int, repeats: int) -> tuple[list[list], str]:
    reviewer, post_ids = load(posts, shots)
    jobs = posts * shots * 2  # a voice and a picture per shot
    busy = {queue.name: queue.count for queue in rq_queues() if queue.count}
    if busy:
        raise SystemExit(f"{ARGS.redis} already holds rq jobs ({busy}): give the bench a Redis of its own (--redis)")

    def sample(measure):
        def timed() -> float:
            reset(post_ids)
            return measure()

        return timed

    ours_name = f"approve {posts} posts of {shots} shots ({jobs} jobs, {posts} transactions)"
    base_name = f"rq `enqueue_many` of {jobs} jobs, one pipeline (baseline)"
    measures = {
        base_name: sample(lambda: enqueue_many(jobs)),
        ours_name: sample(lambda: approve_all(reviewer, post_ids, jobs)),
    }
    for measure in measures.values():  # warm-up: connections, imports, the template cache
        measure()
    series = interleave(measures, repeats=repeats)
    reset(post_ids)
    with CaptureQueriesContext(connection) as captured:
        post_approve(post_id=post_ids[0], actor=reviewer)
    statements = len(captured)
    reset(post_ids)

    base, ours = series[base_name], series[ours_name]
    rows = []
    for s, per_post in [(base, "-"), (ours, statements)]:
        rows.append(
            [
                s.name,
                len(s.samples),
                f"{s.min * 1000:.1f}",
                f"{s.median * 1000:.1f}",
                f"{s.max * 1000:.1f}",
                f"{jobs / s.median:,.0f}",
                ratio(s.median, base.median),
                ratio(s.min, base.min),
                per_post,
            ]
        )
    return rows, f"rq {rq.__version__}, Redis {django_rq.get_connection('cpu').info()['redis_version']}"


def main() -> int:
    posts, shots, repeats = (3, 2, 1) if ARGS.smoke else (ARGS.posts, ARGS.shots, ARGS.repeats)
    try:
        with throwaway_database() as engine:  # never the database DATABASE_URL names
            rows, versions = run(posts, shots, repeats)
    finally:
        MEDIA.cleanup()
    headers = [
        *("measurement", "runs", "min ms", "median ms", "max ms", "jobs/s (median)"),
        *("median / baseline", "min / baseline", "SQL statements per approval"),
    ]
    text = (
        f"{repeats} interleaved repeats, no worker running; {engine}, {versions}, "
        f"{machine(Django=django.get_version())}\n\n" + table(headers, rows)
    )
    print(text)
    if ARGS.write_docs:
        write_docs("B9", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
