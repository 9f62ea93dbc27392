"""The GPU worker process: an rq worker bound to one ComfyUI server, with a heartbeat.

One worker per GPU (per ComfyUI server). It takes jobs from "gpu-vip" before
"gpu", runs them in-process (SimpleWorker: ComfyUI does the heavy lifting, and
a fork per job would cost ~60 ms), and reports the server's VRAM every few seconds.
"""

import logging
import threading

import django_rq
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from rq import SimpleWorker

from factory.comfyui import ComfyUIError
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
        worker = SimpleWorker(
            [django_rq.get_queue(q) for q in queues], connection=django_rq.get_connection(queues[0]), name=name
        )
        worker.work(with_scheduler=True, burst=burst)
    finally:
        heartbeat.stopped.set()
