"""B10 workflow affinity: model switches and makespan of a mixed backlog, plain FIFO against the workflow-aware
dispatch (factory/dispatch.py), in the same run.

A backlog of --jobs ComfyUI jobs of --workflows workflows (each its own checkpoint, so its own models),
interleaved round robin (a, b, c, a, b, c, ...: FIFO's worst case, and what a batch of posts whose shots
alternate an avatar clip and a still looks like), made with `services.job_enqueue` before the workers start.
Then --workers `manage.py run_gpu_worker --burst` processes, each with its own fake ComfyUI
(tests/fakes/comfyui.py) charging --load-seconds whenever a prompt's models differ from those loaded
(`model_load_seconds`) and --gpu-seconds of simulated GPU time per prompt (`prompt_seconds`). Production code
in production processes: a throwaway database (SQLite file, or PostgreSQL when DATABASE_URL names one) and a
Redis database of the bench's own (flushed; never DB 0).

Measured per dispatch: model switches as the fakes counted them and as the workers recorded them
("workflow_switch" job events), makespan (the first job's start to the last job's end, from the rows: the
workers' start-up is left out), and each job's wait (queued to started) against the bound
(FACTORY_AFFINITY_MAX_WAIT_SECONDS). FIFO is the same worker with FACTORY_AFFINITY_MAX_WAIT_SECONDS=0.

    .venv/bin/python bench/workflow_affinity.py [--jobs 60] [--workflows 3] [--load-seconds 3] [--workers 1]
    .venv/bin/python bench/workflow_affinity.py --smoke        # tiny sizes: only checks that it runs (CI)

--write-docs: also put the table in docs/benchmarks.md (the B10 block; "B10 2 workers" with --workers 2).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from harness import Process, database_url, interleave, machine, setup_django, table, throwaway_database, write_docs

WORKER_ENV = {"DATABASE_CONN_MAX_AGE": "60", "FACTORY_FREE_AFTER_JOB": "auto"}  # as docs/deploy.md runs them


def workflow(checkpoint: str) -> dict:
    """txt2img on one checkpoint; the seed is a placeholder so that no two jobs are served from the cache."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a shot", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": "{{SEED}}",
                "steps": 1,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "b10"}},
    }


def checkpoints(count: int) -> list[str]:
    return [f"b10_model_{chr(ord('a') + n)}.safetensors" for n in range(count)]


