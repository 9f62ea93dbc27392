"""B1 dispatch throughput, B2 pickup latency, B3 GPU busy fraction: the factory's path from a queued job to
ComfyUI and back, against raw rq + raw httpx/websocket round trips to the same fake ComfyUI.

The factory side is production code in production processes: rows made by `services.job_enqueue`, and
`manage.py run_gpu_worker` (rq SimpleWorker) as a subprocess against a fake ComfyUI (tests/fakes/comfyui.py,
in this process's thread), a throwaway database (SQLite file, or PostgreSQL when DATABASE_URL names one) and
a Redis database of the bench's own (flushed at start; never DB 0). The baseline is the same rq
SimpleWorker class running one plain function per job: open the socket, POST /prompt, wait for
`executing {node: null}`, GET /history, download the output with /view.

- B1: a backlog of N instant jobs (EmptyImage -> SaveImage); time from the first job's start to the last
  job's end (rq's own timestamps, so the worker's start-up is left out). The cost curve repeats it at
  backlogs of --sizes and times the first --first jobs of each, plus one reconciler pass over the backlog.
- B2: both workers idle; enqueue one job -> the fake receives its POST /prompt; interleaved samples.
- B3: a backlog of --gpu-jobs jobs of --gpu-ms of simulated GPU time; share of the wall time the fake's
  executor is busy, and where the gap between two prompts goes.

    .venv/bin/python bench/factory_dispatch.py [--jobs 500] [--repeats 3] [--sizes 100,1000,10000]
    .venv/bin/python bench/factory_dispatch.py --smoke        # tiny sizes: only checks that it runs (CI)

--write-docs: also put the tables in docs/benchmarks.md (the B1, B2 and B3 blocks).
"""

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from harness import (
    Process,
    Series,
    interleave,
    machine,
    ratio,
    setup_django,
    table,
    throwaway_database,
    write_docs,
)

RAW_QUEUE = "bench-raw"
TEMPLATE = "bench-instant"
INSTANT = {  # instant on the fake: an 8x8 picture saved as PNG
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}},
}
RQ_OPTIONS = {"job_timeout": 3600, "result_ttl": 3600, "failure_ttl": 7 * 86400}  # as factory.queues.ring
WORKER_ENV = {"DATABASE_CONN_MAX_AGE": "60"}  # as docs/deploy.md runs the workers


# --------------------------------------------------------------------------- the raw baseline (no Django)

_HTTP: dict = {}  # one httpx client per process, as the factory keeps (building one costs 20-35 ms)


def raw_round_trip(base_url: str, prompt_id: str, prefix: str, out_dir: str) -> None:
    """The baseline job: what a plain script does to run one prompt on ComfyUI and keep its output."""
    import httpx
    import websocket

    http = _HTTP.get(base_url) or _HTTP.setdefault(base_url, httpx.Client(base_url=base_url, timeout=30))
    client_id = f"raw-{os.getpid()}"
    socket = websocket.create_connection(
        base_url.replace("http://", "ws://") + f"/ws?clientId={client_id}", timeout=30, suppress_origin=True
    )
    try:
        workflow = json.loads(json.dumps(INSTANT))
        workflow["2"]["inputs"]["filename_prefix"] = prefix
        http.post("/prompt", json={"prompt": workflow, "client_id": client_id, "prompt_id": prompt_id})
        while True:
            frame = socket.recv()
            if isinstance(frame, str):
                message = json.loads(frame)
                if message["type"] == "executing" and message["data"] == {"node": None, "prompt_id": prompt_id}:
                    break
    finally:
        socket.close()
    entry = http.get(f"/history/{prompt_id}").json()[prompt_id]
    for node_id, outputs in entry["outputs"].items():
        for image in outputs.get("images", []):
            data = http.get("/view", params={k: image[k] for k in ("filename", "subfolder", "type")}).content
            Path(out_dir, f"{prompt_id}-{node_id}.png").write_bytes(data)


def raw_worker(redis_url: str, name: str, burst: bool) -> None:
    """The baseline's worker process: the same class run_gpu_worker uses (SimpleWorker), one queue."""
    from redis import Redis
    from rq import Queue, SimpleWorker

    connection = Redis.from_url(redis_url)
    SimpleWorker([Queue(RAW_QUEUE, connection=connection)], connection=connection, name=name).work(
        burst=burst, with_scheduler=True
    )


