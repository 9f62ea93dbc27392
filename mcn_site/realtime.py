"""Server-to-browser events: the one way services and the factory hook push to pages.

A push is a hint, never state: pages fetch the current state over HTTP on every
(re)connect. So a push that cannot be delivered (Redis down, row 6c of the
reliability matrix) is logged and dropped, never raised into the caller.
"""

import logging
import re
import threading
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

GROUP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,99}$")  # Channels' rule for group names
PROGRESS_INTERVAL = 0.1  # at most ~10 progress pushes a second per group; final states always go

_last_progress: dict[str, float] = {}
_lock = threading.Lock()


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


def _send(group: str, message: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, message)
    except Exception as error:  # a hint lost; the page re-fetches on reconnect
        log.warning("push to %s failed: %s", group, error)
