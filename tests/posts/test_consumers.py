"""The storyboard socket: who may listen, and what they hear."""

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from mcn_site.asgi import application
from mcn_site.lib import roles
from mcn_site.realtime import post_group, publish
from posts.consumers import CLOSE_NOT_VISIBLE, CLOSE_UNAUTHENTICATED, RECHECK_SECONDS
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


# --- access is asked again while the socket is open ----------------------------------------------


def _revoke_by_logout(client, user, artist):
    client.logout()


def _revoke_by_deactivation(client, user, artist):
    user.is_active = False
    user.save(update_fields=["is_active"])


def _revoke_by_membership(client, user, artist):
    artist.members.remove(user)


def _revoke_nothing(client, user, artist):
    pass


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("revoke", "expected_code"),
    [
        (_revoke_by_logout, CLOSE_UNAUTHENTICATED),
        (_revoke_by_deactivation, CLOSE_UNAUTHENTICATED),
        (_revoke_by_membership, CLOSE_NOT_VISIBLE),
        (_revoke_nothing, None),
    ],
)
def test_an_open_socket_stops_hearing_the_post_soon_after_its_access_ends(revoke, expected_code):
    producer = make_user(role=roles.PRODUCER)
    artist = make_artist(members=[producer])
    post = make_post(artist=artist)
    browser = Client()
    browser.force_login(producer)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def push(n: int):
        await database_sync_to_async(publish)(post_group(post.pk), "post.changed", {"n": n})

    async def scenario():
        socket = communicator(post.pk, cookie=cookie)
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from(timeout=5))["event"] == "hello"
        await push(0)
        assert await socket.receive_json_from(timeout=5) == {"event": "post.changed", "n": 0}

        await database_sync_to_async(revoke)(browser, producer, artist)
        revoked_at = time.monotonic()
        # Events keep coming; the socket may hear some within RECHECK_SECONDS, then it is closed.
        # (A timeout here would fail the test: asgiref's communicator cancels the consumer on one.)
        heard, closed, n = [], None, 0
        while time.monotonic() - revoked_at < RECHECK_SECONDS + 3 and closed is None:
            n += 1
            await push(n)
            output = await socket.receive_output(timeout=3)  # each push is relayed or closes the socket
            if output["type"] == "websocket.close":
                closed = (output.get("code"), time.monotonic() - revoked_at)
            else:
                heard.append(n)
            await asyncio.sleep(0.2)
        if closed is not None:
            await push(n + 1)
            assert await socket.receive_nothing(timeout=0.5)  # nothing after the close
        else:
            await socket.disconnect()
        return closed, heard

    closed, heard = async_to_sync(scenario)()
    if expected_code is None:
        assert closed is None
        assert len(heard) >= RECHECK_SECONDS * 2  # a member keeps hearing every event past the re-checks
    else:
        code, after = closed
        assert code == expected_code
        assert after < RECHECK_SECONDS + 1.5