# --------------------------------------------------------------------------- processes and state


class Bench:
    """What the measurements share: the database URL for the workers, Redis, a scratch folder."""

    def __init__(self, *, redis_url: str, scratch: Path):
        from django.db import connection

        self.redis_url, self.scratch = redis_url, scratch
        db = connection.settings_dict
        if connection.vendor == "sqlite":
            self.database_url = f"sqlite:///{db['NAME']}"
        else:
            password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
            host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
            self.database_url = f"postgres://{db['USER']}{password}@{host}/{db['NAME']}"
        self.workers = 0
        self.enqueue_costs: dict[str, list[float]] = {"factory": [], "raw": []}

    def env(self) -> dict:
        return {
            **os.environ,
            **WORKER_ENV,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "MEDIA_ROOT": str(self.scratch / "media"),
            "PYTHONUNBUFFERED": "1",
        }

    def start(self, path: str, comfyui_url: str, *, burst: bool) -> Process:
        self.workers += 1
        name = f"bench-{path}-{os.getpid()}-{self.workers}"
        if path == "factory":
            argv = [sys.executable, "manage.py", "run_gpu_worker", "--comfyui-url", comfyui_url, "--name", name]
        else:
            argv = [sys.executable, __file__, "--raw-worker", "--redis", self.redis_url, "--name", name]
        return Process(argv + (["--burst"] if burst else []), env=self.env(), log=self.scratch / f"{name}.log")

    def reset(self) -> None:
        """No rows, no queues: each measurement starts from the same empty state (untimed)."""
        import django_rq

        from factory.models import Job

        Job.objects.all().delete()
        django_rq.get_connection("default").flushdb()

    def enqueue(self, path: str, count: int, comfyui_url: str) -> None:
        if path == "factory":
            from factory import services

            for n in range(count):
                services.job_enqueue(template=TEMPLATE, params={}, subject=f"bench.{n}")
        else:
            queue = self.raw_queue()
            for n in range(count):
                queue.enqueue(
                    "factory_dispatch.raw_round_trip",
                    comfyui_url,
                    str(uuid.uuid4()),
                    f"raw/{n}",
                    str(self.scratch / "raw"),
                    **RQ_OPTIONS,
                )

    def fill(self, path: str, count: int, comfyui_url: str) -> None:
        """A backlog of `count` jobs, made in bulk (setup only, never timed): for the factory, the rows, `queued`
        events and rq entries that `job_enqueue` leaves (enqueued one by one, 10 000 take minutes here)."""
        import django_rq
        from django.conf import settings
        from django.utils import timezone
        from rq import Queue

        from factory.models import Job, JobEvent, JobKind
        from factory.services import template_latest

        if path == "raw":
            queue = self.raw_queue()
            calls = [
                Queue.prepare_data(
                    "factory_dispatch.raw_round_trip",
                    args=(comfyui_url, str(uuid.uuid4()), f"raw/{n}", str(self.scratch / "raw")),
                    timeout=RQ_OPTIONS["job_timeout"],
                    result_ttl=RQ_OPTIONS["result_ttl"],
                    failure_ttl=RQ_OPTIONS["failure_ttl"],
                )
                for n in range(count)
            ]
            for start in range(0, count, 1000):
                queue.enqueue_many(calls[start : start + 1000])
            return
        template, now = template_latest(TEMPLATE), timezone.now()
        rows = Job.objects.bulk_create(
            Job(
                kind=JobKind.COMFYUI,
                template=template,
                params={},
                subject=f"bench.{n}",
                max_attempts=settings.FACTORY_MAX_ATTEMPTS,
                queued_at=now,
            )
            for n in range(count)
        )
        JobEvent.objects.bulk_create(
            JobEvent(job_id=row.pk, kind="queued", message="Queued in the normal lane.", data={}) for row in rows
        )
        queue = django_rq.get_queue("gpu")
        for start in range(0, count, 1000):
            batch = rows[start : start + 1000]
            rq_jobs = queue.enqueue_many(
                [
                    Queue.prepare_data(
                        "factory.jobs.run_job",
                        args=(row.pk,),
                        timeout=RQ_OPTIONS["job_timeout"],
                        result_ttl=RQ_OPTIONS["result_ttl"],
                        failure_ttl=RQ_OPTIONS["failure_ttl"],
                    )
                    for row in batch
                ]
            )
            for row, rq_job in zip(batch, rq_jobs, strict=True):
                row.rq_job_id = rq_job.id
            Job.objects.bulk_update(batch, ["rq_job_id"])

    def raw_queue(self):
        import django_rq
        from rq import Queue

        return Queue(RAW_QUEUE, connection=django_rq.get_connection("default"))

    def queue_name(self, path: str) -> str:
        return "gpu" if path == "factory" else RAW_QUEUE

    def finished(self, path: str) -> list:
        """rq's finished jobs of the path's queue, by start time."""
        import django_rq
        from rq.job import Job as RqJob
        from rq.registry import FailedJobRegistry, FinishedJobRegistry

        connection = django_rq.get_connection("default")
        queue = django_rq.get_queue("gpu") if path == "factory" else self.raw_queue()
        failed = FailedJobRegistry(queue=queue).get_job_ids()
        if failed:
            raise SystemExit(f"{path}: {len(failed)} rq job(s) failed: {RqJob.fetch(failed[0], connection).exc_info}")
        jobs = RqJob.fetch_many(FinishedJobRegistry(queue=queue).get_job_ids(cleanup=False), connection=connection)
        return sorted((job for job in jobs if job is not None), key=lambda job: job.started_at)

    def finished_count(self, path: str) -> int:
        import django_rq
        from rq.registry import FinishedJobRegistry

        queue = django_rq.get_queue("gpu") if path == "factory" else self.raw_queue()
        return django_rq.get_connection("default").zcard(FinishedJobRegistry(queue=queue).key)

    def check_factory_rows(self, count: int) -> None:
        from factory.models import Job, JobStatus

        succeeded = Job.objects.filter(status=JobStatus.SUCCEEDED).count()
        if succeeded < count:
            failed = Job.objects.filter(status=JobStatus.FAILED).values_list("error_message", flat=True).first()
            raise SystemExit(f"factory: {succeeded} of {count} jobs succeeded (a failure: {failed})")


