"""Refuse a request body larger than any upload we accept, before it is read (ASGI middleware).

The per-field validators (mcn_site.lib.media) give the precise message ("This video is 24.0 MB; the
limit is 8.0 MB.") for a file the server has received. A body beyond every limit is refused at the
door instead: a Content-Length above the limit gets 413 before a byte of the body is read, and a
chunked body is cut off once it passes the limit. nginx's `client_max_body_size` (docs/deploy.md)
is the same number.
"""

import json

from django.conf import settings
from django.template.defaultfilters import filesizeformat

from mcn_site.lib.api import error_body


def largest_request_bytes() -> int:
    """The largest request body that can be a valid upload: one file at the largest upload limit
    (MCN_MAX_VIDEO_BYTES by default) plus the rest of the form (DATA_UPLOAD_MAX_MEMORY_SIZE)."""
    largest_file = max(settings.MCN_MAX_IMAGE_BYTES, settings.MCN_MAX_VIDEO_BYTES, settings.MCN_MAX_AUDIO_BYTES)
    return largest_file + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed length itself
    return None


class RequestSizeLimit:
    """Wraps the ASGI application; websockets and lifespan pass through untouched."""

    def __init__(self, app, *, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _content_length(scope)
        if length is not None and length > self.limit:
            return await self._refuse(scope, send, size=length)

        received = 0
        cut_off = False
        started = False

        async def counting_receive():
            nonlocal received, cut_off
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Django's ASGIHandler reads the whole body before the view runs; a disconnect
                    # makes it drop what it spooled and return without answering, so we answer.
                    cut_off = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, tracking_send)
        if cut_off and not started:
            await self._refuse(scope, send, size=None)

    async def _refuse(self, scope, send, *, size: int | None) -> None:
        limit = filesizeformat(self.limit)
        if size is None:
            message = f"This request is larger than {limit}, the largest upload allowed."
        else:
            message = f"This request is {filesizeformat(size)}; the largest upload allowed is {limit}."
        # Under /api/ the API's one error shape; the pages' JSON endpoints read {"error": "..."}.
        if scope["path"].startswith("/api/"):
            body = error_body("too_large", message)
        else:
            body = {"error": message, "fields": {}}
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    # The body was not read: close rather than read (and drop) it to find the next request.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
