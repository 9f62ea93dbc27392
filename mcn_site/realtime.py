"""Server-to-browser events: the one way services and the factory hook push to pages.

A push is a hint, never state: pages fetch the current state over HTTP on every
(re)connect. So a push that cannot be delivered (Redis down, row 6c of the
reliability matrix) is logged and dropped, never raised into the caller.
"""

import asyncio
import logging
import os
import re
import threading
import time

from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

GROUP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,99}$")  # Channels' rule for group names
PROGRESS_INTERVAL = 0.1  # at most ~10 progress pushes a second per group; final states always go
SEND_TIMEOUT = 5.0  # seconds a caller waits for Redis before the push is given up
# After a failed push, pushes through that layer are dropped for this long: a render pushing progress to a
# paused or black-holed Redis keeps its pace instead of waiting SEND_TIMEOUT per step (matrix row 6c).
PUSH_BACKOFF = 5.0
_layer_down_until: dict[int, float] = {}  # by id() of the layer: a new layer (settings changed) starts fresh

_last_progress: dict[str, float] = {}
_lock = threading.Lock()
_sender: tuple[int, asyncio.AbstractEventLoop, threading.Lock] | None = None  # (pid, loop, its lock)


def post_group(post_id: int) -> str:
    return f"post.{post_id}"


def publish(group: str, event: str, payload: dict, *, progress: bool = False) -> None:
    """Send `event` with a primitive `payload` to every socket in `group`, after the current commit.

    `progress=True` marks a throttleable update: dropped if the group had one within
    PROGRESS_INTERVAL. Never use it for a final state.
    """
    if not GROUP_RE.match(group):
        raise ValueError(f"Bad group name {group!r}: letters, digits, '_', '.', '-' only, under 100 chars.")
    if progress:
        now = time.monotonic()
        with _lock:
            if now - _last_progress.get(group, 0.0) < PROGRESS_INTERVAL:
                return
            _last_progress[group] = now
    message = {"type": "relay", "event": event, "payload": payload}
    transaction.on_commit(lambda: _send(group, message))


def _sender_loop() -> tuple[asyncio.AbstractEventLoop, threading.Lock]:
    """The process's event loop for pushes, run by whichever thread sends one (one thread at a time).

    async_to_sync() from a worker or a command starts a new loop for every push, and the pub/sub
    layer opens a Redis connection per loop: ~3 ms a push instead of ~0.1 ms (bench/status_push.py,
    B4). A loop in a thread of its own would add a hand-over between threads to every push; a loop
    per thread would leave a connection behind each short-lived one (Django runs an ASGI request's
    sync code in a thread of its own). Made again in a forked child (rq's forking Worker), which must
    not share the parent's sockets.
    """
    global _sender
    with _lock:
        if _sender is None or _sender[0] != os.getpid():
            _sender = (os.getpid(), asyncio.new_event_loop(), threading.Lock())
        return _sender[1], _sender[2]


def _send(group: str, message: dict) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _send_now(group, message)
    else:  # this thread is running a loop (async code): it cannot run ours, another thread can
        sender = threading.Thread(target=_send_now, args=(group, message), name="realtime-send")
        sender.start()
        sender.join()


def _send_now(group: str, message: dict) -> None:
    layer = get_channel_layer()
    loop, running = _sender_loop()
    try:
        with running:  # checked here: threads queued behind a push that timed out drop theirs at once
            if time.monotonic() < _layer_down_until.get(id(layer), 0.0):
                return  # the last push through this layer failed moments ago: dropped (PUSH_BACKOFF)
            loop.run_until_complete(asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT))
    except Exception as error:  # a hint lost; the page re-fetches on reconnect
        _layer_down_until[id(layer)] = time.monotonic() + PUSH_BACKOFF
        log.warning("push to %s failed: %s", group, error or type(error).__name__)
    else:
        _layer_down_until.pop(id(layer), None)
