"""Real processes for factory tests: a fake ComfyUI on 127.0.0.1 and GPU worker subprocesses.

The worker runs `manage.py run_gpu_worker` against the same test database and
the same Redis as the test, so tests using it must be transactional.
"""

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import django_rq
import pytest
from django.db import connection

from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.cosyvoice import running_cosyvoice
from tests.processes import ManagedProcess

# Short deadlines so fault scenarios end in seconds; each test can override with worker(env=...).
FAST = {
    "FACTORY_POLL_SECONDS": "1",
    "FACTORY_STALL_SECONDS": "4",
    "FACTORY_JOB_DEADLINE": "60",
    "FACTORY_UNREACHABLE_RETRIES": "1,1,1",
    "FACTORY_HEARTBEAT_SECONDS": "1",
    "FACTORY_STALE_SECONDS": "3",
    "FACTORY_CONNECT_TIMEOUT": "1",
    "FACTORY_READ_TIMEOUT": "3",
}


@pytest.fixture
def fake_comfyui():
    fake = FakeComfyUI().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_comfyui_pair():
    """Two GPU machines' ComfyUI servers: independent fakes, each with its own port, queue and log."""
    fakes = (FakeComfyUI().start(), FakeComfyUI().start())
    yield fakes
    for fake in fakes:
        fake.stop()


@pytest.fixture
def fake_cosyvoice():
    with running_cosyvoice() as fake:
        yield fake


@pytest.fixture
def rq_clean():
    """Empty queues for the test (the queues live in the test's Redis database)."""
    django_rq.get_connection("default").flushdb()
    yield
    django_rq.get_connection("default").flushdb()


def database_url_for_subprocess() -> str:
    """The URL of the database the test is using right now, for a subprocess."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def subprocess_env(**extra: str) -> dict:
    """The environment a manage.py subprocess needs to share this test's database, Redis and media."""
    from django.conf import settings

    return {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocess(),
        "REDIS_URL": settings.REDIS_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "SECRET_KEY": "tests-only",
        "DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class WorkerProcess(ManagedProcess):
    def __init__(self, *, comfyui_url: str, name: str, media_root: Path, env: dict | None = None, cpu: bool = False):
        self.name = name
        # A GPU worker bound to one ComfyUI, or the CPU worker (tts, render, llm) as `make run` starts it.
        argv = (
            ["rqworker", "cpu", "--name", name]
            if cpu
            else ["run_gpu_worker", "--comfyui-url", comfyui_url, "--name", name]
        )
        super().__init__(
            ["manage.py", *argv], env=subprocess_env(**{**FAST, "MEDIA_ROOT": str(media_root), **(env or {})})
        )


def worker_starter(settings, *, prefix: str) -> tuple[Callable[..., WorkerProcess], list[WorkerProcess]]:
    """start(comfyui_url, name=..., env=..., cpu=False) and the list of what it started, for a fixture to stop."""
    started: list[WorkerProcess] = []

    def start(
        comfyui_url: str = "", *, name: str | None = None, env: dict | None = None, cpu: bool = False
    ) -> WorkerProcess:
        worker = WorkerProcess(
            comfyui_url=comfyui_url,
            name=name or f"{'cpu' if cpu else 'gpu'}-{prefix}-{len(started) + 1}",
            media_root=Path(settings.MEDIA_ROOT),
            env=env,
            cpu=cpu,
        )
        started.append(worker)
        return worker

    return start, started


@pytest.fixture
def start_worker(settings, rq_clean):
    """start_worker(comfyui_url, name=..., env=...) -> a running GPU worker subprocess, stopped after the test.

    start_worker(cpu=True, env=...) starts the CPU worker instead (`rqworker cpu`).
    """
    start, started = worker_starter(settings, prefix="test")
    yield start
    for worker in started:
        worker.stop()


class ReconcilerProcess(ManagedProcess):
    """`manage.py reconcile_jobs` as production runs it: a loop that stops on SIGTERM."""

    def __init__(self, *, media_root: Path, interval: float, env: dict | None = None):
        super().__init__(
            ["manage.py", "reconcile_jobs", "--interval", str(interval)],
            env=subprocess_env(**{**FAST, "MEDIA_ROOT": str(media_root), **(env or {})}),
        )


@pytest.fixture
def start_reconciler(settings):
    """start_reconciler(interval=..., env=...) -> a running `reconcile_jobs` loop, stopped after the test."""
    started: list[ReconcilerProcess] = []

    def start(*, interval: float = 0.5, env: dict | None = None) -> ReconcilerProcess:
        reconciler = ReconcilerProcess(media_root=Path(settings.MEDIA_ROOT), interval=interval, env=env)
        started.append(reconciler)
        return reconciler

    yield start
    for reconciler in started:
        reconciler.stop()


def wait_for(predicate, *, timeout: float = 30.0, what: str = "condition", interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def probe(path: Path) -> dict:
    """ffprobe's streams and format of a media file, as JSON (needs Debian's ffmpeg package)."""
    result = subprocess.run(
        [
            shutil.which("ffprobe") or "ffprobe",
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)