def fake_comfyui(**knobs):
    from tests.fakes.comfyui import FakeComfyUI

    fake = FakeComfyUI().start()
    for name, value in knobs.items():
        setattr(fake, name, value)
    return fake


# --------------------------------------------------------------------------- B1: dispatch throughput


def drain(bench: Bench, path: str, *, backlog: int, first: int, bulk: bool = False) -> float:
    """Seconds per job over the first `first` jobs a worker takes from a backlog of `backlog`.

    The backlog is enqueued one by one (`job_enqueue`; its cost per job goes to `bench.enqueue_costs`) or,
    with `bulk`, made in bulk; either way before the worker starts, so the drain is timed alone.
    """
    bench.reset()
    fake = fake_comfyui()
    try:
        if bulk:
            bench.fill(path, backlog, fake.url)
        else:
            started = time.perf_counter()
            bench.enqueue(path, backlog, fake.url)
            bench.enqueue_costs[path].append((time.perf_counter() - started) / backlog)
        worker = bench.start(path, fake.url, burst=True)
        if first < backlog:
            deadline = time.monotonic() + 600
            while bench.finished_count(path) < first and time.monotonic() < deadline:
                time.sleep(0.2)
            worker.stop()
        else:
            worker.wait(timeout=600)
    finally:
        fake.stop()
    jobs = bench.finished(path)[:first]
    if len(jobs) < first:
        raise SystemExit(f"{path}: only {len(jobs)} of {first} jobs finished")
    if path == "factory" and first == backlog:
        bench.check_factory_rows(backlog)
    return (max(job.ended_at for job in jobs) - jobs[0].started_at).total_seconds() / first


def reconciler_pass(bench: Bench, backlog: int) -> float:
    """Seconds one reconciler pass takes over a backlog of queued jobs that have waited past FACTORY_STALE_SECONDS."""
    from django.utils import timezone

    from factory.services import reconcile_once

    bench.reset()
    bench.fill("factory", backlog, "http://127.0.0.1:9")
    later = timezone.now() + timedelta(hours=1)  # every row now counts as "queued too long ago"
    started = time.perf_counter()
    rung = reconcile_once(now=later)
    took = time.perf_counter() - started
    assert not rung, rung  # their rq entries are alive: nothing is rung twice
    return took


# --------------------------------------------------------------------------- B2: pickup latency


