"""B4, B4b, B5: live status from a ComfyUI progress frame to the storyboard pages, and nothing lost under bursts.

Everything is real and local: the web server (uvicorn, one worker) on a throwaway database, the GPU worker
(`manage.py run_gpu_worker`) bound to a fake ComfyUI (tests/fakes/comfyui.py) that runs in this process,
and the pages are aiohttp websocket clients on /ws/posts/<id>/, signed in with a session cookie.

- B4: the fake emits a `progress` frame -> the worker's socket -> `job_progress` (row) -> `job_changed` ->
  posts.pipeline -> `publish()` -> the pub/sub layer -> the consumer -> one page. Latency from the moment
  the fake sends the frame to the moment the page reads it (time.monotonic(): one clock, one machine).
  Baseline in the same run: a raw `group_send` on the same layer and group -> the same consumer -> the page.
- B4b: the same with 50 pages open on the post (every page's receipt is a sample), and nothing lost.
- B5: 50 jobs at once (50 fakes, the worker's code in 50 threads of one process: ComfyUI runs one prompt at a
  time, so 50 concurrent jobs mean 50 GPUs), 100 progress frames each at full speed. Every final state must
  reach every page; progress may be coalesced (the worker writes at most 2 a second per job, `publish()`
  sends at most 10 a second per post).

Progress frames in B4/B4b are paced at --pace seconds: the worker keeps one progress write per job every
0.5 s (factory.execution.PROGRESS_INTERVAL) and drops the rest, so a faster fake gives fewer samples, not
other latencies. Ours and the baseline alternate batch by batch, rotating which goes first.

    .venv/bin/python bench/status_push.py [--repeats 3] [--frames 20] [--pages 50] [--jobs 50] [--events 100]
    .venv/bin/python bench/status_push.py --smoke      # tiny sizes, seconds (CI)

--write-docs: also put the tables in docs/benchmarks.md (the B4 and B5 blocks). Redis: --redis (DB 7 by
default; it is flushed at start, DB 0 never is). DATABASE_URL selects PostgreSQL as usual.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import (
    Process,
    Series,
    database_url,
    free_port,
    interleave,
    machine,
    setup_django,
    table,
    throwaway_database,
    wait_until_up,
    write_docs,
)

PASSWORD = "bench-pass"  # noqa: S105 - a throwaway user in a throwaway database
STARTUP_SECONDS = 60
# Every job draws another picture: ComfyUI's cache skips an unchanged node, and its progress with it.
WIDTHS = itertools.count(64)


# ----------------------------------------------------------------------------- processes


def start_web_server(env: dict, folder: Path) -> tuple[Process, int]:
    from mcn_site.lib.web_server import web_server_argv

    port = free_port()
    web = Process(web_server_argv(host="127.0.0.1", port=port, workers=1), env=env, log=folder / "web.log")
    wait_until_up(f"http://127.0.0.1:{port}/healthz", process=web, timeout=STARTUP_SECONDS)
    return web, port


# ----------------------------------------------------------------------------- the fake and the pages


def timed_fake_class():
    from tests.fakes.comfyui import FakeComfyUI

    class TimedComfyUI(FakeComfyUI):
        """The fake ComfyUI, noting when each `progress` frame goes out (on the clock the pages read)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.progress_sent: dict[tuple[str, int], float] = {}

        async def _send(self, state, event, data, sid):
            if event == "progress":
                self.progress_sent[(str(data["node"]), int(data["value"]))] = time.monotonic()
            await super()._send(state, event, data, sid)

    return TimedComfyUI


class Page:
    """One open storyboard page: its socket, and every frame it read with the time it read it."""

    def __init__(self, ws):
        self.ws = ws
        self.frames: list[tuple[float, dict]] = []
        self.arrived = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            self.frames.append((time.monotonic(), json.loads(message.data)))
            self.arrived.set()

    def take(self) -> list[tuple[float, dict]]:
        frames, self.frames = self.frames, []
        return frames


async def open_pages(*, port: int, post_id: int, cookie: str, count: int) -> list[Page]:
    import aiohttp

    session = aiohttp.ClientSession(cookies={"sessionid": cookie})
    pages = []
    for _ in range(count):
        ws = await session.ws_connect(
            f"ws://127.0.0.1:{port}/ws/posts/{post_id}/", origin=f"http://127.0.0.1:{port}", max_msg_size=0
        )
        pages.append(Page(ws))
    await wait_all(pages, lambda frame: frame.get("event") == "hello", what="the hello of every page")
    for page in pages:
        page.take()
    pages[0].session = session  # closed with the pages
    return pages


async def close_pages(pages: list[Page]) -> None:
    for page in pages:
        await page.ws.close()
    await pages[0].session.close()


