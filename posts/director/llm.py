"""A client for any OpenAI-compatible chat-completions endpoint (DeepSeek by default), built on httpx.

It gives every call a deadline, retries only what is transient (429, 5xx, a connection that failed) with
exponential backoff that honours `Retry-After`, and asks for JSON output. Errors come back as LLMError
subclasses with a `kind` ("unavailable", "timeout", "rejected") and a message a producer can act on. The
API key is sent in the Authorization header and nowhere else: it is scrubbed from every message, log line
and error detail, and kept out of `repr()`.
"""

import functools
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings

log = logging.getLogger(__name__)

# A Retry-After longer than this is not waited out inside a job: the call fails now as unavailable.
MAX_RETRY_AFTER = 120.0
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*.\-]{4,}")  # OpenAI's 401 echoes a masked key: "sk-abc***xyz"


class LLMError(Exception):
    """The LLM could not give an answer. `kind` tells the job layer what to do with it."""

    kind = "unavailable"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class LLMUnavailable(LLMError):
    """Transient: rate limited, server errors or unreachable, still so after the retries."""

    kind = "unavailable"


class LLMTimeout(LLMError):
    """The answer did not come within the deadline."""

    kind = "timeout"


class LLMRejected(LLMError):
    """The provider refused the request (bad key, model, quota, parameters): retrying will not help."""

    kind = "rejected"


