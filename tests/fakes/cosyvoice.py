"""A fake CosyVoice FastAPI server for tests: real HTTP on 127.0.0.1, streaming bare PCM.

It speaks the protocol of FunAudioLLM/CosyVoice `runtime/python/fastapi/server.py`:

- `POST /inference_sft`, form fields `tts_text`, `spk_id` (urlencoded or multipart);
- `POST /inference_zero_shot`, multipart: form fields `tts_text`, `prompt_text` and the file `prompt_wav`.

Both answer 200 with a chunked body of raw 16-bit little-endian mono PCM at the model's rate: no WAV
header, no Content-Length, no Content-Type (Starlette's StreamingResponse without a media type). Forks add
the rate in `X-Custom-Header-sampleRate` (`send_rate_header=True`). Errors are FastAPI's: 422 with
`{"detail": [{"type": "missing", "loc": ["body", "spk_id"], ...}]}` for a missing field (FastAPI treats an
empty form value as missing), 404/405 `{"detail": "Not Found"}`, and an unhandled exception before the
stream is a 500 with the text/plain body `Internal Server Error`. An exception *inside* the stream (an
unknown `spk_id` raises KeyError there) comes after the 200 headers: uvicorn then drops the connection
without the last chunk, and so does this fake.

The audio is a 220 Hz sine whose length follows the text (`expected_seconds`): 0.25 s per CJK character,
0.06 s per other non-space character, at least 0.5 s, so tests can assert durations.

    with running_cosyvoice(sample_rate=22050, send_rate_header=True) as fake:
        fake.stall_after_bytes(4800)         # faults: fail_next, refuse/accept, abort_after_bytes, empty_body
        ...                                  # client code against fake.url
        fake.release()                       # let a stalled stream finish
        assert fake.requests()[-1].fields == {"tts_text": "你好", "spk_id": "中文女"}

The server runs in a background thread with its own event loop, so clients in other processes (rq workers)
use it over HTTP like the real one. The fault script and the request log are guarded by a lock.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.loop_server import LoopThreadServer

__all__ = ["SFT_SPEAKERS", "FakeCosyVoice", "RecordedRequest", "expected_seconds", "running_cosyvoice"]

# The speakers of CosyVoice-300M-SFT (`list_available_spks()`).
SFT_SPEAKERS = ("中文女", "中文男", "日语男", "粤语女", "英文女", "英文男", "韩语女")
SAMPLE_RATE_HEADER = "X-Custom-Header-sampleRate"
TONE_HZ = 220.0
AMPLITUDE = 0.3

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def expected_seconds(text: str) -> float:
    """How long the fake's answer to `text` lasts (before rounding to whole frames)."""
    cjk = len(_CJK.findall(text))
    other = sum(1 for char in text if not char.isspace()) - cjk
    return max(0.5, 0.25 * cjk + 0.06 * other)


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    content_type: str  # of the request: multipart/form-data or application/x-www-form-urlencoded
    fields: dict[str, str]  # the plain form fields
    files: dict[str, UploadedFile]  # the file parts, by field name
    at: float = field(default_factory=time.time)

    @property
    def prompt_wav_size(self) -> int | None:
        upload = self.files.get("prompt_wav")
        return upload.size if upload else None


@dataclass(frozen=True)
class _Fault:
    kind: str  # "status" | "stall" | "abort" | "empty"
    status: int = 500
    detail: object = None
    after_bytes: int = 0


