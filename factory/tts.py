"""Text to speech: a client for CosyVoice's FastAPI server, and the factory's runner for `tts` jobs.

The server (FunAudioLLM/CosyVoice runtime/python/fastapi/server.py) answers `POST /inference_sft`
(form: tts_text, spk_id) and `POST /inference_zero_shot` (multipart: tts_text, prompt_text and the file
prompt_wav) with a chunked stream of bare 16-bit little-endian mono PCM: no WAV header, no length, and
the sample rate only in some forks' `X-Custom-Header-sampleRate`. Otherwise the rate is
COSYVOICE_SAMPLE_RATE (24000 for CosyVoice 2/3, 22050 for v1): a wrong rate plays every voice at the
wrong pitch and length, so the header wins when there is one.

A `tts` job takes plain data (the factory knows nothing of artists or voices):

    {"text": "大家好", "spk_id": "中文女" | "", "prompt_text": "sample transcription" | "",
     "prompt_wav": "<path under MEDIA_ROOT>" | ""}

A sample (prompt_wav, with its transcription) clones that voice; without one, spk_id names a speaker
built into the model. The job leaves one JobOutput (node "tts", audio/wav) at
MEDIA_ROOT/factory/tts/job-<id>-<attempt>.wav. Its duration is not stored on any row: the WAV header
is exact, and `wav_duration()` / `output_duration()` read it.
"""

import contextlib
import hashlib
import json
import logging
import mimetypes
import os
import re
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection

from factory import provenance, runners, services
from factory.models import ErrorKind, Job, JobKind, JobOutput

log = logging.getLogger(__name__)

SAMPLE_RATE_HEADER = "X-Custom-Header-sampleRate"
SAMPLE_WIDTH = 2  # bytes: CosyVoice sends int16
OUTPUT_NODE = "tts"
PROGRESS_NODE = "voice"
PROGRESS_INTERVAL = 0.5  # seconds between progress writes to the row
WATCH_INTERVAL = 1.0  # seconds between heartbeats / cancel checks while a voice is being made
CONNECT_TIMEOUT = 5.0

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_HTTP: dict[str, httpx.Client] = {}
_HTTP_LOCK = threading.Lock()


class VoiceError(Exception):
    """Making a voice failed: `message` is for producers, `kind` an ErrorKind, `details` for staff."""

    def __init__(self, message: str, *, kind: str = ErrorKind.EXECUTION, details: dict | None = None):
        super().__init__(message)
        self.message, self.kind, self.details = message, kind, details or {}


def _http_for(base_url: str) -> httpx.Client:
    """One httpx client per server per process: building one costs 20-35 ms."""
    with _HTTP_LOCK:
        if base_url not in _HTTP:
            _HTTP[base_url] = httpx.Client(base_url=base_url)
        return _HTTP[base_url]