def pickup(bench: Bench, samples: int) -> dict[str, Series]:
    """Idle workers; enqueue one job -> its POST /prompt reaches the fake (seconds), interleaved."""
    from factory import services
    from factory.models import Job

    bench.reset()
    fakes = {"factory": fake_comfyui(), "raw": fake_comfyui()}
    workers = {path: bench.start(path, fake.url, burst=False) for path, fake in fakes.items()}
    returned = Series("`job_enqueue()` returned (row, commit, ring)")
    try:

        def arrival(fake, count: int) -> float:
            return fake.wait_for_request("POST", "/prompt", count=count, timeout=30)[count - 1].time

        def factory() -> float:
            fake = fakes["factory"]
            count = len(fake.prompts_submitted()) + 1
            started = time.time()
            job = services.job_enqueue(template=TEMPLATE, params={}, subject="bench.pickup")
            returned.samples.append(time.time() - started)
            latency = arrival(fake, count) - started
            deadline = time.monotonic() + 30
            while not Job.objects.get(pk=job.pk).is_terminal and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # the worker is back waiting on its queues
            return latency

        def raw() -> float:
            fake = fakes["raw"]
            count = len(fake.prompts_submitted()) + 1
            started = time.time()
            rq_job = bench.raw_queue().enqueue(
                "factory_dispatch.raw_round_trip",
                fake.url,
                str(uuid.uuid4()),
                "raw/pickup",
                str(bench.scratch / "raw"),
                **RQ_OPTIONS,
            )
            latency = arrival(fake, count) - started
            deadline = time.monotonic() + 30
            while rq_job.get_status(refresh=True) != "finished" and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            return latency

        for measure in (factory, raw, factory, raw):  # warm-up: imports, clients, the preflight cache
            measure()
        returned.samples.clear()
        series = interleave({"factory": factory, "raw": raw}, repeats=samples)
    finally:
        for worker in workers.values():
            worker.stop()
        for fake in fakes.values():
            fake.stop()
    series["returned"] = returned
    return series


# --------------------------------------------------------------------------- B3: GPU busy fraction


def gpu_busy(bench: Bench, path: str, *, count: int, seconds: float) -> dict:
    """A backlog of `count` prompts of `seconds` each: busy share, gap per job, and where the gap goes."""
    bench.reset()
    fake = fake_comfyui(prompt_seconds=seconds)
    try:
        bench.enqueue(path, count, fake.url)
        bench.start(path, fake.url, burst=True).wait(timeout=120 + count * seconds * 3)
        runs = fake.executions()
        requests = fake.requests()
    finally:
        fake.stop()
    if path == "factory":
        bench.check_factory_rows(count)
    assert len(runs) == count and all(run.success for run in runs), runs
    wall = runs[-1].ended - runs[0].started
    busy = sum(run.ended - run.started for run in runs)
    return {"busy": busy / wall, "gap": (wall - busy) / (count - 1), "steps": gap_steps(runs, requests)}


GAP_STEPS = [  # (label, the first request after the previous step that marks this one)
    ("notice the end: socket event, then GET /history", ("GET", "/history/")),
    ("download the output: GET /view", ("GET", "/view")),
    ("free memory: POST /free", ("POST", "/free")),
    ("next job: rq, claim, preflight, new attempt, open the socket", ("GET", "/ws")),
    ("submit: POST /prompt", ("POST", "/prompt")),
]


def gap_steps(runs, requests) -> dict[str, list[float]]:
    """For each gap between two prompts, the time from one request of the worker to the next (seconds)."""
    steps: dict[str, list[float]] = {label: [] for label, _ in GAP_STEPS}
    steps["ComfyUI starts it"] = []
    for previous, following in itertools.pairwise(runs):
        mark = previous.ended
        for label, (method, path) in GAP_STEPS:
            hit = next(
                (r.time for r in requests if r.time >= mark and r.method == method and r.path.startswith(path)), None
            )
            if hit is None or hit > following.started:
                continue  # a step this gap did not take (no POST /free between jobs of one workflow)
            steps[label].append(hit - mark)
            mark = hit
        else:
            steps["ComfyUI starts it"].append(following.started - mark)
    return steps


# --------------------------------------------------------------------------- report