async def wait_all(pages: list[Page], done, *, what: str, timeout: float = 60.0) -> None:
    """Until every page has read a frame for which done(frame) holds."""
    deadline = time.monotonic() + timeout
    for page in pages:
        while not any(done(frame) for _, frame in page.frames):
            page.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"timed out waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(page.arrived.wait(), left)


# ----------------------------------------------------------------------------- B4, B4b


class Stage:
    """One post on one running server, its pages, the fake and the worker: the batches B4/B4b run."""

    def __init__(self, *, loop, pages, post, fake, template, frames: int, pace: float):
        self.loop, self.pages, self.post, self.fake, self.template = loop, pages, post, fake, template
        self.frames, self.pace = frames, pace
        self.ours: list[float] = []  # ms, every sample of every batch
        self.raw: list[float] = []
        self.lost = 0  # (frame, page) pairs another page read and this one did not

    def ours_batch(self) -> float:
        """One job: `frames` progress frames paced by the fake; returns the batch's p95 (ms)."""
        job = make_shot_job(post=self.post, template=self.template, width=next(WIDTHS))
        self.fake.progress_sent.clear()
        finished = lambda frame: frame.get("event") == "job.finished" and frame.get("job_id") == job.pk  # noqa: E731
        self.loop.run_until_complete(wait_all(self.pages, finished, what=f"job {job.pk} to finish on every page"))
        sent = dict(self.fake.progress_sent)
        samples, seen = [], []
        for page in self.pages:
            keys = set()
            for at, frame in page.take():
                key = (str(frame.get("node")), int(frame.get("value") or 0))
                if frame.get("event") == "job.progress" and frame.get("job_id") == job.pk and key in sent:
                    samples.append((at - sent[key]) * 1000)
                    keys.add(key)
            seen.append(keys)
        everyone = set().union(*seen)
        self.lost += sum(len(everyone - keys) for keys in seen)
        self.ours += samples
        if not samples:
            raise SystemExit(f"no progress frame of job {job.pk} reached the pages (worker.log in the temp folder)")
        return Series("batch", samples).percentile(0.95)

    def raw_batch(self) -> float:
        """`frames` raw group_sends to the post's group, one at a time; returns the batch's p95 (ms)."""
        samples = self.loop.run_until_complete(self._raw())
        self.raw += samples
        return Series("batch", samples).percentile(0.95)

    async def _raw(self) -> list[float]:
        from channels.layers import get_channel_layer

        from mcn_site.realtime import post_group

        layer = get_channel_layer()
        samples = []
        for n in range(self.frames):
            mark = f"{time.monotonic_ns()}-{n}"
            started = time.monotonic()
            message = {"type": "relay", "event": "bench", "payload": {"n": mark}}
            await layer.group_send(post_group(self.post.pk), message)
            is_mark = lambda frame, mark=mark: frame.get("n") == mark  # noqa: E731
            await wait_all(self.pages, is_mark, what="a raw group_send on every page", timeout=10)
            for page in self.pages:
                samples += [(at - started) * 1000 for at, frame in page.take() if is_mark(frame)]
            await asyncio.sleep(self.pace / 2)
        return samples


def make_shot_job(*, post, template, width: int):
    """A picture job for a new shot of `post`, queued the way posts.pipeline queues one (the worker is rung)."""
    from django.db import transaction

    from factory.services import job_enqueue
    from posts.models import Shot
    from posts.pipeline import shot_subject

    with transaction.atomic():
        position = Shot.objects.filter(post=post).count() + 1
        shot = Shot.objects.create(post=post, position=position, kind="a_roll", script=f"Line {position}.")
        job = job_enqueue(template=template, params={"WIDTH": width}, subject=shot_subject(shot, "picture", "0" * 16))
        Shot.objects.filter(pk=shot.pk).update(job=job)
    return job


def run_b4(*, env, folder, web, port, cookie, post, template, pages: int, repeats: int, frames: int, pace: float):
    """Returns the rows of the B4 table: 1 page, then `pages` pages."""
    fake = timed_fake_class()().start()
    fake.steps_per_node = frames // 2  # two nodes (EmptyImage, SaveImage), each reporting its steps
    fake.step_seconds = pace
    worker = Process(
        [sys.executable, "manage.py", "run_gpu_worker", "--comfyui-url", fake.url, "--name", "bench-gpu"],
        env=env,
        log=folder / "worker.log",
    )
    loop = asyncio.new_event_loop()
    rows = []
    try:
        for count in (1, pages):
            stage_pages = loop.run_until_complete(open_pages(port=port, post_id=post.pk, cookie=cookie, count=count))
            stage = Stage(
                loop=loop, pages=stage_pages, post=post, fake=fake, template=template, frames=frames, pace=pace
            )
            try:
                per_batch = interleave({"ours": stage.ours_batch, "raw": stage.raw_batch}, repeats=repeats)
            except SystemExit:
                web.check()  # a server that went away says so (its log), rather than "timed out"
                worker.check()
                raise
            loop.run_until_complete(close_pages(stage_pages))
            rows += b4_rows(stage, per_batch, count)
    finally:
        worker.stop()
        fake.stop()
        loop.close()
    return rows


