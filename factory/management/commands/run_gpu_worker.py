import os
import socket

from django.conf import settings
from django.core.management.base import BaseCommand

from factory.queues import GPU_QUEUES
from factory.worker import run_worker


class Command(BaseCommand):
    help = "Run a GPU worker bound to one ComfyUI server (one per GPU). SIGTERM finishes the current job first."

    def add_arguments(self, parser):
        parser.add_argument("--comfyui-url", default=settings.COMFYUI_URL, help="default: COMFYUI_URL")
        parser.add_argument("--name", default="", help="worker name (default: gpu@host:pid)")
        parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")

    def handle(self, *args, comfyui_url: str, name: str, burst: bool, **options):
        name = name or f"gpu@{socket.gethostname()}:{os.getpid()}"
        os.environ["MCN_WORKER_NAME"] = name
        queues = [GPU_QUEUES["vip"], GPU_QUEUES["normal"]]
        self.stdout.write(f"GPU worker {name}: {comfyui_url}, queues {', '.join(queues)}")
        run_worker(name=name, server_url=comfyui_url, queues=queues, burst=burst)