@dataclass(frozen=True)
class Usage:
    """What one answer cost, from its `usage` block (0 tokens when the provider sent none) and its `model`."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _tokens(usage: dict, name: str) -> int:
    value = usage.get(name) if isinstance(usage, dict) else None
    return max(0, int(value)) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _seconds(value: float) -> str:
    return f"{value:g} s"


class LLMClient:
    """One chat-completions endpoint. Build it once per process (`from_settings()` does): httpx clients are costly."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        *,
        timeout: float = 60,
        connect_timeout: float = 10,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._api_key = api_key
        self._clock = clock
        self._sleep = sleep
        self._host = urlsplit(self.base_url).netloc or self.base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=min(connect_timeout, self.timeout)),
        )

    @classmethod
    def from_settings(cls) -> "LLMClient":
        """The process-wide client for settings.LLM_* (a new one when those settings change)."""
        return _shared_client(settings.LLM_BASE_URL, settings.LLM_MODEL, settings.LLM_API_KEY, settings.LLM_TIMEOUT)

    def __repr__(self) -> str:
        return f"<LLMClient {self.base_url} model={self.model}>"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- the call

    def chat(
        self,
        messages: list[dict],
        *,
        json_mode: bool = True,
        temperature: float | None = None,
        on_usage: Callable[[Usage], object] | None = None,
    ) -> str:
        """Send the messages and return the assistant's content (raises LLMError).

        `on_usage(Usage)` is called with each answer's model and token counts before the content is checked:
        an answer that is refused afterwards (no text) was billed all the same.
        """
        payload: dict = {"model": self.model, "messages": messages, "stream": False}
        if json_mode:
            # Both OpenAI and DeepSeek refuse this mode (400) unless a message mentions "json".
            payload["response_format"] = {"type": "json_object"}
        if temperature is not None:
            payload["temperature"] = temperature
        attempt = 0
        while True:
            outcome = self._attempt(payload, on_usage)
            if isinstance(outcome, str):
                return outcome
            reason, retry_after = outcome
            if attempt >= self.max_retries:
                raise LLMUnavailable(
                    f"LLM unavailable: {reason} after {self.max_retries} retries.",
                    details={"host": self._host, "reason": reason},
                )
            wait = retry_after if retry_after is not None else min(self.max_backoff, self.backoff * 2**attempt)
            attempt += 1
            log.warning("LLM %s: %s; retry %d/%d in %s", self._host, reason, attempt, self.max_retries, _seconds(wait))
            self._sleep(wait)

    def _attempt(self, payload: dict, on_usage=None) -> str | tuple[str, float | None]:
        """One request: the content, or (why, the server's Retry-After) when it is worth another try."""
        started = self._clock()
        try:
            with self.http.stream("POST", "/chat/completions", json=payload) as response:
                body = self._read(response, started)
        except httpx.TimeoutException as error:
            if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout):
                return f"cannot reach {self._host} ({type(error).__name__})", None
            # Not retried: the request may be running (and billed) on the provider's side; another try
            # would double the producer's wait for what is most often an overloaded provider.
            raise self._timed_out() from None
        except httpx.TransportError as error:
            return f"cannot reach {self._host} ({type(error).__name__})", None
        status = response.status_code
        if status == 200:
            return self._content(body, on_usage)
        detail = self._redact(self._error_message(body))
        if status == 429 or status >= 500:
            reason = f"{status}" + (" (rate limited)" if status == 429 else "")
            retry_after = self._retry_after(response)
            if retry_after is not None and retry_after > MAX_RETRY_AFTER:
                raise LLMUnavailable(
                    f"LLM unavailable: {reason}, the provider asks to wait {_seconds(retry_after)}.",
                    details={"host": self._host, "status": status, "error": detail},
                )
            return reason, retry_after
        if status in (401, 403):
            message = f"LLM rejected the API key ({status}): check LLM_API_KEY."
        else:
            message = f"LLM rejected the request ({status}): {detail or 'no reason given'}"
        raise LLMRejected(message, details={"host": self._host, "status": status, "error": detail})

    def _read(self, response: httpx.Response, started: float) -> bytes:
        # Read in chunks against the overall deadline: under load DeepSeek answers 200 at once and then
        # sends blank keep-alive lines for up to 30 minutes, which a per-read timeout never catches.
        chunks = []
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            if self._clock() - started > self.timeout:
                raise self._timed_out()
        return b"".join(chunks)

    def _timed_out(self) -> LLMTimeout:
        return LLMTimeout(
            f"Story generation timed out ({_seconds(self.timeout)}): the LLM at {self._host} did not answer in time.",
            details={"host": self._host, "timeout": self.timeout},
        )

    def _content(self, body: bytes, on_usage=None) -> str:
        try:
            data = json.loads(body)
            choice = data["choices"][0]
            content = choice["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise LLMUnavailable(
                f"LLM unavailable: {self._host} answered 200 without a chat completion.",
                details={"host": self._host, "body": self._redact(body[:300].decode(errors="replace"))},
            ) from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        if on_usage is not None:
            model = data.get("model") if isinstance(data.get("model"), str) and data.get("model") else self.model
            on_usage(Usage(model, _tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens")))
        finish_reason = choice.get("finish_reason")
        if content is None:
            raise LLMRejected(
                f"LLM returned no text (finish_reason={finish_reason}).",
                details={"host": self._host, "finish_reason": finish_reason},
            )
        if finish_reason == "length":
            log.warning("LLM %s: output cut at the token limit (%d characters)", self._host, len(content))
        log.info(
            "LLM %s %s: %s prompt + %s completion tokens",
            self._host,
            data.get("model", self.model),
            usage.get("prompt_tokens", "?"),
            usage.get("completion_tokens", "?"),
        )
        return content

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After", "").strip()
        try:
            return max(0.0, float(value)) if value else None
        except ValueError:
            return None  # an HTTP date: fall back to our own backoff

    @staticmethod
    def _error_message(body: bytes) -> str:
        try:
            error = json.loads(body).get("error")
            message = error.get("message") if isinstance(error, dict) else error
            return str(message or "")[:300]
        except (ValueError, AttributeError):
            return body[:300].decode(errors="replace").strip()

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return _KEY_LIKE.sub("***", text)


@functools.lru_cache(maxsize=4)
def _shared_client(base_url: str, model: str, api_key: str, timeout: int) -> LLMClient:
    return LLMClient(base_url, model, api_key, timeout=timeout)
