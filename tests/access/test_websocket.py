"""Who may listen to a post's live channel: connect, then hear a push, per caller (posts/consumers.py)."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from mcn_site.realtime import post_group, publish
from posts.consumers import CLOSE_NOT_VISIBLE, CLOSE_UNAUTHENTICATED
from tests.posts.test_consumers import communicator, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

HEARS = "hears"
# Caller -> what the socket does: HEARS (hello, then the push) or the close code it gets at once.
WEBSOCKET = {
    "A": CLOSE_UNAUTHENTICATED,
    "X": CLOSE_NOT_VISIBLE,  # the post is another team's: it does not exist for them
    "P": HEARS,
    "R": HEARS,  # reviewers follow the posts they decide on
    "O": HEARS,
}


async def listen(post_id: int, cookie: bytes) -> str | int:
    socket = communicator(post_id, cookie=cookie)
    connected, _ = await socket.connect()
    assert connected  # accepted, then closed with a code the page can read
    first = await socket.receive_output(timeout=5)
    if first["type"] == "websocket.close":
        return first["code"]
    await database_sync_to_async(publish)(post_group(post_id), "post.changed", {"matrix": True})
    heard = await socket.receive_json_from(timeout=5)
    await socket.disconnect()
    assert heard == {"event": "post.changed", "matrix": True}
    return HEARS


def test_who_may_listen_to_a_post(people):
    post_id = people["post"].pk
    cookies = {role: session_cookie(user) for role, user in people["users"].items()}

    got = {caller: async_to_sync(listen)(post_id, cookies.get(caller, b"")) for caller in WEBSOCKET}

    assert got == WEBSOCKET
