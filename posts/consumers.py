"""The storyboard page's live channel: authenticated, authorized by the same selector as the views.

Access is asked again while the socket is open, not only at connect: before relaying an event, when the
last check is older than RECHECK_SECONDS, the consumer re-reads the session (logged out, password
changed, user deactivated) and the selector (membership lost). A refused socket is closed with the
code a refused connect gets, and hears nothing more.
"""

import time
from importlib import import_module
from types import SimpleNamespace

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user

from mcn_site.realtime import post_group
from posts.selectors import posts_visible_to

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_VISIBLE = 4404  # like the pages: a post you may not see does not exist for you
# How stale an access check may be when an event is relayed: a revoked user hears at most this long.
# One check costs a few indexed queries, at most once per socket per interval, and only when events flow.
RECHECK_SECONDS = 3.0


class StoryboardConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    checked_at: float = 0.0

    async def connect(self):
        user = self.scope.get("user")
        # Accept, then close with a code: a refusal at the handshake would tell the page nothing.
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        post_id = self.scope["url_route"]["kwargs"]["post_id"]
        if not await self._visible(user, post_id):
            await self.close(code=CLOSE_NOT_VISIBLE)
            return
        self.post_id, self.session_key = post_id, self.scope["session"].session_key
        self.checked_at = time.monotonic()
        self.group = post_group(post_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"event": "hello", "post_id": post_id})

    @database_sync_to_async
    def _visible(self, user, post_id: int) -> bool:
        return posts_visible_to(user=user).filter(pk=post_id).exists()

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """The page only listens; anything it sends is ignored (edits go over HTTP, through services)."""

    async def relay(self, message):
        if self.group is None or not await self._still_allowed():
            return
        await self.send_json({"event": message["event"], **message["payload"]})

    async def _still_allowed(self) -> bool:
        now = time.monotonic()
        if now - self.checked_at < RECHECK_SECONDS:
            return True
        code = await self._refusal()
        if code is None:
            self.checked_at = now
            return True
        await self.channel_layer.group_discard(self.group, self.channel_name)
        self.group = None  # events already on their way are dropped too
        await self.close(code=code)
        return False

    @database_sync_to_async
    def _refusal(self) -> int | None:
        """The close code if the socket's user may no longer hear this post, else None."""
        # The session as it is now, not the copy read at connect: a logout deleted it, a password change
        # voids its hash, and the backend refuses an inactive user.
        session = import_module(settings.SESSION_ENGINE).SessionStore(self.session_key)
        user = get_user(SimpleNamespace(session=session))
        if not user.is_authenticated or user.pk != self.scope["user"].pk:
            return CLOSE_UNAUTHENTICATED
        if not posts_visible_to(user=user).filter(pk=self.post_id).exists():
            return CLOSE_NOT_VISIBLE
        return None
