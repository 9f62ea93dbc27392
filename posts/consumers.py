"""The storyboard page's live channel: authenticated, authorized by the same selector as the views."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from mcn_site.realtime import post_group
from posts.selectors import posts_visible_to

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_VISIBLE = 4404  # like the pages: a post you may not see does not exist for you


class StoryboardConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

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
        await self.send_json({"event": message["event"], **message["payload"]})
