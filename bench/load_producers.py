"""Load test: N simulated producers edit storyboards and get posts approved, against the whole running system.

Starts MCN OS as production runs it (Procfile, scripts/dev.py): uvicorn (HTTP through Django's ASGI
handler; --web-workers processes, by default one per core up to 4), one GPU worker (`run_gpu_worker`)
bound to a fake ComfyUI, the CPU worker (`rqworker cpu default --with-scheduler`: voices, renders, the
director) and `reconcile_jobs`; the fake CosyVoice makes the voices and the fake LLM answers the
director. All on a throwaway database (a temporary SQLite file, or a database of its own on the
PostgreSQL server DATABASE_URL names) and its own Redis database (flushed at the start), with media in
a temporary folder.

Seeds N producers (each a member of one or two artists; artists are shared, so two producers edit
the same posts), a few reviewers (members of every artist), API tokens for all, and per producer a few
draft posts of 5 short shots (spoken A-roll lines of about a second, 1 s B-roll cutaways, pictures
from the fake ComfyUI). Then N asyncio producers loop for --seconds over the API, without pause:

    GET a post (one of their artists')
      draft/rejected/failed: PATCH a spoken shot's script (If-Match), then reorder the shots or lock/unlock one
      draft, short, approvals left: submit; a reviewer GETs it and approves (or, now and then, rejects)
      review: a reviewer decides it (a submit whose approval lost a race)
      rejected: now and then ask the director for a rewrite from the feedback (`generate`)

409/412 (somebody saved first), 400 for a state that moved on between read and write (the post was
submitted, the shot locked) and 429 (the director's throttle) are expected outcomes of concurrent
editors, counted apart; anything else, and every 5xx, is an error. Each producer gets at most
--approvals posts approved, so the renders (ffmpeg, CPU) can drain. After the load it waits (bounded)
until every approved post is done or failed, then checks that nothing was lost (every post that was
ever approved is done, or failed with a reason), that no job row is left queued or running, and that
no process died. The baseline is the same server's floor: the same clients GET /healthz (no database,
the same middleware) for a few seconds before the load and again after the drain.

    .venv/bin/python bench/load_producers.py [--producers 20] [--seconds 60] [--approvals 1]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mcn_bench .venv/bin/python bench/load_producers.py
    .venv/bin/python bench/load_producers.py --smoke       # 3 producers, 10 s, 1 approval each (CI)

Exits 1 when a check fails. --write-docs: also put the tables in docs/benchmarks.md (the LOAD block).
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

from harness import (
    ROOT,
    Process,
    Series,
    database_url,
    free_port,
    machine,
    ratio,
    setup_django,
    table,
    throwaway_database,
    write_docs,
)

sys.path.insert(0, str(ROOT))  # tests.fakes, mcn_site.lib

from mcn_site.lib.web_server import default_workers, web_server_argv
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.cosyvoice import running_cosyvoice
from tests.fakes.llm import FakeLLM

PYTHON = sys.executable
LLM_KEY = "sk-bench-load"
SPEAKER = "中文女"  # a speaker the fake CosyVoice knows
LINES = ["大家好。", "金价创了新高。", "下期见！", "今天聊黄金。", "记得点赞。", "我们开始吧。"]  # 0.75-1.5 s each
MAX_SUBMIT_SECONDS = Decimal("12")  # only short storyboards go to review: a director rewrite (~30 s) stays a draft
REJECT_SHARE = 0.15
REWRITE_SHARE = 0.5
EDITABLE = {"draft", "rejected", "failed"}
# A 400 with one of these codes means the post or shot moved on between our read and our write.
RACED = {"not_editable", "bad_transition", "locked", "gone", "bad_order"}
# What the fake LLM answers the director: a valid storyboard of ~30 s (the director's target).
STORYBOARD_REPLY = json.dumps(
    {
        "shots": [
            {"kind": "a_roll", "duration": 5, "script": "大家好，今天重新聊聊黄金。", "visual_prompt": "Host"},
            {"kind": "b_roll", "duration": 8, "script": "", "visual_prompt": "Gold bars"},
            {"kind": "a_roll", "duration": 5, "script": "金价为什么涨？", "visual_prompt": "Host"},
            {"kind": "b_roll", "duration": 7, "script": "", "visual_prompt": "A chart"},
            {"kind": "a_roll", "duration": 5, "script": "下期见！", "visual_prompt": "Host"},
        ]
    },
    ensure_ascii=False,
)


# --------------------------------------------------------------------------- the system


class System:
    """The processes `make run` starts (less the scheduler: no schedules here), each in its own session."""

    def __init__(self, *, env: dict, comfyui_url: str, port: int, logs: Path, web_workers: int):
        self.port = port
        commands = {
            "web": web_server_argv(host="127.0.0.1", port=port, workers=web_workers)[1:],
            "gpu-worker": ["manage.py", "run_gpu_worker", "--comfyui-url", comfyui_url, "--name", "bench-gpu"],
            "cpu-worker": ["manage.py", "rqworker", "cpu", "default", "--with-scheduler", "--name", "bench-cpu"],
            "reconciler": ["manage.py", "reconcile_jobs", "--interval", "10"],
        }
        self.logs = logs
        self.processes = {
            name: Process([PYTHON, *argv], env=env, log=logs / f"{name}.log") for name, argv in commands.items()
        }

    def dead(self) -> dict[str, int]:
        return {name: p.process.returncode for name, p in self.processes.items() if p.process.poll() is not None}

    def wait_ready(self, *, timeout: float = 90.0) -> None:
        """The web server answers /healthz and both rq workers have registered."""
        import django_rq
        from rq import Worker

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.dead():
                raise SystemExit(f"A process exited while starting: {self.dead()}\n{self.tails()}")
            try:
                up = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            if up and len(Worker.all(connection=django_rq.get_connection("default"))) >= 2:
                return
            time.sleep(0.3)
        raise SystemExit(f"The system did not start in {timeout:.0f} s\n{self.tails()}")

    def tails(self, lines: int = 15) -> str:
        out = []
        for name in self.processes:
            text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self, grace: float = 20.0) -> None:
        for process in self.processes.values():  # all at once: each finishes its current job meanwhile
            process.terminate()
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            process.stop(grace=max(0.1, deadline - time.monotonic()))


# --------------------------------------------------------------------------- the data


@dataclass
class Producer:
    n: int
    token: str
    reviewer_token: str
    post_ids: list[int]
    approvals_left: int
    rng: random.Random = field(repr=False)


def seed(*, producers: int, approvals: int, media: Path) -> list[Producer]:
    """Users, artists, tokens, shot workflows and draft posts of 5 short shots; returns the producers."""
    from django.contrib.auth.models import Group, User
    from PIL import Image

    from artists.models import Artist, Niche, Voice
    from artists.services import api_token_create
    from factory.services import template_import
    from mcn_site.lib import roles
    from posts.models import Post, PostEvent, Shot, ShotKind, ShotWorkflow
    from tests.factories import A_ROLL_WORKFLOW, B_ROLL_WORKFLOW  # what the production tests run

    for kind, workflow in ((ShotKind.A_ROLL, A_ROLL_WORKFLOW), (ShotKind.B_ROLL, B_ROLL_WORKFLOW)):
        template = template_import(name=f"load-{kind.replace('_', '-')}", workflow=workflow)
        ShotWorkflow.objects.create(kind=kind, template_name=template.name)
    face = "artists/faces/load-face.png"
    (media / face).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (190, 24, 93)).save(media / face)
    voice = Voice.objects.create(name="Load voice", speaker_id=SPEAKER)
    artist_count = max(2, round(producers * 0.6))  # fewer artists than producers: most are shared
    artists = [
        Artist.objects.create(
            stage_name=f"Load artist {a}", slug=f"load-{a}", niche=Niche.FINANCE, voice=voice, face_anchor=face
        )
        for a in range(artist_count)
    ]
    producer_group, reviewer_group = Group.objects.get(name=roles.PRODUCER), Group.objects.get(name=roles.REVIEWER)
    reviewers = []
    for r in range(max(1, producers // 4)):
        reviewer = User.objects.create_user(username=f"reviewer{r}", is_staff=True)
        reviewer.groups.add(reviewer_group)
        reviewer.artists.set(artists)  # reviewers see every artist
        reviewers.append(api_token_create(user=reviewer, name="load test")[1])
    users = []
    for n in range(producers):
        user = User.objects.create_user(username=f"producer{n}", is_staff=True)
        user.groups.add(producer_group)
        mine = [artists[n % artist_count]] + ([artists[(n + 1) % artist_count]] if n % 3 == 0 else [])
        for artist in mine:
            artist.members.add(user)
        for p in range(approvals + 2):
            post = Post.objects.create(title=f"Load post {n}.{p}", artist=mine[0], brief="Gold.", updated_by=user)
            PostEvent.objects.create(post=post, kind=PostEvent.Kind.CREATED, actor=user, to_status=post.status)
            Shot.objects.bulk_create(
                Shot(post=post, position=i + 1, kind=kind, duration_seconds=Decimal("1.0"), script=script, **extra)
                for i, (kind, script, extra) in enumerate(
                    [
                        (ShotKind.A_ROLL, LINES[0], {}),
                        (ShotKind.B_ROLL, "", {"visual_prompt": "Gold bars"}),
                        (ShotKind.A_ROLL, LINES[1], {}),
                        (ShotKind.B_ROLL, "", {"visual_prompt": "A chart"}),
                        (ShotKind.A_ROLL, LINES[2], {}),
                    ]
                )
            )
        users.append((user, mine))
    result = []
    for n, (user, mine) in enumerate(users):
        post_ids = list(Post.objects.filter(artist__in=mine).values_list("pk", flat=True))
        result.append(
            Producer(
                n=n,
                token=api_token_create(user=user, name="load test")[1],
                reviewer_token=reviewers[n % len(reviewers)],
                post_ids=post_ids,
                approvals_left=approvals,
                rng=random.Random(n),  # noqa: S311 - a repeatable walk, not a secret
            )
        )
    return result


# --------------------------------------------------------------------------- the client


@dataclass
class Tally:
    latencies: dict[str, Series] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    server_errors: int = 0
    approved: set[int] = field(default_factory=set)
    rewrites: int = 0
    rewriting: set[int] = field(default_factory=set)  # rewrite asked, the post still reads as rejected

    def record(self, endpoint: str, seconds: float, outcome: str) -> None:
        self.latencies.setdefault(endpoint, Series(endpoint)).samples.append(seconds)
        counts = self.outcomes.setdefault(endpoint, {"ok": 0, "conflict": 0, "raced": 0, "throttled": 0, "error": 0})
        counts[outcome] += 1

    def count(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.outcomes.values())


class Api:
    def __init__(self, client: httpx.AsyncClient, tally: Tally):
        self.client, self.tally = client, tally

    async def call(self, endpoint: str, method: str, url: str, *, token: str, etag: str | None = None, body=None):
        """One request, timed and classified; returns the response when it succeeded (2xx), else None."""
        headers = {"Authorization": f"Token {token}"}
        if etag:
            headers["If-Match"] = etag
        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, headers=headers, json=body)
        except httpx.HTTPError as error:
            self.tally.record(endpoint, time.perf_counter() - started, "error")
            self.tally.error_samples.append(f"{endpoint}: {type(error).__name__}: {error}")
            return None
        elapsed = time.perf_counter() - started
        code = response.status_code
        if 200 <= code < 300:
            self.tally.record(endpoint, elapsed, "ok")
            return response
        error_code = ""
        with contextlib.suppress(ValueError, KeyError, TypeError):
            error_code = response.json()["error"]["code"]
        if code in (409, 412):
            outcome = "conflict"
        elif (code == 400 and error_code in RACED) or (code == 404 and url.startswith("/api/v1/shots/")):
            # The post moved on, or a director rewrite replaced the shot we had read.
            outcome = "raced"
        elif code == 429:
            outcome = "throttled"
        else:
            outcome = "error"
            self.tally.server_errors += code >= 500
            self.tally.error_samples.append(f"{endpoint}: {code} {response.text[:300]}")
        self.tally.record(endpoint, elapsed, outcome)
        return None


async def review(api: Api, producer: Producer, post_id: int) -> None:
    """A reviewer reads the post and decides: approve while the producer has approvals left, else reject."""
    read = await api.call("GET post", "GET", f"/api/v1/posts/{post_id}/", token=producer.reviewer_token)
    if read is None or read.json()["status"] != "review":
        return
    etag = read.headers["ETag"]
    if producer.approvals_left > 0 and producer.rng.random() >= REJECT_SHARE:
        url = f"/api/v1/posts/{post_id}/approve"
        if await api.call("POST approve", "POST", url, token=producer.reviewer_token, etag=etag, body={}):
            producer.approvals_left -= 1
            api.tally.approved.add(post_id)
    else:
        body = {"feedback": "Shorter, and say the price first."}
        url = f"/api/v1/posts/{post_id}/reject"
        await api.call("POST reject", "POST", url, token=producer.reviewer_token, etag=etag, body=body)


async def edit(api: Api, producer: Producer, post: dict, etag: str) -> str | None:
    """Rewrite one unlocked spoken line, then reorder the shots or lock/unlock one. Returns the latest ETag."""
    rng, shots = producer.rng, post["shots"]
    spoken = [s for s in shots if s["kind"] == "a_roll" and not s["locked"]]
    if spoken:
        shot = rng.choice(spoken)
        body = {"script": rng.choice([line for line in LINES if line != shot["script"]])}
        answer = await api.call(
            "PATCH shot", "PATCH", f"/api/v1/shots/{shot['id']}/", token=producer.token, etag=etag, body=body
        )
        if answer is None:
            return None
        etag = answer.headers["ETag"]
    if rng.random() < 0.5:
        order = [s["id"] for s in shots]
        rng.shuffle(order)
        url = f"/api/v1/posts/{post['id']}/shots/reorder"
        answer = await api.call("POST reorder", "POST", url, token=producer.token, etag=etag, body={"order": order})
    else:
        locked = [s for s in shots if s["locked"]]
        # Lock while fewer than two are locked, else unlock one: spoken lines stay free to edit.
        shot, action = (rng.choice(shots), "lock") if len(locked) < 2 else (rng.choice(locked), "unlock")
        url = f"/api/v1/shots/{shot['id']}/{action}"
        answer = await api.call(f"POST {action}", "POST", url, token=producer.token, etag=etag, body={})
    return answer.headers["ETag"] if answer is not None else None


async def produce(api: Api, producer: Producer, stop_at: float) -> None:
    rng = producer.rng
    while time.monotonic() < stop_at:
        post_id = rng.choice(producer.post_ids)
        read = await api.call("GET post", "GET", f"/api/v1/posts/{post_id}/", token=producer.token)
        if read is None:
            continue
        post, etag = read.json(), read.headers["ETag"]
        status = post["status"]
        if status == "review":
            await review(api, producer, post_id)
            continue
        if status != "rejected":
            api.tally.rewriting.discard(post_id)
        elif post_id not in api.tally.rewriting and rng.random() < REWRITE_SHARE:
            # A producer asks once and waits for the director: the post stays rejected until its job runs.
            url = f"/api/v1/posts/{post_id}/generate"
            if await api.call("POST generate", "POST", url, token=producer.token, etag=etag, body={}):
                api.tally.rewrites += 1
                api.tally.rewriting.add(post_id)
            continue
        if status not in EDITABLE:
            continue
        etag = await edit(api, producer, post, etag)
        seconds = sum(Decimal(str(s["duration_seconds"])) for s in post["shots"])
        ready = etag and status == "draft" and producer.approvals_left > 0 and seconds <= MAX_SUBMIT_SECONDS
        if ready and rng.random() < 0.3:
            url = f"/api/v1/posts/{post_id}/submit"
            if await api.call("POST submit", "POST", url, token=producer.token, etag=etag, body={}):
                await review(api, producer, post_id)


async def floor(base_url: str, *, clients: int, seconds: float) -> tuple[Series, int]:
    """The baseline: `clients` loops GET /healthz for `seconds`. Returns the latencies and the non-200 count."""
    series, bad = Series("GET /healthz"), 0
    stop_at = time.monotonic() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal bad
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                ok = (await client.get("/healthz")).status_code == 200
            except httpx.HTTPError:
                ok = False
            series.samples.append(time.perf_counter() - started)
            bad += not ok

    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=clients)) as c:
        await asyncio.gather(*(loop(c) for _ in range(clients)))
    return series, bad


async def load(base_url: str, producers: list[Producer], seconds: float) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=len(producers) * 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        api = Api(client, tally)
        started = time.monotonic()
        await asyncio.gather(*(produce(api, p, started + seconds) for p in producers))
        return tally, time.monotonic() - started


# --------------------------------------------------------------------------- the checks


def settled(approved_ids: set[int]) -> tuple[bool, dict]:
    """Whether every approved post is done or failed and no job row is queued or running."""
    from factory.models import Job, JobStatus
    from posts.models import Post

    statuses = dict(Post.objects.filter(pk__in=approved_ids).values_list("pk", "status"))
    open_jobs = Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).count()
    unsettled = [pk for pk, status in statuses.items() if status not in ("done", "failed")]
    return not unsettled and not open_jobs, {"unsettled": len(unsettled), "open_jobs": open_jobs}


def drain(approved_ids: set[int], *, timeout: float, system: System) -> tuple[float, dict]:
    started = time.monotonic()
    while True:
        done, state = settled(approved_ids)
        if done or time.monotonic() - started > timeout or system.dead():
            return time.monotonic() - started, state
        time.sleep(0.5)


def audit(tally: Tally) -> dict:
    """What the database says: every post ever approved, where it ended, and why those that failed did."""
    from factory.models import Job, JobStatus
    from posts.models import Post, PostEvent

    ever = set(
        PostEvent.objects.filter(kind=PostEvent.Kind.STATUS, to_status="approved").values_list("post_id", flat=True)
    )
    rows = list(Post.objects.filter(pk__in=ever).values("pk", "status", "failure", "final_video"))
    done = [r for r in rows if r["status"] == "done" and r["final_video"]]
    failed = [r for r in rows if r["status"] == "failed" and r["failure"].strip()]
    lost = [r for r in rows if r not in done and r not in failed]
    jobs = dict.fromkeys(JobStatus.values, 0)
    for status in Job.objects.values_list("status", flat=True):
        jobs[status] += 1
    job_failures: dict[str, int] = {}
    for kind, message in Job.objects.filter(status=JobStatus.FAILED).values_list("kind", "error_message"):
        reason = f"{kind}: {message[:160]}"
        job_failures[reason] = job_failures.get(reason, 0) + 1
    return {
        "approved": len(ever),
        "client_approved": len(tally.approved),
        "missing_from_db": len(tally.approved - ever),
        "done": len(done),
        "failed": len(failed),
        "failures": sorted({r["failure"] for r in failed}),
        "lost": lost,
        "jobs": jobs,
        "job_failures": job_failures,
    }


# --------------------------------------------------------------------------- the report


def ms(series: Series, share: float) -> float:
    return series.percentile(share) * 1000


ENDPOINTS = ["GET post", "PATCH shot", "POST reorder", "POST lock", "POST unlock", "POST submit"]
ENDPOINTS += ["POST approve", "POST reject", "POST generate"]


def report(
    args,
    *,
    engine: str,
    tally: Tally,
    elapsed: float,
    floors: list[Series],
    audit_: dict,
    drained: float,
    drain_state: dict,
    dead: dict,
    load_avg: str,
) -> tuple[str, list[str]]:
    baseline = Series("GET /healthz", [s for f in floors for s in f.samples])
    floor_seconds = 2 * args.baseline_seconds
    rows = [
        [
            f"GET /healthz, {args.producers} clients (baseline)",
            len(baseline.samples),
            f"{len(baseline.samples) / floor_seconds:.1f}",
            "-",
            "-",
            "-",
            f"{ms(baseline, 0.5):.1f}",
            f"{ms(baseline, 0.95):.1f}",
            f"{ms(baseline, 0.99):.1f}",
            "1.00",
        ]
    ]
    total = 0
    for endpoint in [e for e in ENDPOINTS if e in tally.latencies] + sorted(set(tally.latencies) - set(ENDPOINTS)):
        series, counts = tally.latencies[endpoint], tally.outcomes[endpoint]
        total += len(series.samples)
        rows.append(
            [
                endpoint,
                len(series.samples),
                f"{len(series.samples) / elapsed:.1f}",
                counts["ok"],
                counts["conflict"],
                counts["raced"] + counts["throttled"],
                f"{ms(series, 0.5):.1f}",
                f"{ms(series, 0.95):.1f}",
                f"{ms(series, 0.99):.1f}",
                ratio(series.percentile(0.95), baseline.percentile(0.95)),
            ]
        )
    everything = Series("all", [s for series in tally.latencies.values() for s in series.samples])
    rows.append(
        [
            "**all API requests**",
            total,
            f"{total / elapsed:.1f}",
            tally.count("ok"),
            tally.count("conflict"),
            tally.count("raced") + tally.count("throttled"),
            f"{ms(everything, 0.5):.1f}",
            f"{ms(everything, 0.95):.1f}",
            f"{ms(everything, 0.99):.1f}",
            ratio(everything.percentile(0.95), baseline.percentile(0.95)),
        ]
    )
    headers = ["endpoint", "requests", "req/s", "ok", "409/412", "400 raced / 429", "p50 ms", "p95 ms", "p99 ms"]
    headers.append("p95 / baseline p95")
    jobs = ", ".join(f"{status} {count}" for status, count in audit_["jobs"].items() if count)
    outcome_rows = [
        [
            "API req/s / baseline req/s (GET /healthz, same clients)",
            ratio(total / elapsed, len(baseline.samples) / floor_seconds),
        ],
        ["approved (client / database)", f"{audit_['client_approved']} / {audit_['approved']}"],
        ["done (final video written)", audit_["done"]],
        ["failed, with a reason", audit_["failed"]],
        ["lost (approved, neither done nor failed with a reason)", len(audit_["lost"])],
        ["director rewrites requested (fake LLM)", tally.rewrites],
        ["conflicts (409 stale / 412 If-Match)", tally.count("conflict")],
        ["raced (400: state moved on) / throttled (429)", f"{tally.count('raced')} / {tally.count('throttled')}"],
        ["errors (other 4xx, 5xx, transport)", tally.count("error")],
        ["of which 5xx", tally.server_errors],
        ["drain: load end -> last approved post settled, s", f"{drained:.1f}"],
        ["job rows at the end", jobs or "none"],
        ["job rows left queued or running", drain_state["open_jobs"]],
        ["processes that died", ", ".join(f"{n} ({c})" for n, c in dead.items()) or "none"],
    ]
    header = (
        f"{args.producers} producers for {elapsed:.0f} s, at most {args.approvals} approval(s) each; {engine}, "
        f"{machine()}; web: uvicorn, {args.web_workers} worker process(es); load average during the run {load_avg}"
    )
    body = "\n\n".join(
        [header, table(headers, rows), table(["outcome", "value"], [[str(a), b] for a, b in outcome_rows])]
    )
    problems = []
    if tally.count("error"):
        problems.append(f"{tally.count('error')} error(s): {tally.error_samples[:5]}")
    if audit_["lost"]:
        problems.append(f"{len(audit_['lost'])} approved post(s) lost: {audit_['lost'][:5]}")
    if audit_["missing_from_db"]:
        problems.append(f"{audit_['missing_from_db']} approval(s) answered 200 but not in the trail")
    if drain_state["open_jobs"] or drain_state["unsettled"]:
        problems.append(f"not drained after {drained:.0f} s: {drain_state}")
    if dead:
        problems.append(f"processes died: {dead}")
    if not audit_["approved"]:
        problems.append("no post was approved: the load did not reach production")
    return body, problems


def run(args) -> int:
    logs = Path(tempfile.mkdtemp(prefix="mcn-load-logs-"))  # kept when a check fails
    with contextlib.ExitStack() as stack:
        media = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mcn-load-media-")))
        comfyui = stack.enter_context(FakeComfyUI())
        cosyvoice = stack.enter_context(running_cosyvoice())
        llm = stack.enter_context(FakeLLM(api_key=LLM_KEY, default_reply=STORYBOARD_REPLY))
        services = {
            "REDIS_URL": args.redis,
            "MEDIA_ROOT": str(media),
            "COMFYUI_URL": comfyui.url,
            "COSYVOICE_URL": cosyvoice.url,
            "COSYVOICE_SAMPLE_RATE": "24000",
            "LLM_BASE_URL": llm.url,
            "LLM_API_KEY": LLM_KEY,
            "CHANNELS_PREFIX": f"mcnload{os.getpid()}",  # pub/sub channels are server-wide, not per Redis DB
        }
        os.environ.update(services)
        setup_django()
        import django_rq

        django_rq.get_connection("default").flushdb()
        engine = stack.enter_context(throwaway_database())
        producers = seed(producers=args.producers, approvals=args.approvals, media=media)
        env = {**os.environ, **services, "DATABASE_URL": database_url(), "SECRET_KEY": "bench-only", "DEBUG": "0"}
        env.setdefault("DATABASE_CONN_MAX_AGE", "60")  # as docs/deploy.md runs every process
        env["PYTHONUNBUFFERED"] = "1"
        from django.db import connection

        connection.close()  # the subprocesses own the database while they run (SQLite: one writer)
        system = System(env=env, comfyui_url=comfyui.url, port=free_port(), logs=logs, web_workers=args.web_workers)
        try:
            system.wait_ready()
            base_url = f"http://127.0.0.1:{system.port}"
            before, bad_before = asyncio.run(floor(base_url, clients=args.producers, seconds=args.baseline_seconds))
            tally, elapsed = asyncio.run(load(base_url, producers, args.seconds))
            load_avg = "{:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
            print(f"load over after {elapsed:.1f} s; draining (at most {args.drain_timeout:.0f} s) ...", flush=True)
            drained, drain_state = drain(tally.approved, timeout=args.drain_timeout, system=system)
            after, bad_after = asyncio.run(floor(base_url, clients=args.producers, seconds=args.baseline_seconds))
            dead = system.dead()
        finally:
            system.stop()
        audit_ = audit(tally)
        connection.close()
    body, problems = report(
        args,
        engine=engine,
        tally=tally,
        elapsed=elapsed,
        floors=[before, after],
        audit_=audit_,
        drained=drained,
        drain_state=drain_state,
        dead=dead,
        load_avg=load_avg,
    )
    if bad_before or bad_after:
        problems.append(f"the baseline's /healthz failed {bad_before + bad_after} time(s)")
    print(body)
    if audit_["failures"]:
        print("Why posts failed:", *audit_["failures"], sep="\n  ")
    if audit_["job_failures"]:
        print("Why jobs failed:", *(f"{n} x {why}" for why, n in audit_["job_failures"].items()), sep="\n  ")
    if problems:
        print("\nFAILED:", *problems, sep="\n  ")
        print(system.tails())
        print(f"Logs of every process: {logs}")
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    print("\nOK: nothing lost, no errors, every job row settled.")
    if args.write_docs:
        write_docs("LOAD", body)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--producers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the producers work")
    parser.add_argument("--approvals", type=int, default=1, help="posts each producer may get approved")
    parser.add_argument("--baseline-seconds", type=float, default=5.0, help="GET /healthz before and after")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for production")
    parser.add_argument("--web-workers", type=int, default=default_workers(), help="uvicorn worker processes")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5", help="a Redis database of its own (flushed)")
    parser.add_argument("--smoke", action="store_true", help="3 producers, 10 s, 1 approval each (CI)")
    parser.add_argument("--write-docs", action="store_true", help="fill the LOAD block of docs/benchmarks.md")
    args = parser.parse_args()
    if args.smoke:
        args.producers, args.seconds, args.approvals, args.baseline_seconds = 3, 10.0, 1, 1.0
        args.drain_timeout = min(args.drain_timeout, 240.0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
