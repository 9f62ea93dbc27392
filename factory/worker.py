"""The GPU worker process: an rq worker bound to one ComfyUI server, with a heartbeat.

One worker per GPU (per ComfyUI server). It takes jobs from its GPU pool's VIP queue
before the normal one ("gpu-vip" before "gpu" in the default pool, "gpu-vip.video" before
"gpu.video" in pool video: factory.queues.gpu_queues), runs them in-process (SimpleWorker:
ComfyUI does the heavy lifting, and a fork per job would cost ~60 ms), and reports the
server's VRAM every few seconds.

Dispatch is workflow-aware (factory.dispatch.AffinityWorker). Within the first non-empty lane (VIP
before normal, always): a take-over first (a silent worker's job the reconciler rang at the front), then
a job that has waited longer than FACTORY_AFFINITY_MAX_WAIT_SECONDS (oldest first), then the oldest job
of the workflow (template row) this worker last ran on its server, so that its models stay loaded, then
the head of the lane. A worker that does not know what its server has loaded takes FIFO; 0 turns the
rule off. factory.vram unloads models only when the workflow actually changes, and each change leaves a
"workflow_switch" event on the job that caused it.

The CPU worker (`rqworker cpu default`, voices, renders, the director) is rq's forking worker with one
addition, CpuWorker (django_rq's RQ["WORKER_CLASS"]): a work horse killed under a job (the OOM killer,
SIGKILL) queues the job's row again at once instead of leaving it "running" until the reconciler
notices its silence (reliability matrix row 1c).
"""

import logging
import os
import socket
import threading

import django_rq
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone
from rq import Worker

from factory import services
from factory.comfyui import ComfyUIError
from factory.dispatch import AffinityWorker
from factory.execution import client_for
from factory.models import GpuWorker, Job, JobStatus

log = logging.getLogger(__name__)


def heartbeat_once(*, name: str, server_url: str, queues: list[str]) -> GpuWorker:
    """Read the server's /system_stats and record it (one iteration of the heartbeat loop)."""
    fields = {"server_url": server_url, "queues": ",".join(queues), "last_seen_at": timezone.now()}
    try:
        stats = client_for(server_url).system_stats()
        device = (stats.get("devices") or [{}])[0]
        fields.update(
            server_reachable=True,
            device_name=str(device.get("name", ""))[:200],
            vram_total=device.get("vram_total"),
            vram_free=device.get("vram_free"),
        )
    except ComfyUIError:
        fields["server_reachable"] = False
    fields["current_job"] = Job.objects.filter(worker_name=name, status=JobStatus.RUNNING).first()
    worker, _ = GpuWorker.objects.update_or_create(name=name, defaults=fields)
    return worker


class Heartbeat(threading.Thread):
    def __init__(self, *, name: str, server_url: str, queues: list[str], interval: float):
        super().__init__(name=f"heartbeat-{name}", daemon=True)
        self.worker_name, self.server_url, self.queues, self.interval = name, server_url, queues, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                close_old_connections()
                heartbeat_once(name=self.worker_name, server_url=self.server_url, queues=self.queues)
            except Exception:  # the heartbeat must never take the worker down
                log.exception("heartbeat failed")
            self.stopped.wait(self.interval)


def run_worker(*, name: str, server_url: str, queues: list[str], burst: bool = False) -> None:
    settings.COMFYUI_URL = server_url  # factory.execution reads it per job
    heartbeat = Heartbeat(name=name, server_url=server_url, queues=queues, interval=settings.FACTORY_HEARTBEAT_SECONDS)
    heartbeat.start()
    try:
        worker = AffinityWorker(
            [django_rq.get_queue(q) for q in queues],
            connection=django_rq.get_connection(queues[0]),
            name=name,
            server_url=server_url,
        )
        worker.work(with_scheduler=True, burst=burst)
    finally:
        heartbeat.stopped.set()


RUN_JOB = "factory.jobs.run_job"


class CpuWorker(Worker):
    """rq's forking worker; a killed work horse's job is queued again at once, with a banner saying why."""

    _lost_rq_job_id: str | None = None

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if job.func_name != RUN_JOB or not job.args or not retpid:
            return
        signum = os.WTERMSIG(ret_val) if ret_val is not None and os.WIFSIGNALED(ret_val) else None
        reason = f"killed by signal {signum}" if signum else f"exited with status {ret_val}"
        peak_mb = rusage.ru_maxrss // 1024 if rusage else 0  # ru_maxrss is in KiB on Linux
        log.warning("work horse %s died running job %s (%s, peak RSS %s MiB)", retpid, job.args[0], reason, peak_mb)
        # The horse ran as factory.execution.worker_name() names it: the host and its own pid.
        horse = os.environ.get("MCN_WORKER_NAME") or f"{socket.gethostname()}:{retpid}"
        try:
            if services.job_worker_lost(job_id=int(job.args[0]), worker_name=horse, reason=reason):
                self._lost_rq_job_id = job.id
        except Exception:  # the reconciler still re-drives the row once its heartbeat is stale
            log.exception("could not queue job %s again after its work horse died", job.args[0])
        finally:
            # The next horse is forked from this process: it must not inherit an open database connection.
            connections.close_all()

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        super().handle_job_failure(
            job, queue, started_job_registry=started_job_registry, exc_string=exc_string, execution=execution
        )
        if job.id == self._lost_rq_job_id:
            # Our row was queued again under a new rq job; this one would sit in the failed registry of a job
            # that later succeeds (rq/rq #2289). The row's "worker_lost" event keeps the reason.
            self._lost_rq_job_id = None
            queue.failed_job_registry.remove(job, delete_job=True)