def ms(value: float) -> float:
    return value * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500, help="B1 backlog")
    parser.add_argument("--repeats", type=int, default=3, help="B1 and B3 interleaved repeats")
    parser.add_argument("--sizes", default="100,1000,10000", help="cost-curve backlogs")
    parser.add_argument("--first", type=int, default=200, help="cost curve: time the first K jobs of each backlog")
    parser.add_argument("--pickups", type=int, default=40, help="B2 samples per path")
    parser.add_argument("--gpu-jobs", type=int, default=50)
    parser.add_argument("--gpu-ms", type=float, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="a Redis database of the bench's own")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks that it runs")
    parser.add_argument("--write-docs", action="store_true", help="put the tables in docs/benchmarks.md")
    parser.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="", help=argparse.SUPPRESS)
    parser.add_argument("--burst", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        raw_worker(args.redis, args.name, args.burst)
        return 0
    if args.redis.rstrip("/").endswith("/0") or "/" not in args.redis.split("://", 1)[-1]:
        raise SystemExit("--redis must name a database of the bench's own (it is flushed), never DB 0")
    if args.smoke:
        args.jobs, args.repeats, args.sizes, args.first, args.pickups, args.gpu_jobs = 6, 1, "4,8", 4, 2, 3
        args.gpu_ms = 20
    sizes = [int(size) for size in args.sizes.split(",") if size]

    scratch = Path(tempfile.mkdtemp(prefix="mcn-bench-dispatch-"))
    os.environ["REDIS_URL"] = args.redis
    os.environ["MEDIA_ROOT"] = str(scratch / "media")
    (scratch / "raw").mkdir()
    setup_django()
    import django
    import django_rq
    import rq

    from factory import services

    load = [os.getloadavg()[0]]
    with throwaway_database() as engine:
        bench = Bench(redis_url=args.redis, scratch=scratch)
        django_rq.get_connection("default").flushdb()
        services.template_import(name=TEMPLATE, workflow=INSTANT)
        redis_version = django_rq.get_connection("default").info()["redis_version"]

        # B1: the whole backlog, interleaved, each repeat from an empty state.
        b1 = interleave(
            {
                path: (lambda path=path: drain(bench, path, backlog=args.jobs, first=args.jobs))
                for path in ("factory", "raw")
            },
            repeats=args.repeats,
        )
        load.append(os.getloadavg()[0])
        # The cost curve: per-job cost over the first K jobs of growing backlogs, and a reconciler pass.
        curve = []
        for size in sizes:
            first = min(size, args.first)
            costs = interleave(
                {
                    path: (
                        lambda path=path, size=size, first=first: drain(
                            bench, path, backlog=size, first=first, bulk=True
                        )
                    )
                    for path in ("factory", "raw")
                },
                repeats=1,
            )
            curve.append((size, first, costs["factory"].min, costs["raw"].min, reconciler_pass(bench, size)))
        load.append(os.getloadavg()[0])
        b2 = pickup(bench, args.pickups)
        load.append(os.getloadavg()[0])
        b3 = {"factory": [], "raw": []}
        for repeat in range(args.repeats):
            for path in ("factory", "raw")[::-1] if repeat % 2 else ("factory", "raw"):
                b3[path].append(gpu_busy(bench, path, count=args.gpu_jobs, seconds=args.gpu_ms / 1000))
        load.append(os.getloadavg()[0])
        bench.reset()
    shutil.rmtree(scratch, ignore_errors=True)

    where = f"{engine}, " + machine(Redis=redis_version, rq=rq.__version__, Django=django.get_version())
    loads = f"load average (1 min) during the run: {min(load):.1f} to {max(load):.1f}"
    docs = {
        "B1": report_b1(b1, curve, bench.enqueue_costs, args, where, loads),
        "B2": report_b2(b2, args, where, loads),
        "B3": report_b3(b3, args, where, loads),
    }
    for marker, body in docs.items():
        print(f"--- {marker}\n{body}\n")
    if args.write_docs:
        for marker, body in docs.items():
            write_docs(marker, body)
    return 0


def report_b1(b1: dict[str, Series], curve: list, enqueue: dict, args, where: str, loads: str) -> str:
    factory, raw = b1["factory"], b1["raw"]
    enqueue_rows = [
        [label, len(enqueue[path]), ms(min(enqueue[path])), ms(statistics.median(enqueue[path]))]
        for path, label in (("raw", "rq `enqueue()`"), ("factory", "`services.job_enqueue()`"))
    ]
    rate = {name: Series(name, [1 / seconds for seconds in series.samples]) for name, series in b1.items()}
    rows = [
        [
            "raw rq + httpx/websocket round trip (baseline)",
            args.repeats,
            rate["raw"].min,
            rate["raw"].median,
            rate["raw"].max,
            ms(raw.min),
            "1.00",
            "1.00",
        ],
        [
            "factory: row, rq, run_gpu_worker, client, download, DB, event",
            args.repeats,
            rate["factory"].min,
            rate["factory"].median,
            rate["factory"].max,
            ms(factory.min),
            ratio(rate["factory"].median, rate["raw"].median),
            ratio(rate["factory"].max, rate["raw"].max),
        ],
    ]
    head = [
        "path",
        "runs",
        "min jobs/s",
        "median jobs/s",
        "max jobs/s",
        "best ms/job",
        "median / baseline",
        "best / best",
    ]
    curve_rows = [
        [f"{size:,}", first, ms(factory_cost), ms(raw_cost), ratio(raw_cost, factory_cost), ms(reconcile)]
        for size, first, factory_cost, raw_cost, reconcile in curve
    ]
    curve_head = [
        "backlog",
        "jobs timed",
        "factory ms/job",
        "raw ms/job",
        "factory throughput / raw",
        "reconciler pass ms",
    ]
    return "\n".join(
        [
            f"{args.jobs} instant jobs, {args.repeats} interleaved repeats; {where}; {loads}",
            "",
            table(head, rows),
            "",
            "Making the backlog, one call a job (before the worker starts: not in the times above):",
            "",
            table(["enqueue", "runs", "best ms/job", "median ms/job"], enqueue_rows),
            "",
            f"Cost per job against the backlog (the first {args.first} jobs of each backlog timed, one run each;"
            " reconciler: one `reconcile_once` over the queued backlog):",
            "",
            table(curve_head, curve_rows),
        ]
    )


def report_b2(b2: dict[str, Series], args, where: str, loads: str) -> str:
    factory, raw, returned = b2["factory"], b2["raw"], b2["returned"]
    head = ["path", "samples", "min ms", "p50 ms", "p95 ms", "max ms", "p95 / baseline p95"]

    def row(name, series, versus):
        return [
            name,
            len(series.samples),
            ms(series.min),
            ms(series.percentile(0.5)),
            ms(series.percentile(0.95)),
            ms(series.max),
            versus,
        ]

    return "\n".join(
        [
            f"idle workers, one job at a time, {args.pickups} interleaved samples each; {where}; {loads}",
            "",
            table(
                head,
                [
                    row("raw: rq enqueue -> SimpleWorker -> POST /prompt (baseline)", raw, "1.00"),
                    row(
                        "factory: `job_enqueue()` -> run_gpu_worker -> POST /prompt",
                        factory,
                        ratio(factory.percentile(0.95), raw.percentile(0.95)),
                    ),
                    row("of which `job_enqueue()` itself (row, event, commit, ring)", returned, ""),
                ],
            ),
        ]
    )


def report_b3(b3: dict[str, list[dict]], args, where: str, loads: str) -> str:
    head = ["path", "runs", "min busy", "median busy", "max busy", "median gap ms/job"]
    rows = [["physical limit", "", "100 %", "100 %", "100 %", "0"]]
    for path, label in (("raw", "raw rq + httpx/websocket, one prompt at a time"), ("factory", "factory")):
        busy = [run["busy"] for run in b3[path]]
        rows.append(
            [
                label,
                len(busy),
                f"{min(busy):.1%}",
                f"{statistics.median(busy):.1%}",
                f"{max(busy):.1%}",
                ms(statistics.median(run["gap"] for run in b3[path])),
            ]
        )
    steps: dict[str, list[float]] = {}
    for run in b3["factory"]:
        for label, values in run["steps"].items():
            steps.setdefault(label, []).extend(values)
    step_rows = [
        [label, len(values), ms(statistics.median(values)) if values else "-"] for label, values in steps.items()
    ]
    return "\n".join(
        [
            f"{args.gpu_jobs} queued jobs of {args.gpu_ms:.0f} ms simulated GPU time, {args.repeats} runs each;"
            f" {where}; {loads}",
            "",
            table(head, rows),
            "",
            "Where the factory's gap goes (from the fake's request log; median of every gap):",
            "",
            table(["from the previous step (the prompt's end first) to", "gaps", "median ms"], step_rows),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