class CosyVoiceClient:
    """One CosyVoice server. Cheap to build: the HTTP client underneath is shared per server."""

    def __init__(self, base_url: str, *, timeout: float = 120, sample_rate: int = 24000):
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)  # seconds one synthesis may take, and the longest silence in the stream
        self.sample_rate = int(sample_rate)
        self.http = _http_for(self.base_url)

    def __repr__(self) -> str:
        return f"<CosyVoiceClient {self.base_url} {self.sample_rate} Hz>"

    def synthesize_to(
        self,
        path: Path,
        *,
        text: str,
        spk_id: str | None = None,
        prompt_text: str | None = None,
        prompt_wav: Path | None = None,
        on_progress: Callable[[float], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        before_publish: Callable[[], object] | None = None,
    ) -> float:
        """Speak `text` into a WAV file at `path` and return its duration in seconds.

        With `prompt_wav` (and its transcription `prompt_text`) the voice is cloned from that sample
        (/inference_zero_shot); otherwise `spk_id` names a built-in speaker (/inference_sft). The file
        appears whole or not at all (a temporary file renamed into place). `on_progress(seconds)` hears
        the audio received so far; `should_cancel()` is asked between chunks; `before_publish()` runs just
        before the rename and raises to leave `path` alone. Raises VoiceError.
        """
        text = (text or "").strip()
        if not text:
            raise VoiceError("There is no text to speak.", kind=ErrorKind.CONFIG)
        if prompt_wav is not None:
            if not (prompt_text or "").strip():
                raise VoiceError(
                    "The voice sample has no transcription (prompt_text): CosyVoice clones a voice from both.",
                    kind=ErrorKind.CONFIG,
                )
            endpoint, data = "/inference_zero_shot", {"tts_text": text, "prompt_text": prompt_text.strip()}
        elif spk_id:
            endpoint, data = "/inference_sft", {"tts_text": text, "spk_id": spk_id}
        else:
            raise VoiceError(
                "The voice has neither a speaker id (spk_id) nor a sample (prompt_wav).", kind=ErrorKind.CONFIG
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            files = None
            if prompt_wav is not None:
                try:
                    sample = stack.enter_context(open(prompt_wav, "rb"))
                except OSError as error:
                    raise VoiceError(
                        f"The voice sample {prompt_wav.name} cannot be read ({error.strerror}).", kind=ErrorKind.CONFIG
                    ) from None
                content_type = mimetypes.guess_type(prompt_wav.name)[0] or "application/octet-stream"
                files = {"prompt_wav": (prompt_wav.name, sample, content_type)}
            return self._post(path, endpoint, data, files, on_progress, should_cancel, before_publish)

    # ---------------------------------------------------------------- the request

    def _post(self, path: Path, endpoint: str, data: dict, files, on_progress, should_cancel, before_publish) -> float:
        details = {"url": self.base_url, "endpoint": endpoint}
        started = time.monotonic()
        timeout = httpx.Timeout(self.timeout, connect=min(CONNECT_TIMEOUT, self.timeout))
        answered, tmp = False, None
        progress = _Received()
        try:
            with self.http.stream("POST", endpoint, data=data, files=files, timeout=timeout) as response:
                answered = True
                self._check_answer(response, details)
                rate = self._rate(response)
                fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
                tmp = Path(name)
                with os.fdopen(fd, "wb") as handle:
                    self._write(response, handle, rate, started, progress, on_progress, should_cancel, details)
                    handle.flush()
                    os.fsync(handle.fileno())
            if progress.frames == 0:
                raise VoiceError("The voice server returned no audio.", details=details)
            if before_publish is not None:
                before_publish()
            os.replace(tmp, path)
            tmp = None
            return progress.frames / rate
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise self._unreachable(error, details) from None
        except httpx.TimeoutException as error:
            raise VoiceError(
                f"The voice server at {self.base_url} sent nothing for {self.timeout:g} s (COSYVOICE_TIMEOUT).",
                kind=ErrorKind.STALLED,
                details={**details, "error": type(error).__name__, "audio_bytes": progress.bytes},
            ) from None
        except httpx.TransportError as error:
            if not answered:
                raise self._unreachable(error, details) from None
            # The model raised inside the stream (an unknown speaker id does): uvicorn drops the connection.
            raise VoiceError(
                f"The voice server broke off after {progress.bytes} bytes of audio; its log says why "
                "(an unknown speaker id does this).",
                details={**details, "error": f"{type(error).__name__}: {error}", "audio_bytes": progress.bytes},
            ) from None
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _unreachable(self, error: Exception, details: dict) -> VoiceError:
        return VoiceError(
            f"Voice server unreachable at {self.base_url}.",
            kind=ErrorKind.UNREACHABLE,
            details={**details, "error": f"{type(error).__name__}: {error}"},
        )

    def _check_answer(self, response: httpx.Response, details: dict) -> None:
        status = response.status_code
        if status == 200:
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type in ("text/html", "text/plain", "application/json"):  # a proxy's page, not audio
                body = _detail(response.read())
                raise VoiceError(
                    f"The voice server answered with {content_type} instead of audio: {body or 'no text'}",
                    details={**details, "status": status, "body": body},
                )
            return
        detail = _detail(response.read()) or "no reason given"
        details = {**details, "status": status, "body": detail}
        if status >= 500:
            raise VoiceError(f"The voice server failed ({status}): {detail}.", details=details)
        hint = " Is COSYVOICE_URL a CosyVoice FastAPI server?" if status in (404, 405) else ""
        raise VoiceError(
            f"The voice server refused the request ({status}): {detail}.{hint}", kind=ErrorKind.CONFIG, details=details
        )

    def _rate(self, response: httpx.Response) -> int:
        raw = response.headers.get(SAMPLE_RATE_HEADER, "").strip()
        if not raw:
            return self.sample_rate
        try:
            rate = int(float(raw))
        except ValueError:
            rate = 0
        if not 8000 <= rate <= 192000:
            log.warning(
                "voice server %s sent %s=%r; using %d Hz", self.base_url, SAMPLE_RATE_HEADER, raw, self.sample_rate
            )
            return self.sample_rate
        return rate

    def _write(
        self,
        response: httpx.Response,
        handle: BinaryIO,
        rate: int,
        started: float,
        progress: "_Received",
        on_progress,
        should_cancel,
        details: dict,
    ) -> None:
        writer = wave.open(handle, "wb")  # noqa: SIM115 - closed below: close() writes the sizes into the header
        writer.setnchannels(1)
        writer.setsampwidth(SAMPLE_WIDTH)
        writer.setframerate(rate)
        carry = b""
        try:
            for chunk in response.iter_bytes():
                progress.bytes += len(chunk)
                # HTTP chunks need not end on a sample: keep an odd byte for the next one.
                data = carry + chunk
                whole = len(data) - len(data) % SAMPLE_WIDTH
                if whole:
                    writer.writeframesraw(data[:whole])
                    progress.frames += whole // SAMPLE_WIDTH
                carry = data[whole:]
                if on_progress is not None:
                    on_progress(progress.frames / rate)
                if should_cancel is not None and should_cancel():
                    raise VoiceError("Cancelled while the voice was being made.", kind=ErrorKind.CANCELLED)
                # Per-read timeouts miss a server that trickles: the whole answer has a deadline too.
                if time.monotonic() - started > self.timeout:
                    raise VoiceError(
                        f"The voice took longer than {self.timeout:g} s to make (COSYVOICE_TIMEOUT).",
                        kind=ErrorKind.STALLED,
                        details={**details, "audio_bytes": progress.bytes},
                    )
        finally:
            writer.close()
        if carry:
            log.warning("voice server %s sent a stray last byte (an odd-length body); dropped", self.base_url)


class _Received:
    """What has come in so far, for the progress and the error messages."""

    def __init__(self) -> None:
        self.bytes = 0
        self.frames = 0


def _detail(body: bytes) -> str:
    """FastAPI's `{"detail": ...}` (a string, or pydantic's list of {loc, msg}) as one line, else the text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300].decode(errors="replace").strip()
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = [str(part) for part in item.get("loc") or [] if part != "body"]
                message = str(item.get("msg", item))
                parts.append(f"{'.'.join(where)}: {message}" if where else message)
            else:
                parts.append(str(item))
        return "; ".join(parts)[:300]
    return str(detail)[:300]


def estimate_seconds(text: str) -> float:
    """A rough length for `text` spoken (about 4 CJK characters or 16 Latin letters a second), for progress."""
    cjk = len(_CJK.findall(text))
    other = sum(1 for char in text if not char.isspace()) - cjk
    return max(0.5, 0.25 * cjk + 0.06 * other)


def wav_duration(path: Path) -> float:
    """Seconds of audio in a WAV file, from its header."""
    with wave.open(str(path), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


def output_duration(output: JobOutput) -> float:
    """Seconds of audio in a tts job's output file."""
    return wav_duration(Path(settings.MEDIA_ROOT) / output.file.name)


# --- the runner -----------------------------------------------------------------------------


class _Watch(threading.Thread):
    """Beside the synthesis: keep the job's heartbeat fresh and notice a cancel request.

    A long sentence may take CosyVoice longer than FACTORY_STALE_SECONDS before its first byte; a
    silent row would be handed to a second worker by the reconciler. Asking about cancel here also
    keeps the database out of the stream loop.
    """

    def __init__(self, job_id: int, *, claim, expected_seconds: float):
        super().__init__(name=f"tts-watch-{job_id}", daemon=True)
        self.job_id, self.claim, self.expected_seconds = job_id, claim, expected_seconds
        self.stopped, self.cancelled = threading.Event(), threading.Event()
        self.lost: services.ClaimLost | None = None
        self._last_progress = 0.0

    def run(self) -> None:
        try:
            while not self.stopped.wait(WATCH_INTERVAL):
                try:
                    if services.job_touch(job_id=self.job_id, claim=self.claim):
                        self.cancelled.set()
                except services.ClaimLost as error:  # taken over: the stream stops at its next chunk
                    self.lost = error
                    return
                except Exception:  # the watch must never take the job down
                    log.exception("tts watch failed for job %s", self.job_id)
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> "_Watch":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.join(timeout=10)

    def cancel_requested(self) -> bool:
        if self.lost is not None:
            raise self.lost
        return self.cancelled.is_set()

    def progress(self, seconds: float) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        expected = max(self.expected_seconds, seconds)
        services.job_progress(
            job_id=self.job_id,
            claim=self.claim,
            node=PROGRESS_NODE,
            value=int(seconds * 1000),  # milliseconds of audio received
            maximum=int(expected * 1000),
            percent=min(99.0, 100 * seconds / expected),  # 100 only when the job succeeds
        )


@runners.register(JobKind.TTS)
def run_tts(job: Job) -> None:
    """Make the job's voice and record the WAV as its output. Safe to run twice: a file already made is kept.

    Every failure is final (TaskFailed): an unreachable server is not retried automatically; the
    job's retry button (or the caller) runs it again.
    """
    base_url = str(getattr(settings, "COSYVOICE_URL", "") or "").strip()
    if not base_url:
        raise runners.TaskFailed("No voice server is set (COSYVOICE_URL).", kind=ErrorKind.CONFIG)
    params = job.params if isinstance(job.params, dict) else {}
    text = str(params.get("text") or "")
    prompt_wav = None
    if params.get("prompt_wav"):
        try:
            prompt_wav = services.media_path(str(params["prompt_wav"]))
        except ValidationError as error:
            raise runners.TaskFailed(f"Voice sample: {error.messages[0]}", kind=ErrorKind.CONFIG) from None
    # Task jobs do not count attempts (only ComfyUI submissions do): the first run is attempt 1.
    attempt = job.attempts or 1
    stored_name = f"factory/tts/job-{job.pk}-{attempt}.wav"
    final = Path(settings.MEDIA_ROOT) / stored_name
    if not final.exists():  # a re-run after the rename (worker killed before recording) keeps the file
        # A run killed mid-stream (its process SIGKILLed) left its half-written part; the row is ours now.
        for leftover in final.parent.glob(f".{final.name}.*.part"):
            leftover.unlink(missing_ok=True)
        client = CosyVoiceClient(
            base_url,
            timeout=getattr(settings, "COSYVOICE_TIMEOUT", 120),
            sample_rate=getattr(settings, "COSYVOICE_SAMPLE_RATE", 24000),
        )
        with _Watch(job.pk, claim=job.claim, expected_seconds=estimate_seconds(text)) as watch:
            try:
                client.synthesize_to(
                    final,
                    text=text,
                    spk_id=str(params.get("spk_id") or "") or None,
                    prompt_text=str(params.get("prompt_text") or "") or None,
                    prompt_wav=prompt_wav,
                    on_progress=watch.progress,
                    should_cancel=watch.cancel_requested,
                    # A worker presumed dead that wakes up here must not replace the live attempt's voice.
                    before_publish=lambda: services.job_touch(job_id=job.pk, claim=job.claim),
                )
            except VoiceError as error:
                raise runners.TaskFailed(error.message, kind=error.kind, details=error.details) from None
    digest = hashlib.sha256()
    with open(final, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    services.job_record_output(
        job_id=job.pk,
        claim=job.claim,
        attempt=attempt,
        node_id=OUTPUT_NODE,
        index=0,
        name=final.name,
        stored_name=stored_name,
        size=final.stat().st_size,
        sha256=digest.hexdigest(),
        content_type="audio/wav",
    )
    provenance.record_voice(job, params=params, prompt_wav=prompt_wav, output=final)
    # The ledger's TTS figure: the audio made, read from the WAV header; once per file (a re-run keeps it).
    services.job_record_usage(
        job_id=job.pk, claim=job.claim, key=f"audio:{stored_name}", audio_seconds=wav_duration(final)
    )