def b4_rows(stage: Stage, per_batch: dict[str, Series], pages: int) -> list[list]:
    raw, ours = Series("raw", stage.raw), Series("ours", stage.ours)
    who = "1 page" if pages == 1 else f"{pages} pages"
    expected = stage.frames * len(per_batch["ours"].samples) * pages

    def row(label: str, series: Series, batches: Series, note: str) -> list:
        return [
            label,
            len(series.samples),
            f"{series.median:.2f}",
            f"{series.percentile(0.95):.2f}",
            f"{batches.min:.2f} / {batches.median:.2f} / {batches.max:.2f}",
            f"{series.percentile(0.95) / raw.percentile(0.95):.2f}",
            f"{batches.min / per_batch['raw'].min:.2f}",
            note,
        ]

    return [
        row(f"raw `group_send` -> consumer -> {who} (baseline)", raw, per_batch["raw"], "0 lost"),
        row(
            f"fake ComfyUI `progress` -> worker -> `publish()` -> {who}",
            ours,
            per_batch["ours"],
            f"{stage.lost} lost; {len(ours.samples)} of {expected} frames pushed",
        ),
    ]


B4_HEADERS = [
    "path",
    "samples",
    "p50 ms",
    "p95 ms",
    "p95 ms per batch min / median / max",
    "p95 / baseline",
    "min batch p95 / baseline",
    "delivery",
]


# ----------------------------------------------------------------------------- B5


def run_b5(*, env, folder, port, cookie, post, template, jobs: int, events: int, pages: int, step: float):
    """One B5 row: `jobs` at once, `events` progress frames each, `step` seconds apart (0: back to back)."""
    from factory.models import Job, JobStatus
    from tests.fakes.comfyui import FakeComfyUI

    fakes = [FakeComfyUI().start() for _ in range(jobs)]
    loop = asyncio.new_event_loop()
    try:
        for fake in fakes:
            fake.steps_per_node = events // 2  # two nodes: `events` progress frames a job
            fake.step_seconds = step
        made = [make_shot_job(post=post, template=template, width=next(WIDTHS)) for _ in range(jobs)]
        plan = {job.pk: fake.url for job, fake in zip(made, fakes, strict=True)}
        b5_pages = loop.run_until_complete(open_pages(port=port, post_id=post.pk, cookie=cookie, count=pages))
        started = time.monotonic()
        runner = Process([sys.executable, __file__, "--run-jobs", json.dumps(plan)], env=env, log=folder / "b5.log")

        def all_finished(page: Page) -> bool:
            return {f["job_id"] for _, f in page.frames if f.get("event") == "job.finished"} >= set(plan)

        async def watch() -> None:
            while runner.process.poll() is None or not all(all_finished(page) for page in b5_pages):
                if runner.process.poll() not in (None, 0) or time.monotonic() - started > 120:
                    return
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # anything still in flight

        loop.run_until_complete(watch())
        wall = time.monotonic() - started
        if runner.process.poll() not in (None, 0):
            runner.check()  # a job raised: its output says which
        runner.stop()
        sent = sum(len(fake.sent_events("progress")) for fake in fakes)
        statuses = dict(Job.objects.filter(pk__in=plan).values_list("pk", "status"))
        succeeded = sum(status == JobStatus.SUCCEEDED for status in statuses.values())
        finals, pushed = [], []
        for page in b5_pages:
            frames = [frame for _, frame in page.take()]
            finished = [f for f in frames if f.get("event") == "job.finished" and f.get("job_id") in plan]
            finals.append(len({f["job_id"] for f in finished if f.get("status") == JobStatus.SUCCEEDED}))
            # Progress proper names a node; the push a job's start makes (status running) does not.
            pushed.append(sum(f.get("event") == "job.progress" and bool(f.get("node")) for f in frames))
        loop.run_until_complete(close_pages(b5_pages))
    finally:
        for fake in fakes:
            fake.stop()
        loop.close()
    row = [
        f"{jobs} x {events}, " + (f"{step * 1000:g} ms apart" if step else "back to back"),
        pages,
        f"{succeeded} / {jobs}",
        f"{min(finals)} / {jobs} ({min(finals) / jobs:.0%})",
        sent,
        f"{min(pushed)} / {max(pushed)}",
        f"{1 - max(pushed) / sent:.1%}" if sent else "n/a",
        f"{wall:.1f}",
    ]
    return row, min(finals) == jobs == succeeded


