"""A fake OpenAI-compatible chat-completions server (DeepSeek by default) for tests: real HTTP on 127.0.0.1.

`POST /v1/chat/completions` answers in the shape OpenAI and DeepSeek use (id, object "chat.completion",
created, model, choices[0].message.content, finish_reason, usage), errors in their `{"error": {...}}` shape.
Replies are scripted as a queue; when it is empty the default reply answers. Every request is recorded
(JSON body and headers) so a test can assert on what the client sent.

    with FakeLLM(api_key="sk-test") as fake:
        fake.reply_status(429, retry_after=2)      # then: reply_status(500), reply_delay(3, "..."), ...
        fake.reply('{"shots": []}')
        client = LLMClient(fake.url, "deepseek-chat", "sk-test")
        assert client.chat([{"role": "user", "content": "Answer in JSON"}]) == '{"shots": []}'
        assert fake.requests()[-1].json["response_format"] == {"type": "json_object"}

Protocol rules it enforces, as the real services do: `Authorization: Bearer <key>` when the fake has a key
(401 otherwise), a JSON body with a non-empty `messages` list (400 otherwise), and with
`response_format: {"type": "json_object"}` the word "json" somewhere in the messages (400 otherwise: both
OpenAI and DeepSeek refuse JSON mode without it; `require_json_word=False` turns this off).

`reply_trickle` imitates DeepSeek under load: it sends the 200 headers at once, then blank lines as
keep-alives, then the JSON body. A client relying on a read timeout alone waits as long as that lasts.

The server runs in a background thread with its own event loop; the script and the request log are guarded
by a lock, so tests read and write them from their own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loop_server import LoopThreadServer

__all__ = ["FakeLLM", "RecordedRequest"]

DEFAULT_CONTENT = '{"ok": true}'

# Messages and types as the real services send them.
_ERRORS = {
    400: ("invalid_request_error", "invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid_api_key", "Authentication Fails, Your api key is invalid."),
    402: ("insufficient_quota", "insufficient_quota", "Insufficient Balance"),
    404: ("invalid_request_error", "model_not_found", "Model Not Exist"),
    422: ("invalid_request_error", "invalid_parameters", "Invalid Parameters"),
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", "server_error", "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: ("server_error", "server_overloaded", "The server is overloaded due to high traffic. Please retry later."),
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body, or None when it was not JSON
    at: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict]:
        return (self.json or {}).get("messages", []) if isinstance(self.json, dict) else []

    @property
    def prompt_text(self) -> str:
        """Every message's content joined, for `"persona" in request.prompt_text` assertions."""
        return "\n".join(str(m.get("content", "")) for m in self.messages if isinstance(m, dict))


@dataclass(frozen=True)
class _Reply:
    status: int = 200
    content: str | None = DEFAULT_CONTENT
    finish_reason: str = "stop"
    delay: float = 0.0
    trickle: bool = False
    retry_after: float | str | None = None
    message: str | None = None
    raw_body: str | None = None  # sent as is (a proxy's HTML page, a truncated body)
    drop: bool = False  # close the connection without an answer
    model: str | None = None  # the model the answer names (default: the one asked for)
    usage: dict | None | bool = True  # True: counted as DeepSeek does; a dict: sent as is; None: no usage block


def _error_body(status: int, message: str | None = None) -> dict:
    kind, code, default = _ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None, ""))
    return {"error": {"message": message or default or f"HTTP {status}", "type": kind, "param": None, "code": code}}


