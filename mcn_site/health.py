"""Readiness: can this deployment do its work right now? The checks behind /readyz.

One function per check, each returning a Check. Every network call has a timeout, and the
checks that only talk to Redis run in threads beside the database checks, so /readyz answers
within about READY_TIMEOUT seconds even when a server hangs. Checks that use the ORM stay in the
request's thread (its database connection, its transaction in tests).
"""

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from factory import selectors
from factory.models import GpuWorker

CHECK_TIMEOUT = 1.5  # seconds any one network check may take
READY_TIMEOUT = 2.5  # seconds /readyz waits for the threaded checks in all


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    latency_ms: float = 0.0
    message: str = ""  # ops only: what failed, or what was seen
    data: dict = field(default_factory=dict)  # ops only: worker names, queue lengths, unapplied migrations


def _timed(name: str, probe: Callable[[], tuple[bool, str, dict]]) -> Check:
    started = time.perf_counter()
    try:
        ok, message, data = probe()
    except Exception as error:  # a check reports its failure; it never raises into the view
        ok, message, data = False, f"{type(error).__name__}: {error or 'no answer in time'}", {}
    return Check(name, ok, round((time.perf_counter() - started) * 1000, 1), message, data)


def check_database() -> Check:
    """SELECT 1, and every migration on disk applied."""

    def probe():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            unapplied = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
            return False, f"{len(unapplied)} migration(s) not applied: run manage.py migrate", {"unapplied": unapplied}
        return True, "", {}

    return _timed("database", probe)


def check_redis() -> Check:
    """PING rq's Redis; its queue lengths come along (the GPU check needs them)."""

    def probe():
        client = selectors.redis_client(timeout=CHECK_TIMEOUT)
        try:
            client.ping()
            return True, "", {"queues": selectors.rq_queue_lengths(connection=client)}
        finally:
            client.close()

    return _timed("redis", probe)


def check_channel_layer() -> Check:
    """A message through the configured channel layer: send on a throwaway channel, receive it back."""

    async def roundtrip():
        # A layer of our own (not the shared one): its connections close with this event loop.
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        channel = await layer.new_channel(prefix="health.")
        nonce = uuid.uuid4().hex
        await layer.send(channel, {"type": "health.ping", "nonce": nonce})
        message = await layer.receive(channel)
        return message.get("nonce") == nonce

    def probe():
        if not asyncio.run(asyncio.wait_for(roundtrip(), timeout=CHECK_TIMEOUT)):
            return False, "the message came back changed", {}
        return True, "", {}

    return _timed("channel_layer", probe)


def check_gpu_workers(*, workers: list[GpuWorker], queue_lengths: dict[str, int] | None, now: datetime) -> Check:
    """Every GPU queue that needs one has a worker whose heartbeat is fresh (selectors.gpu_queue_coverage)."""

    def probe():
        coverage = selectors.gpu_queue_coverage(workers=workers, queue_lengths=queue_lengths or {}, now=now)
        missing = [name for name, names in coverage.items() if not names]
        data = {"queues": coverage}
        if missing:
            return False, f"no live worker for {', '.join(missing)}", data
        return True, "", data

    return _timed("gpu_workers", probe)


def check_comfyui(*, workers: list[GpuWorker], now: datetime) -> Check:
    """Each live worker's last heartbeat reached its ComfyUI (no live worker: see check_comfyui_direct)."""

    def probe():
        live = [w for w in workers if selectors.worker_state(w, now=now) == selectors.LIVE]
        unreachable = sorted(f"{w.name} ({w.server_url})" for w in live if not w.server_reachable)
        data = {"servers": {w.name: w.server_url for w in live}}
        if unreachable:
            return False, f"unreachable from {', '.join(unreachable)}", data
        return True, "", data

    return _timed("comfyui", probe)


def check_comfyui_direct() -> Check:
    """GET COMFYUI_URL/system_stats: the fallback when no live worker reports on its server."""

    def probe():
        url = settings.COMFYUI_URL.rstrip("/") + "/system_stats"
        response = httpx.get(url, timeout=httpx.Timeout(CHECK_TIMEOUT, connect=1.0))
        response.raise_for_status()
        return True, f"no live worker; {url} answered", {"servers": {"COMFYUI_URL": settings.COMFYUI_URL}}

    return _timed("comfyui", probe)


def _result(name: str, future: Future, *, deadline: float) -> Check:
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        return Check(name, False, round(READY_TIMEOUT * 1000, 1), f"no answer within {READY_TIMEOUT} s")


def readiness(*, now: datetime | None = None) -> list[Check]:
    """Run every check; the order of the list is the order /readyz shows them in."""
    now = now or timezone.now()
    deadline = time.monotonic() + READY_TIMEOUT
    pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="readyz")
    try:
        redis_future = pool.submit(check_redis)
        channel_future = pool.submit(check_channel_layer)
        database = check_database()
        try:
            workers = list(GpuWorker.objects.filter(last_seen_at__gte=now - selectors.WORKER_GONE_AFTER))
        except Exception:
            workers = None  # the database check already says why
        live = [w for w in workers or [] if selectors.worker_state(w, now=now) == selectors.LIVE]
        comfyui_future = pool.submit(check_comfyui_direct) if workers is not None and not live else None
        redis = _result("redis", redis_future, deadline=deadline)
        channel = _result("channel_layer", channel_future, deadline=deadline)
        if workers is None:
            gpu = Check("gpu_workers", False, message="the database did not answer")
            comfyui = Check("comfyui", False, message="the database did not answer")
        else:
            gpu = check_gpu_workers(workers=workers, queue_lengths=redis.data.get("queues"), now=now)
            comfyui = _result("comfyui", comfyui_future, deadline=deadline) if comfyui_future else None
            comfyui = comfyui or check_comfyui(workers=workers, now=now)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung check must not hold the response
    return [database, redis, channel, gpu, comfyui]
