"""The web server as production runs it (mcn_site/lib/web_server.py): uvicorn, in several processes.

A write served by one web process reaches the storyboard sockets held by every other (the Channels layer is
Redis, sessions are in the database): nothing a request or a socket needs lives in one process.
"""

import json
import os
from pathlib import Path

import httpx
import pytest
import websocket
from django.conf import settings
from django.db import connection

from artists.services import api_token_create
from mcn_site.lib import roles
from tests.e2e.conftest import AsgiServer, free_port
from tests.factories import make_artist, make_post, make_user
from tests.factory.conftest import subprocess_env
from tests.faults.test_redis import session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_a_write_served_by_one_web_process_reaches_the_sockets_held_by_another(tmp_path):
    # Two web processes (two uvicorn servers: as two workers, or two machines behind a balancer). Not one server
    # with --workers 2: the kernel decides which worker accepts a connection, and it may give them all to one.
    producer = make_user(role=roles.PRODUCER)
    post = make_post(artist=make_artist(members=[producer]), shots=2)
    shot = post.shots.first()
    _, key = api_token_create(user=producer, name="web server")
    env = subprocess_env(ALLOWED_HOSTS="127.0.0.1,localhost", SECRET_KEY=settings.SECRET_KEY)
    servers = [AsgiServer(port=free_port(), env=env, log_path=tmp_path / f"web-{n}.log").start() for n in range(2)]
    sockets: list[websocket.WebSocket] = []
    try:
        for server in servers:
            url = f"ws://127.0.0.1:{server.port}/ws/posts/{post.pk}/"
            sockets.append(
                websocket.create_connection(url, cookie=session_cookie(producer), origin=server.url, timeout=10)
            )
            assert json.loads(sockets[-1].recv()) == {"event": "hello", "post_id": post.pk}

        answer = httpx.patch(
            f"{servers[0].url}/api/v1/shots/{shot.pk}/",
            json={"script": "Changed by one web process."},
            headers={"Authorization": f"Token {key}", "If-Match": f'"v{post.version}"'},
            timeout=30,
        )

        assert answer.status_code == 200, answer.text
        for sock in sockets:  # the one on the server that served the write, and the one on the other
            frame = json.loads(sock.recv())
            assert frame["event"] == "post.changed" and frame["version"] == post.version + 1, frame
    finally:
        for sock in sockets:
            sock.close()
        for server in servers:
            server.stop()


def database_connections(pid: int) -> int:
    """The process's open database connections: handles on the SQLite file, or TCP sockets to PostgreSQL."""
    db = connection.settings_dict
    targets = {db["NAME"]} if connection.vendor == "sqlite" else set()
    if connection.vendor == "postgresql":
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == int(db["PORT"] or 5432):
                    targets.add(f"socket:[{fields[9]}]")
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") in targets
        except FileNotFoundError:
            continue
    return count


def test_the_web_server_keeps_no_database_connection_after_its_requests(tmp_path):
    # DATABASE_CONN_MAX_AGE=60 is right for the workers (docs/deploy.md); under ASGI each request's connection
    # would stay open until the garbage collector ran (8 to 15 after 50 requests, 81 under the load bench).
    env = subprocess_env(ALLOWED_HOSTS="127.0.0.1,localhost", DATABASE_CONN_MAX_AGE="60")
    server = AsgiServer(port=free_port(), env=env, log_path=tmp_path / "web.log").start()
    try:
        for _ in range(50):  # each looks the token up in the database
            answer = httpx.get(f"{server.url}/api/v1/posts/", headers={"Authorization": "Token mcn_abcdefgh_nope"})
            assert answer.status_code == 401, answer.text

        assert database_connections(server.process.pid) <= 1  # the last request's may still be closing
    finally:
        server.stop()