class FakeLLM(LoopThreadServer):
    """A scriptable OpenAI-compatible server on 127.0.0.1 (see the module docstring)."""

    name = "fake-llm"

    def __init__(
        self,
        *,
        api_key: str | None = "sk-fake-test-key",
        default_reply: str = DEFAULT_CONTENT,
        require_json_word: bool = True,
        port: int = 0,
    ):
        self.api_key = api_key
        self.require_json_word = require_json_word
        self._default = _Reply(content=default_reply)
        self._port = port
        self._lock = threading.Lock()
        self._script: deque[_Reply] = deque()
        self._log: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._answered: list[dict] = []
        super().__init__()
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The base URL a client is configured with (like https://api.deepseek.com/v1)."""
        return f"http://127.0.0.1:{self._port}/v1"

    # ---------------------------------------------------------------- script

    def set_default(self, content: str) -> None:
        """The content answered once the queue of scripted replies is empty."""
        with self._lock:
            self._default = _Reply(content=content)

    def reply(
        self,
        content: str | None,
        *,
        finish_reason: str = "stop",
        usage: dict | None | bool = True,
        model: str | None = None,
    ) -> None:
        """Queue one good answer. `finish_reason="length"` imitates output cut at max_tokens.

        `usage`: True counts tokens (words here) into a usage block shaped like DeepSeek's; a dict is sent
        as the usage block as is; None leaves it out (some OpenAI-compatible servers do). `model`: the model
        the answer names, as OpenAI names a dated snapshot for an alias (default: the one asked for).
        """
        self._push(_Reply(content=content, finish_reason=finish_reason, usage=usage, model=model))

    def reply_status(
        self,
        status: int,
        *,
        retry_after: float | str | None = None,
        message: str | None = None,
        body: str | None = None,
    ) -> None:
        """Queue one error answer in the OpenAI error shape (or `body` as is), with `Retry-After` if given."""
        self._push(_Reply(status=status, content=None, retry_after=retry_after, message=message, raw_body=body))

    def reply_delay(self, seconds: float, content: str = DEFAULT_CONTENT) -> None:
        """Queue an answer that is sent, headers and all, only after `seconds`."""
        self._push(_Reply(content=content, delay=seconds))

    def reply_trickle(self, seconds: float, content: str = DEFAULT_CONTENT) -> None:
        """Queue an answer sending its 200 headers at once, a blank line every 0.1 s for `seconds`, then the body."""
        self._push(_Reply(content=content, delay=seconds, trickle=True))

    def reply_drop(self) -> None:
        """Queue a closed connection with no answer at all (a crashed proxy)."""
        self._push(_Reply(drop=True))

    def pending(self) -> int:
        """How many scripted replies have not been used yet."""
        with self._lock:
            return len(self._script)

    def _push(self, reply: _Reply) -> None:
        with self._lock:
            self._script.append(reply)

    def _next(self) -> _Reply:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    # ---------------------------------------------------------------- request log

    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (401s and 400s included)."""
        with self._lock:
            return list(self._log)

    def completions(self) -> list[RecordedRequest]:
        """The chat-completion requests only."""
        return [r for r in self.requests() if r.path.endswith("/chat/completions")]

    def answers(self) -> list[dict]:
        """Every chat completion sent back (200s), oldest first: their `model` and `usage` for ledger asserts."""
        with self._lock:
            return list(self._answered)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # ---------------------------------------------------------------- server

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)  # DeepSeek accepts the base URL without /v1
        app.router.add_get("/v1/models", self._models)
        await self._serve(app)

    async def _record(self, request: web.Request) -> RecordedRequest:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        recorded = RecordedRequest(request.method, request.path, dict(request.headers), body, parsed)
        with self._lock:
            self._log.append(recorded)
        return recorded

    def _authorized(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the server is stopping. True if it is stopping."""
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorized(request):
            return web.json_response(_error_body(401), status=401)
        return web.json_response({"object": "list", "data": [{"id": "deepseek-chat", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if not self._authorized(request):
            return web.json_response(_error_body(401), status=401)
        problem = self._validate(recorded.json)
        if problem:
            return web.json_response(_error_body(400, problem), status=400)
        reply = self._next()
        if reply.drop:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()  # never sent: the connection is gone
        if reply.delay and not reply.trickle and await self._pause(reply.delay):
            return web.Response(status=503)
        if reply.status != 200:
            headers = {} if reply.retry_after is None else {"Retry-After": str(reply.retry_after)}
            if reply.raw_body is not None:
                return web.Response(status=reply.status, text=reply.raw_body, headers=headers)
            return web.json_response(_error_body(reply.status, reply.message), status=reply.status, headers=headers)
        completion = self._completion(recorded.json, reply)
        with self._lock:
            self._answered.append(completion)
        body = json.dumps(completion, ensure_ascii=False)
        if not reply.trickle:
            return web.Response(text=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        deadline = time.monotonic() + reply.delay
        while time.monotonic() < deadline:
            await response.write(b"\n")
            if await self._pause(min(0.1, max(0.0, deadline - time.monotonic()))):
                return response
        await response.write(body.encode())
        await response.write_eof()
        return response

    def _validate(self, payload: Any) -> str | None:
        if not isinstance(payload, dict):
            return "Failed to deserialize the JSON body into the target type"
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            return "Invalid 'messages': empty array. Expected an array with minimum length 1."
        if not payload.get("model"):
            return "Missing required parameter: 'model'."
        response_format = payload.get("response_format") or {}
        if response_format.get("type") == "json_object" and self.require_json_word:
            text = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
            if "json" not in text.lower():
                return (
                    "Prompt must contain the word 'json' in some form to use 'response_format' of type 'json_object'."
                )
        return None

    def _completion(self, payload: dict, reply: _Reply) -> dict:
        # Tokens counted as words (plus the few a chat template adds per message): not a tokenizer, but
        # figures that grow with the text as a provider's do.
        messages = [m for m in payload["messages"] if isinstance(m, dict)]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) + 4 for m in messages)
        completion_tokens = len((reply.content or "").split())
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            # DeepSeek splits the prompt into what its context cache held and what it did not.
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": prompt_tokens,
        }
        if reply.usage is not True:
            usage = reply.usage
        completion = {
            "id": f"chatcmpl-{uuid.uuid4()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or payload["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": usage,
            "system_fingerprint": f"fp_fake_{next(self._ids)}",
        }
        if usage is None:
            del completion["usage"]
        return completion