class FakeCosyVoice(LoopThreadServer):
    """A scriptable CosyVoice server on 127.0.0.1 (see the module docstring)."""

    name = "fake-cosyvoice"

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        send_rate_header: bool = False,
        chunks: int = 4,
        chunk_delay: float = 0.0,
        split_samples: bool = False,
        trailing_byte: bool = False,
        speakers: tuple[str, ...] = SFT_SPEAKERS,
        port: int = 0,
    ):
        self.sample_rate = sample_rate
        self.send_rate_header = send_rate_header
        self.chunks = max(1, chunks)
        self.chunk_delay = chunk_delay
        self.split_samples = split_samples  # chunk boundaries fall inside a sample (as TCP may cut them)
        self.trailing_byte = trailing_byte  # one stray byte after the last sample
        self.speakers = speakers
        self._port = port
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._log: list[RecordedRequest] = []
        super().__init__()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._closing: asyncio.Event | None = None
        self._released: asyncio.Event | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The base URL a client is configured with (COSYVOICE_URL)."""
        return f"http://127.0.0.1:{self._port}"

    # ---------------------------------------------------------------- faults

    def fail_next(self, status: int = 500, *, detail: object = None) -> None:
        """Answer the next request with `status`: 500 as Starlette's text/plain page unless a `detail` is
        given, any other status as FastAPI JSON `{"detail": ...}` (a 422 defaults to a missing spk_id)."""
        self._push(_Fault("status", status=status, detail=detail))

    def stall_after_bytes(self, n: int) -> None:
        """The next stream sends `n` bytes of audio, then hangs until `release()` (or `stop()`)."""
        self._push(_Fault("stall", after_bytes=n))

    def abort_after_bytes(self, n: int) -> None:
        """The next stream sends `n` bytes, then drops the connection (an exception inside the model)."""
        self._push(_Fault("abort", after_bytes=n))

    def empty_body(self) -> None:
        """The next request is answered 200 with no audio at all."""
        self._push(_Fault("empty"))

    def release(self) -> None:
        """Let stalled streams go on."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._set_released)

    def refuse(self) -> None:
        """Stop listening: new connections are refused (the server is down). `accept()` undoes it."""
        self._call(self._stop_site())

    def accept(self) -> None:
        """Listen again on the same port after `refuse()`."""
        self._call(self._start_site())

    def pending(self) -> int:
        with self._lock:
            return len(self._faults)

    def _push(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    # ---------------------------------------------------------------- what it produces, what it heard

    def expected_frames(self, text: str, sample_rate: int | None = None) -> int:
        return round(expected_seconds(text) * (sample_rate or self.sample_rate))

    def expected_seconds(self, text: str) -> float:
        """The exact duration of the answer to `text`, in whole frames."""
        return self.expected_frames(text) / self.sample_rate

    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (422s included)."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # ---------------------------------------------------------------- server

    def _set_released(self) -> None:
        if self._released is not None:
            self._released.set()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/inference_sft", self._sft)
        app.router.add_post("/inference_zero_shot", self._zero_shot)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._closing = asyncio.Event()
        self._released = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        try:
            await self._start_site()
        except BaseException:
            await self._runner.cleanup()
            raise
        self._port = self._runner.addresses[0][1]

    async def _start_site(self) -> None:
        assert self._runner is not None
        if self._site is None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
            await self._site.start()

    async def _stop_site(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for handler in self._runner.server.connections:  # a server that went down keeps no connection
                handler.force_close()

    async def _unlisten(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def _record(self, request: web.Request) -> RecordedRequest:
        fields: dict[str, str] = {}
        files: dict[str, UploadedFile] = {}
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            for name, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    files[name] = UploadedFile(value.filename, value.content_type, len(data))
                else:
                    fields[name] = str(value)
        else:
            await request.read()
        recorded = RecordedRequest(request.method, request.path, request.content_type, fields, files)
        with self._lock:
            self._log.append(recorded)
        return recorded

    async def _not_found(self, request: web.Request) -> web.Response:
        if request.path in ("/inference_sft", "/inference_zero_shot"):
            return web.json_response({"detail": "Method Not Allowed"}, status=405)
        return web.json_response({"detail": "Not Found"}, status=404)

    async def _sft(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        problems = _missing(recorded, ["tts_text", "spk_id"])
        if problems:
            return web.json_response({"detail": problems}, status=422)
        known = recorded.fields["spk_id"] in self.speakers
        # CosyVoice looks the speaker up inside the stream: an unknown one breaks it after the headers.
        return await self._answer(request, recorded.fields["tts_text"], broken=not known)

    async def _zero_shot(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        problems = _missing(recorded, ["tts_text", "prompt_text"], files=["prompt_wav"])
        if problems:
            return web.json_response({"detail": problems}, status=422)
        if recorded.files["prompt_wav"].size == 0:
            # load_wav() fails before the stream starts: Starlette's plain 500 page.
            return web.Response(status=500, text="Internal Server Error")
        return await self._answer(request, recorded.fields["tts_text"])

    async def _answer(self, request: web.Request, text: str, *, broken: bool = False) -> web.StreamResponse:
        fault = self._next_fault()
        if fault is not None and fault.kind == "status":
            return _error_response(fault)
        headers = {SAMPLE_RATE_HEADER: str(self.sample_rate)} if self.send_rate_header else {}
        response = web.StreamResponse(status=200, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        if fault is not None and fault.kind == "empty":
            await response.write_eof()
            return response
        if broken:
            return self._drop(request, response)
        pcm = _pcm(self.expected_frames(text), self.sample_rate)
        if self.trailing_byte:
            pcm += b"\x00"
        sent = 0
        for piece in self._pieces(pcm):
            if fault is not None and fault.kind in ("stall", "abort") and sent + len(piece) > fault.after_bytes:
                head = piece[: max(0, fault.after_bytes - sent)]
                if head:
                    await response.write(head)
                    sent += len(head)
                if fault.kind == "abort":
                    return self._drop(request, response)
                if await self._stall():
                    return self._drop(request, response)
                piece = piece[len(head) :]
                fault = None
            if piece:
                await response.write(piece)
                sent += len(piece)
            if self.chunk_delay and await self._pause(self.chunk_delay):
                return self._drop(request, response)
        await response.write_eof()
        return response

    def _pieces(self, pcm: bytes) -> Iterator[bytes]:
        size = math.ceil(len(pcm) / self.chunks)
        if not self.split_samples:
            size += size % 2  # whole samples, as CosyVoice's generate_data yields them
        elif size % 2 == 0:
            size += 1
        for start in range(0, len(pcm), max(1, size)):
            yield pcm[start : start + size]

    async def _stall(self) -> bool:
        """Wait for `release()` or the server stopping. True if it is stopping."""
        assert self._closing is not None and self._released is not None
        closing = asyncio.ensure_future(self._closing.wait())
        released = asyncio.ensure_future(self._released.wait())
        await asyncio.wait({closing, released}, return_when=asyncio.FIRST_COMPLETED)
        for task in (closing, released):
            task.cancel()
        return self._closing.is_set()

    async def _pause(self, seconds: float) -> bool:
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()

    @staticmethod
    def _drop(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        # What uvicorn does when the body iterator raises: close without the terminating chunk.
        if request.transport is not None:
            request.transport.abort()
        return response


def _missing(recorded: RecordedRequest, names: list[str], *, files: tuple | list = ()) -> list[dict]:
    """FastAPI's (pydantic 2) 422 entries for required form fields and files, in declaration order."""
    problems = []
    for name in names:
        if not recorded.fields.get(name):  # FastAPI reads an empty form value as missing
            problems.append({"type": "missing", "loc": ["body", name], "msg": "Field required", "input": None})
    for name in files:
        if name in recorded.files:
            continue
        if name in recorded.fields:
            problems.append(
                {
                    "type": "value_error",
                    "loc": ["body", name],
                    "msg": "Value error, Expected UploadFile, received: <class 'str'>",
                    "input": recorded.fields[name],
                    "ctx": {"error": {}},
                }
            )
        else:
            problems.append({"type": "missing", "loc": ["body", name], "msg": "Field required", "input": None})
    return problems


def _error_response(fault: _Fault) -> web.Response:
    if fault.status >= 500 and fault.detail is None:
        return web.Response(status=fault.status, text="Internal Server Error")
    detail = fault.detail
    if detail is None:
        detail = (
            [{"type": "missing", "loc": ["body", "spk_id"], "msg": "Field required", "input": None}]
            if fault.status == 422
            else "Bad Request"
        )
    return web.json_response({"detail": detail}, status=fault.status)


def _pcm(frames: int, sample_rate: int) -> bytes:
    step = 2 * math.pi * TONE_HZ / sample_rate
    peak = AMPLITUDE * 32767
    samples = array.array("h", (int(peak * math.sin(step * i)) for i in range(frames)))
    if sys.byteorder == "big":
        samples.byteswap()  # the wire format is little-endian
    return samples.tobytes()


@contextlib.contextmanager
def running_cosyvoice(**options) -> Iterator[FakeCosyVoice]:
    """A started fake for the `with` block (options as for FakeCosyVoice), stopped afterwards."""
    fake = FakeCosyVoice(**options).start()
    try:
        yield fake
    finally:
        fake.stop()
