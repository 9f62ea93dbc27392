import os
import socket

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from factory.queues import gpu_queues, pool_problem
from factory.worker import run_worker


class Command(BaseCommand):
    help = (
        "Run a GPU worker bound to one ComfyUI server (one per GPU), taking its pool's VIP queue before the normal "
        "one. SIGTERM finishes the current job first."
    )

    def add_arguments(self, parser):
        parser.add_argument("--comfyui-url", default=settings.COMFYUI_URL, help="default: COMFYUI_URL")
        parser.add_argument("--name", default="", help="worker name (default: gpu@host:pid)")
        parser.add_argument(
            "--pool",
            default=settings.MCN_GPU_POOL,
            help="the GPU pool this machine serves: default, or one named in MCN_GPU_POOLS (default: MCN_GPU_POOL, "
            "else default)",
        )
        parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")

    def handle(self, *args, comfyui_url: str, name: str, pool: str, burst: bool, **options):
        problem = pool_problem(pool)
        if problem:
            raise CommandError(problem)
        name = name or f"gpu@{socket.gethostname()}:{os.getpid()}"
        os.environ["MCN_WORKER_NAME"] = name
        queues = gpu_queues(pool)
        self.stdout.write(f"GPU worker {name}: {comfyui_url}, pool {pool or 'default'}, queues {', '.join(queues)}")
        run_worker(name=name, server_url=comfyui_url, queues=queues, burst=burst)
