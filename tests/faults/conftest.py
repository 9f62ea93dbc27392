"""Fixtures of the fault suite: a redis-server of the test's own, workers bound to it, the fakes.

`redis_server(appendonly=...)` starts a real redis-server on a random port and points this process's
settings (rq queues, the channel layer, the cache) at it until the test ends; `start_worker(...)`
starts GPU or CPU worker subprocesses against whatever Redis the settings name when it is called, so a
worker started after `redis_server()` uses the test's server. Workers stop before the server does.
"""

import contextlib
import os
import signal

import pytest
from django.conf import settings
from django.test import override_settings

from tests.factory.conftest import (  # noqa: F401 - shared fixtures, used by the modules here
    FAST,
    fake_comfyui,
    fake_cosyvoice,
    rq_clean,
    wait_for,
    worker_starter,
)
from tests.fakes.redis_server import RedisServer

__all__ = ["FAST", "wait_for"]


def redis_settings(url: str) -> dict:
    """Every setting that names Redis, pointed at `url` (the queues, the channel layer, the cache)."""
    layer = settings.CHANNEL_LAYERS["default"]
    return {
        "REDIS_URL": url,
        "RQ_QUEUES": {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()},
        "CHANNEL_LAYERS": {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": [url]}}},
        "CACHES": {"default": {**settings.CACHES["default"], "LOCATION": url}},
    }


@pytest.fixture
def redis_server(rq_clean, tmp_path):  # noqa: F811 - the imported fixture, requested
    """redis_server(appendonly=True) -> a running RedisServer the settings point at until the test ends.

    Depends on rq_clean so that, at teardown, the settings are back on the machine's Redis before
    rq_clean flushes it (never this test's server, which is gone by then).
    """
    started: list[tuple[RedisServer, override_settings]] = []

    def start(*, appendonly: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(started)}", appendonly=appendonly).start()
        override = override_settings(**redis_settings(server.url(0)))
        override.enable()
        started.append((server, override))
        return server

    yield start
    for server, override in reversed(started):
        override.disable()
        server.stop()


@pytest.fixture
def start_worker(redis_server, settings):
    """start_worker(comfyui_url, name=..., env=..., cpu=False) -> a worker subprocess, stopped after the test.

    Like tests/factory's, plus: it is set up after `redis_server`, so its workers stop before the
    test's redis-server does; the worker's REDIS_URL is the settings' when it starts.
    """
    start, started = worker_starter(settings, prefix="fault")
    yield start
    for worker in started:
        # SIGKILL: a worker stuck reconnecting to a dead Redis would sit out a warm shutdown. rq's work
        # horse runs in a process group of its own (os.setpgrp), so it is killed by pid as well.
        horses = descendants(worker.process.pid)
        worker.kill()
        for pid in horses:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The direct children of a live process (Linux /proc), empty if it is gone."""
    found = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