B5_HEADERS = [
    "jobs x progress frames",
    "pages",
    "jobs succeeded (rows)",
    "succeeded states on every page",
    "progress frames the fakes sent",
    "progress pushes a page read, min / max",
    "coalesced",
    "wall s (worker start included)",
]


def run_jobs(plan: dict[str, str]) -> int:
    """--run-jobs: the GPU worker's code for each job, all at once in threads (one per GPU server)."""
    setup_django()
    from django.db import connection

    from factory.execution import run_comfyui_job

    failures = []

    def run(job_id: int, url: str) -> None:
        try:
            run_comfyui_job(job_id, server_url=url)
        except Exception as error:  # reported below; the row says the rest
            failures.append(f"job {job_id}: {error!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(int(job_id), url)) for job_id, url in plan.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


# ----------------------------------------------------------------------------- main


def seed():
    """A producer who may see one post, a session for the pages, and the picture template."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from factory.services import template_import
    from tests.factories import TINY_WORKFLOW, make_artist, make_post, make_user

    user = make_user(username="bench-producer")
    post = make_post(artist=make_artist(members=[user]))
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    template = template_import(name="bench-picture", workflow=TINY_WORKFLOW)
    return session.session_key, post, template


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="batches of ours and of the baseline (B4, B4b)")
    parser.add_argument("--frames", type=int, default=20, help="progress frames a batch (B4, B4b)")
    parser.add_argument("--pace", type=float, default=0.6, help="seconds between progress frames (B4, B4b)")
    parser.add_argument("--pages", type=int, default=50, help="open storyboard pages (B4b)")
    parser.add_argument("--jobs", type=int, default=50, help="concurrent jobs (B5)")
    parser.add_argument("--events", type=int, default=100, help="progress frames a job (B5)")
    parser.add_argument("--b5-pages", type=int, default=3, help="open storyboard pages (B5)")
    parser.add_argument("--b5-step", type=float, default=0.01, help="seconds between frames, B5's second row")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7", help="flushed at start; never DB 0")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks that it runs")
    parser.add_argument("--write-docs", action="store_true", help="put the tables in docs/benchmarks.md")
    parser.add_argument("--run-jobs", help=argparse.SUPPRESS)  # internal: the B5 worker process
    args = parser.parse_args()
    if args.run_jobs:
        return run_jobs(json.loads(args.run_jobs))
    if args.smoke:
        args.repeats, args.frames, args.pages, args.jobs, args.events, args.b5_pages = 1, 4, 3, 3, 10, 2

    import redis

    connection = redis.Redis.from_url(args.redis)
    if connection.connection_pool.connection_kwargs.get("db", 0) == 0:
        raise SystemExit("--redis must name a Redis database other than 0: the bench flushes it")
    connection.flushdb()
    folder = Path(tempfile.mkdtemp(prefix="mcn-status-push-"))
    os.environ.update(
        REDIS_URL=args.redis,
        CHANNELS_PREFIX=f"bench{os.getpid()}",  # pub/sub channels are shared by every Redis DB
        MEDIA_ROOT=str(folder / "media"),
        SECRET_KEY="bench-only",  # noqa: S106 - the pages' session is signed with it, here and in the web server
    )
    setup_django()
    import channels
    import channels_redis
    import django

    with throwaway_database() as engine:
        cookie, post, template = seed()
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
        }
        web, port = start_web_server(env, folder)
        try:
            b4 = run_b4(
                env=env,
                web=web,
                folder=folder,
                port=port,
                cookie=cookie,
                post=post,
                template=template,
                pages=args.pages,
                repeats=args.repeats,
                frames=args.frames,
                pace=args.pace,
            )
            web.check()
            b5 = [
                run_b5(
                    env=env,
                    folder=folder,
                    port=port,
                    cookie=cookie,
                    post=post,
                    template=template,
                    jobs=args.jobs,
                    events=args.events,
                    pages=args.b5_pages,
                    step=step,
                )
                for step in (0.0, args.b5_step)
            ]
        finally:
            web.stop()
            connection.flushdb()
    shutil.rmtree(folder)  # kept when the run failed: the web server, worker and B5 logs are there
    versions = {
        "Django": django.__version__,
        "channels": channels.__version__,
        "channels-redis": channels_redis.__version__,
        "database": engine,
    }
    load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    b4_body = (
        f"{args.repeats} batches of {args.frames} progress frames each way, paced {args.pace} s, interleaved; "
        f"{machine(**versions)}; {load}\n\n{table(B4_HEADERS, b4)}"
    )
    b5_body = f"{machine(**versions)}; {load}\n\n{table(B5_HEADERS, [row for row, _ in b5])}"
    print(b4_body, b5_body, sep="\n\n")
    if args.write_docs:
        write_docs("B4", b4_body)
        write_docs("B5", b5_body)
    if not all(complete for _, complete in b5):
        print("B5: a final state did not reach every page", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