class Bench:
    def __init__(self, *, args, redis_url: str, scratch: Path):
        self.args, self.redis_url, self.scratch = args, redis_url, scratch
        self.runs = 0

    def env(self, max_wait: float) -> dict:
        return {
            **os.environ,
            **WORKER_ENV,
            "FACTORY_AFFINITY_MAX_WAIT_SECONDS": str(int(max_wait)),
            "DATABASE_URL": database_url(),
            "REDIS_URL": self.redis_url,
            "MEDIA_ROOT": str(self.scratch / "media"),
            "PYTHONUNBUFFERED": "1",
        }

    def run(self, mode: str) -> dict:
        """One backlog through the workers with dispatch `mode` ("fifo" or "affinity"); what was measured."""
        import django_rq

        from factory import services
        from factory.models import Job, JobEvent
        from tests.fakes.comfyui import FakeComfyUI

        args = self.args
        Job.objects.all().delete()
        django_rq.get_connection("default").flushdb()
        fakes = []
        try:
            for _ in range(args.workers):
                fake = FakeComfyUI().start()
                fake.set_models(checkpoints(args.workflows))
                fake.model_load_seconds = args.load_seconds
                fake.prompt_seconds = args.gpu_seconds
                fakes.append(fake)
            names = [f"b10-{n}" for n in range(args.workflows)]
            ids = [
                services.job_enqueue(template=names[n % len(names)], params={"SEED": n}, subject=f"bench.{n}").pk
                for n in range(args.jobs)
            ]
            self.runs += 1
            max_wait = 0 if mode == "fifo" else args.bound
            workers = [
                Process(
                    [
                        *(sys.executable, "manage.py", "run_gpu_worker", "--burst", "--comfyui-url", fake.url),
                        *("--name", f"b10-{mode}-{self.runs}-{n}"),
                    ],
                    env=self.env(max_wait),
                    log=self.scratch / f"b10-{mode}-{self.runs}-{n}.log",
                )
                for n, fake in enumerate(fakes)
            ]
            for worker in workers:
                worker.wait(timeout=args.jobs * (args.load_seconds + args.gpu_seconds + 5) + 120)
            switches = sum(fake.model_switches() for fake in fakes)
        finally:
            for fake in fakes:
                fake.stop()
        rows = list(Job.objects.filter(pk__in=ids).values("status", "queued_at", "started_at", "finished_at"))
        failed = [row for row in rows if row["status"] != "succeeded"]
        if failed:
            raise SystemExit(f"{mode}: {len(failed)} of {len(rows)} jobs did not succeed: {failed[0]}")
        waits = [(row["started_at"] - row["queued_at"]).total_seconds() for row in rows]
        first, last = min(row["started_at"] for row in rows), max(row["finished_at"] for row in rows)
        return {
            "switches": switches,
            "recorded": JobEvent.objects.filter(job_id__in=ids, kind="workflow_switch").count(),
            "makespan": (last - first).total_seconds(),
            "max_wait": max(waits),
            "past_bound": sum(1 for wait in waits if wait > args.bound),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--workflows", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="GPU workers, each with its own fake ComfyUI")
    parser.add_argument("--load-seconds", type=float, default=3.0, help="model load time on a workflow change")
    parser.add_argument("--gpu-seconds", type=float, default=0.5, help="simulated GPU time per prompt")
    parser.add_argument("--bound", type=float, default=300, help="the affinity run's FACTORY_AFFINITY_MAX_WAIT_SECONDS")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of both dispatches")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="a Redis database of the bench's own")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks that it runs")
    parser.add_argument("--write-docs", action="store_true", help="put the table in docs/benchmarks.md")
    args = parser.parse_args()
    if args.redis.rstrip("/").endswith("/0") or "/" not in args.redis.split("://", 1)[-1]:
        raise SystemExit("--redis must name a database of the bench's own (it is flushed), never DB 0")
    if args.smoke:
        args.jobs, args.load_seconds, args.gpu_seconds, args.repeats = 9, 0.2, 0.02, 1

    scratch = Path(tempfile.mkdtemp(prefix="mcn-bench-affinity-"))
    os.environ["REDIS_URL"] = args.redis
    os.environ["MEDIA_ROOT"] = str(scratch / "media")
    setup_django()
    import django
    import django_rq
    import rq

    from factory import services

    load = [os.getloadavg()[0]]
    with throwaway_database() as engine:
        django_rq.get_connection("default").flushdb()
        for n, checkpoint in enumerate(checkpoints(args.workflows)):
            services.template_import(name=f"b10-{n}", workflow=workflow(checkpoint))
        redis_version = django_rq.get_connection("default").info()["redis_version"]
        bench = Bench(args=args, redis_url=args.redis, scratch=scratch)
        results: dict[str, list[dict]] = {"fifo": [], "affinity": []}

        def measure(mode: str) -> float:
            results[mode].append(bench.run(mode))
            load.append(os.getloadavg()[0])
            return results[mode][-1]["makespan"]

        interleave({mode: (lambda mode=mode: measure(mode)) for mode in results}, repeats=args.repeats)
        django_rq.get_connection("default").flushdb()
    shutil.rmtree(scratch, ignore_errors=True)

    where = f"{engine}, " + machine(Redis=redis_version, rq=rq.__version__, Django=django.get_version())
    loads = f"load average (1 min) during the run: {min(load):.1f} to {max(load):.1f}"
    body = report(results, args, where, loads)
    print(f"--- B10\n{body}\n")
    if args.write_docs:
        write_docs("B10" if args.workers == 1 else f"B10 {args.workers} workers", body)
    return 0


def report(results: dict[str, list[dict]], args, where: str, loads: str) -> str:
    def median(mode: str, key: str) -> float:
        return statistics.median(run[key] for run in results[mode])

    fifo_makespan = median("fifo", "makespan")
    rows = []
    for mode, label in (("fifo", "plain FIFO (`FACTORY_AFFINITY_MAX_WAIT_SECONDS=0`)"), ("affinity", "workflow-aware")):
        makespan = median(mode, "makespan")
        rows.append(
            [
                label,
                len(results[mode]),
                int(median(mode, "switches")),
                int(median(mode, "recorded")),
                makespan,
                f"{makespan / fifo_makespan:.2f}" if fifo_makespan else "n/a",
                median(mode, "max_wait"),
                int(max(run["past_bound"] for run in results[mode])),
            ]
        )
    affinity = results["affinity"]
    saved = 1 - median("affinity", "makespan") / fifo_makespan if fifo_makespan else 0
    limit = 2 * args.workflows * args.workers  # each worker loads each workflow at most twice
    checks = [
        f"switches {max(run['switches'] for run in affinity)} <= {limit}: "
        f"{'yes' if all(run['switches'] <= limit for run in affinity) else 'NO'}",
        f"makespan {saved:.0%} lower than FIFO (>= 30 %): {'yes' if saved >= 0.3 else 'NO'}",
        f"jobs waiting past the bound: {max(run['past_bound'] for run in affinity)}",
    ]
    return "\n".join(
        [
            f"{args.jobs} jobs of {args.workflows} workflows interleaved round robin, {args.workers} GPU worker(s) "
            f"(`run_gpu_worker --burst`, one fake ComfyUI each), {args.load_seconds:g} s model load on a change of "
            f"models, {args.gpu_seconds:g} s GPU time per prompt, bound {args.bound:g} s; median of "
            f"{args.repeats} interleaved run(s) each. {where}; {loads}.",
            "",
            table(
                [
                    "dispatch",
                    "runs",
                    "model switches (fake)",
                    "`workflow_switch` events",
                    "makespan (s)",
                    "vs FIFO",
                    "longest wait (s)",
                    "jobs past the bound",
                ],
                rows,
            ),
            "",
            "Target (issue 17): " + "; ".join(checks) + ".",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
