"""A webhook receiver for tests: real HTTP on 127.0.0.1 that records every request and answers as scripted.

    with WebhookReceiver() as receiver:
        receiver.reply(500)                           # then: reply(302, location="/elsewhere"), reply(200, delay=3)
        ... deliver to receiver.url("/hooks/mcn") ...
        request = receiver.requests()[0]
        assert request.headers["X-MCN-Event"] == "ping" and request.json["type"] == "ping"

Replies are a queue; when it is empty every request gets 200 "ok". Any path answers, any method is
recorded (a followed redirect would show up as a second request). `delay` holds the answer back, as a
slow receiver would; stop() ends such held requests at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.loop_server import LoopThreadServer

__all__ = ["RecordedRequest", "WebhookReceiver"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class _Reply:
    status: int = 200
    body: str = "ok"
    location: str = ""
    delay: float = 0.0


class WebhookReceiver(LoopThreadServer):
    name = "fake-webhook-receiver"

    def __init__(self, *, port: int = 0) -> None:
        super().__init__()
        self._port = port
        self._lock = threading.Lock()
        self._script: deque[_Reply] = deque()
        self._log: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str = "/hooks/mcn", *, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self._port}{path}"

    def reply(self, status: int = 200, *, body: str = "ok", location: str = "", delay: float = 0.0) -> None:
        """Queue the answer to the next request not yet answered."""
        with self._lock:
            self._script.append(_Reply(status, body, location, delay))

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        await self._serve(app)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self._log.append(RecordedRequest(request.method, request.path, dict(request.headers), body, time.time()))
            reply = self._script.popleft() if self._script else _Reply()
        if reply.delay and self._closing is not None:
            with contextlib.suppress(TimeoutError):  # the delay is up (stop() ends it early)
                await asyncio.wait_for(self._closing.wait(), timeout=reply.delay)
        headers = {"Location": reply.location} if reply.location else {}
        return web.Response(status=reply.status, text=reply.body, headers=headers)
