"""The storyboard socket: who may listen, and what they hear."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from mcn_site.asgi import application
from mcn_site.lib import roles
from mcn_site.realtime import post_group, publish
from tests.factories import make_artist, make_post, make_user

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer reads the database from another thread


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(post_id: int, *, cookie: bytes = b"", origin: bytes = b"http://localhost") -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, f"/ws/posts/{post_id}/", headers=headers)


async def close_code(socket: WebsocketCommunicator) -> int | None:
    connected, _ = await socket.connect()
    assert connected
    output = await socket.receive_output(timeout=5)
    await socket.wait()
    return output.get("code") if output["type"] == "websocket.close" else None


def test_anonymous_socket_is_closed_with_4401():
    post = make_post()
    assert async_to_sync(close_code)(communicator(post.pk)) == 4401


def test_a_producer_who_is_not_a_member_is_closed_with_4404():
    post = make_post()
    outsider = make_user(role=roles.PRODUCER)
    assert async_to_sync(close_code)(communicator(post.pk, cookie=session_cookie(outsider))) == 4404


def test_a_socket_from_another_site_is_refused_at_the_handshake():
    producer = make_user(role=roles.PRODUCER)
    post = make_post(artist=make_artist(members=[producer]))
    cookie = session_cookie(producer)

    async def scenario():
        socket = communicator(post.pk, cookie=cookie, origin=b"https://evil.example")
        connected, _ = await socket.connect()
        return connected

    assert async_to_sync(scenario)() is False


def test_a_member_hears_what_is_published_to_the_posts_group():
    producer = make_user(role=roles.PRODUCER)
    post = make_post(artist=make_artist(members=[producer]))
    cookie = session_cookie(producer)

    async def scenario():
        socket = communicator(post.pk, cookie=cookie)
        connected, _ = await socket.connect()
        assert connected
        hello = await socket.receive_json_from(timeout=5)
        await database_sync_to_async(publish)(
            post_group(post.pk), "job.progress", {"shot_id": 7, "percent": 40.0, "node": "3"}
        )
        heard = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return hello, heard

    hello, heard = async_to_sync(scenario)()
    assert hello == {"event": "hello", "post_id": post.pk}
    assert heard == {"event": "job.progress", "shot_id": 7, "percent": 40.0, "node": "3"}
