"""A ComfyUI client that survives the faults of docs/reliability (httpx + websocket-client).

It speaks ComfyUI 0.3.64's protocol: our own prompt ids, the websocket opened
before submitting, `/history` polled alongside the socket (the socket can go
silent while work continues), two deadlines, and targeted interrupts. It knows
nothing of Django: errors come back as ComfyUIError with a `kind` the job
layer maps onto its error kinds.
"""

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx
import websocket

log = logging.getLogger(__name__)


class ComfyUIError(Exception):
    """Something went wrong talking to ComfyUI. `kind` is one of the factory's error kinds."""

    kind = "execution"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class Unreachable(ComfyUIError):
    kind = "unreachable"


class WorkflowRejected(ComfyUIError):
    kind = "config"


class ExecutionFailed(ComfyUIError):
    kind = "execution"


class OutOfMemory(ExecutionFailed):
    kind = "oom"


class PromptLost(ComfyUIError):
    kind = "lost"


class Stalled(ComfyUIError):
    kind = "stalled"


class Cancelled(ComfyUIError):
    kind = "cancelled"


@dataclass
class Progress:
    node: str = ""
    value: int = 0
    maximum: int = 0

    @property
    def percent(self) -> float:
        return round(100.0 * self.value / self.maximum, 1) if self.maximum else 0.0


@dataclass
class OutputFile:
    node_id: str
    index: int
    filename: str
    subfolder: str
    type: str
    kind: str = "image"  # image | video | audio (factory.models.OutputKind)


@dataclass
class Deadlines:
    total_seconds: float = 3000.0  # below rq's job timeout
    stall_seconds: float = 120.0  # no progress or node change for this long
    poll_seconds: float = 5.0  # /history poll, mandatory alongside the socket


@dataclass
class PromptState:
    """Where a prompt we submitted stands on the server."""

    state: str  # "done", "running", "pending", "absent"
    history: dict = field(default_factory=dict)
    client_id: str | None = None  # the socket id it was submitted with, while queued or running


def _describe_node_errors(node_errors: dict) -> str:
    parts = []
    for node_id, entry in sorted(node_errors.items()):
        for err in entry.get("errors", []):
            # For range and missing-input errors `details` is only the input name: keep the reason too.
            message, detail = err.get("message", ""), err.get("details", "")
            text = f"{message} ({detail})" if message and detail else (message or detail)
            parts.append(f"node {node_id} ({entry.get('class_type', '?')}): {text}")
    return "; ".join(parts)


class ComfyUIClient:
    """One ComfyUI server. Build it once per process: httpx clients are costly to make."""

    def __init__(self, base_url: str, *, client_id: str, connect_timeout: float = 3.0, read_timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.http = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(read_timeout, connect=connect_timeout))

    def close(self) -> None:
        self.http.close()

    # --- plain requests ------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise Unreachable(
                f"GPU server unreachable at {self.base_url} ({type(error).__name__}).",
                details={"error": str(error), "path": path},
            ) from error

    def _json(self, method: str, path: str, **kwargs):
        response = self._request(method, path, **kwargs)
        if response.status_code >= 500:
            raise Unreachable(
                f"GPU server error {response.status_code} on {path}.", details={"body": response.text[:500]}
            )
        if response.status_code >= 400:
            raise Unreachable(
                f"{self.base_url} answered {response.status_code} on {path}: is it a ComfyUI server?",
                details={"body": response.text[:500]},
            )
        return response.json() if response.content else {}

    def system_stats(self) -> dict:
        return self._json("GET", "/system_stats")

    def object_info(self) -> dict:
        return self._json("GET", "/object_info")

    def queue_ids(self) -> tuple[set[str], set[str]]:
        """(running prompt ids, pending prompt ids)."""
        running, pending = self._queue_items()
        return set(running), set(pending)

    def _queue_items(self) -> tuple[dict[str, list], dict[str, list]]:
        """Running and pending queue items by prompt id: [number, prompt_id, prompt, extra_data, outputs]."""
        data = self._json("GET", "/queue")
        running = {item[1]: item for item in data.get("queue_running", [])}
        pending = {item[1]: item for item in data.get("queue_pending", [])}
        return running, pending

    def history(self, prompt_id: str) -> dict:
        """The history entry of a finished prompt, or {} while it is queued, running or unknown."""
        return self._json("GET", f"/history/{prompt_id}").get(prompt_id, {})

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt only this prompt (a global interrupt could hit the next job), and drop it if pending."""
        with contextlib.suppress(ComfyUIError, httpx.HTTPError):
            self._request("POST", "/interrupt", json={"prompt_id": prompt_id})
            self._request("POST", "/queue", json={"delete": [prompt_id]})

    def free(self, *, unload_models: bool = True, free_memory: bool = True) -> None:
        self._request("POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory})

    def upload(self, path: Path, *, name: str, subfolder: str = "mcn") -> str:
        """Upload an input file; return the name a LoadImage/LoadAudio node must use."""
        with open(path, "rb") as handle:
            response = self._request(
                "POST",
                "/upload/image",
                files={"image": (name, handle)},
                data={"type": "input", "subfolder": subfolder, "overwrite": "true"},
            )
        if response.status_code != 200:
            raise Unreachable(f"Upload of {name} refused ({response.status_code}).")
        data = response.json()
        return f"{data['subfolder']}/{data['name']}" if data.get("subfolder") else data["name"]

    def input_size(self, name: str, *, subfolder: str = "mcn") -> int | None:
        """The size of a file in the server's input folder, or None when it has none by that name.

        One byte is asked for (a Range request: /view answers with the file, and aiohttp honours ranges), so
        a large voice file is not downloaded to learn that it is there.
        """
        params = {"filename": name, "subfolder": subfolder, "type": "input"}
        try:
            with self.http.stream("GET", "/view", params=params, headers={"Range": "bytes=0-0"}) as response:
                if response.status_code == 206:
                    total = response.headers.get("content-range", "").rpartition("/")[2]
                    return int(total) if total.isdigit() else None
                if response.status_code == 200:
                    length = response.headers.get("content-length", "")
                    return int(length) if length.isdigit() else None
                return None
        except httpx.TransportError as error:
            raise Unreachable(f"GPU server unreachable while looking for input {name}.") from error

    def download(self, output: OutputFile) -> Iterator[bytes]:
        params = {"filename": output.filename, "subfolder": output.subfolder, "type": output.type}
        try:
            with self.http.stream("GET", "/view", params=params) as response:
                if response.status_code != 200:
                    raise ExecutionFailed(
                        f"Output {output.filename} could not be fetched ({response.status_code}).",
                        details={"params": params},
                    )
                yield from response.iter_bytes(1 << 16)
        except httpx.TransportError as error:
            raise Unreachable(f"GPU server unreachable while fetching {output.filename}.") from error

    # --- submitting and watching -------------------------------------------------------

    def submit(self, prompt: dict, *, prompt_id: str, client_id: str | None = None) -> None:
        """Queue `prompt` under our own id, its events for the socket of `client_id` (default: ours).
        A 400 (or partial acceptance) is a config error: never retried."""
        response = self._request(
            "POST", "/prompt", json={"prompt": prompt, "client_id": client_id or self.client_id, "prompt_id": prompt_id}
        )
        if response.status_code == 400:
            body = response.json()
            error = body.get("error", {})
            detail = _describe_node_errors(body.get("node_errors", {})) or error.get("message", "")
            extra = f" ({error.get('details')})" if error.get("details") and not body.get("node_errors") else ""
            raise WorkflowRejected(f"Workflow invalid: {detail}{extra}", details=body)
        if response.status_code >= 500:
            raise Unreachable(f"GPU server error {response.status_code} on submit.", details={"body": response.text})
        body = response.json()
        if body.get("node_errors"):
            # Accepted with broken branches silently skipped: not the job we asked for.
            self.interrupt(prompt_id)
            raise WorkflowRejected(f"Workflow invalid: {_describe_node_errors(body['node_errors'])}", details=body)

    def locate(self, prompt_id: str) -> PromptState:
        """Reconcile: is our prompt done, running, pending, or gone (server restarted)?"""
        entry = self.history(prompt_id)
        if entry:
            return PromptState("done", entry)
        running, pending = self._queue_items()
        for state, items in (("running", running), ("pending", pending)):
            if prompt_id in items:
                extra_data = items[prompt_id][3] if len(items[prompt_id]) > 3 else {}
                client_id = extra_data.get("client_id") if isinstance(extra_data, dict) else None
                return PromptState(state, client_id=client_id)
        # It may have finished between the two reads.
        entry = self.history(prompt_id)
        return PromptState("done", entry) if entry else PromptState("absent")

    def open_socket(self, timeout: float = 5.0, *, client_id: str | None = None) -> websocket.WebSocket | None:
        """The event socket under our client id, or under `client_id` to re-attach to a prompt submitted
        with it: ComfyUI sends a prompt's events only to the socket of the id it was queued with."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = f"{scheme}://{parts.netloc}{parts.path}/ws?clientId={client_id or self.client_id}"
        try:
            return websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        except (OSError, websocket.WebSocketException) as error:
            log.info("ComfyUI socket not available (%s); relying on /history polling", error)
            return None

    def wait(
        self,
        prompt_id: str,
        *,
        socket: websocket.WebSocket | None,
        deadlines: Deadlines,
        on_progress: Callable[[Progress], None] = lambda p: None,
        should_cancel: Callable[[], bool] = lambda: False,
        before_interrupt: Callable[[], object] = lambda: None,
        on_long_node: Callable[[str, float], object] = lambda node, seconds: None,
        on_message: Callable[[str, dict], object] = lambda kind, data: None,
        on_history: Callable[[dict], object] = lambda entry: None,
        clock: Callable[[], float] = time.monotonic,
        client_id: str | None = None,
        borrowed: bool = False,
    ) -> dict:
        """Wait for the prompt to finish; return its history entry or raise the matching ComfyUIError.

        `client_id`: the socket id the prompt was submitted with (reopening uses it); `borrowed`: that id was
        another worker's (re-attaching to its prompt). ComfyUI keeps one socket per id and forgets the id when
        any socket of it closes: the other worker's old socket closing (it was presumed dead and woke up)
        silences ours, so silence on a borrowed id is first answered by reopening, once, not by an interrupt.
        `before_interrupt()` runs before each interrupt this wait sends (cancel, stall, deadline): it raises
        to leave the prompt alone, when the caller may no longer touch it (another worker took it over).

        Silence is not a stall by itself: a video model's single node (a sampling window, a VAE decode of
        hundreds of frames) runs for minutes without an event. After `stall_seconds` of silence the server is
        asked: one that answers and still runs the prompt is busy (`on_long_node(node, silent_seconds)`), and
        is waited for until `total_seconds` (the template's time budget) is spent; one that does not answer,
        or whose queue no longer runs the prompt while its history has no entry, is stuck: interrupted, Stalled.

        `on_message(type, data)` sees each socket message of this prompt, and `on_history(entry)` its history
        entry once it is read, success or not (the cost ledger reads ComfyUI's execution timestamps there).
        """
        started = last_sign = clock()
        next_poll = started  # poll at once: it may have finished before the socket opened
        progress = Progress()
        # Silence means "no progress" only from a socket that has spoken: ComfyUI greets every socket
        # with `status`, and one that never delivers a frame (#15240) or none at all tells us nothing,
        # so a long prompt behind it is left to /history polling and the total deadline.
        heard = False
        reopened = False  # since the last progress, on a borrowed id
        try:
            while True:
                now = clock()
                if should_cancel():
                    before_interrupt()
                    self.interrupt(prompt_id)
                    raise Cancelled("Cancelled by request.")
                if now - started > deadlines.total_seconds:
                    before_interrupt()
                    self.interrupt(prompt_id)
                    raise Stalled(
                        f"Timed out after {deadlines.total_seconds:.0f} s (the time budget); "
                        "cancelled on the GPU server.",
                        details={"node": progress.node, "interrupted": True, "prompt_id": prompt_id},
                    )
                if heard and now - last_sign > deadlines.stall_seconds and borrowed and not reopened:
                    with contextlib.suppress(Exception):
                        socket.close()
                    socket, heard, reopened = self.open_socket(client_id=client_id), False, True
                    continue
                if heard and now - last_sign > deadlines.stall_seconds:
                    try:
                        where = self.locate(prompt_id)
                    except Unreachable:
                        where = None  # it answers no more: stuck (a server that is down also broke the socket)
                    if where is not None and where.state == "done":
                        return self._settle(where.history, on_history)
                    if where is not None and where.state in ("running", "pending"):
                        if where.state == "running":
                            on_long_node(progress.node, now - last_sign)
                        last_sign = clock()  # busy, not stuck: asked again after another stall_seconds
                        continue
                    before_interrupt()
                    self.interrupt(prompt_id)
                    reason = "the GPU server does not answer" if where is None else "its queue no longer runs it"
                    raise Stalled(
                        f"Stalled: no progress for {deadlines.stall_seconds:.0f} s and {reason}; "
                        "cancelled on the GPU server.",
                        details={"node": progress.node, "interrupted": True, "prompt_id": prompt_id},
                    )
                if now >= next_poll and heard:
                    # The socket speaks, so the server lives: /history says when it is done, and /queue is
                    # asked only when a silence needs explaining (above), so a /queue that hangs is a stall.
                    next_poll = now + deadlines.poll_seconds
                    entry = self.history(prompt_id)
                    if entry:
                        return self._settle(entry, on_history)
                elif now >= next_poll:
                    next_poll = now + deadlines.poll_seconds
                    where = self.locate(prompt_id)
                    if where.state == "pending":
                        last_sign = clock()  # waiting in ComfyUI's queue is not a stall; the total deadline holds
                    if where.state == "done":
                        return self._settle(where.history, on_history)
                    if where.state == "absent":
                        raise PromptLost("The GPU server lost the prompt (it restarted?).")
                    if socket is None:
                        socket = self.open_socket(client_id=client_id)
                wait_for = max(0.05, min(next_poll - clock(), 1.0))
                message = self._receive(socket, wait_for) if socket else None
                if socket is not None and message is False:
                    with contextlib.suppress(Exception):
                        socket.close()
                    socket = None  # reopened at the next poll
                    # What went on while it was down is unknown: the stall clock starts again when the new
                    # socket speaks, or a socket that keeps dropping gets a healthy prompt interrupted.
                    heard = False
                    continue
                if socket is None:
                    time.sleep(wait_for)
                    continue
                if message and not heard:
                    heard, last_sign = True, clock()
                if not message or message.get("data", {}).get("prompt_id") not in (prompt_id, None):
                    continue
                kind, data = message.get("type"), message.get("data", {})
                if data.get("prompt_id") == prompt_id:
                    on_message(kind, data)
                if kind == "progress" and data.get("prompt_id") == prompt_id:
                    progress = Progress(str(data.get("node") or progress.node), data["value"], data["max"])
                    last_sign, reopened = clock(), False
                    on_progress(progress)
                elif kind == "executing" and data.get("prompt_id") == prompt_id:
                    last_sign, reopened = clock(), False
                    if data.get("node") is None:
                        next_poll = clock()  # finished: read the authoritative result now
                    else:
                        progress = Progress(str(data["node"]), 0, 0)
                        on_progress(progress)
                elif kind in {"execution_success", "execution_error", "execution_interrupted"}:
                    next_poll = clock()
        finally:
            if socket is not None:
                with contextlib.suppress(Exception):
                    socket.close()

    @staticmethod
    def _receive(socket: websocket.WebSocket, timeout: float):
        """One JSON message, None on timeout or a binary frame, False when the socket broke."""
        socket.settimeout(timeout)
        try:
            frame = socket.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (OSError, websocket.WebSocketException):
            return False
        if not isinstance(frame, str):
            return None  # previews: not ours to keep
        try:
            return json.loads(frame)
        except ValueError:
            return None

    @classmethod
    def _settle(cls, entry: dict, on_history: Callable[[dict], object]) -> dict:
        on_history(entry)
        return cls._outcome(entry)

    @staticmethod
    def _outcome(entry: dict) -> dict:
        status = entry.get("status", {})
        if status.get("status_str") == "success":
            return entry
        messages = status.get("messages", [])
        last_kind, data = messages[-1] if messages else ("", {})
        if last_kind == "execution_interrupted":
            raise Cancelled("Interrupted on the GPU server.", details=data)
        node = f"node {data.get('node_id', '?')} ({data.get('node_type', '?')})"
        text = (data.get("exception_message") or "unknown error").strip().splitlines()[0]
        details = {k: data.get(k) for k in ("node_id", "node_type", "exception_type", "exception_message", "traceback")}
        if "OutOfMemory" in (data.get("exception_type") or "") or "out of memory" in text.lower():
            raise OutOfMemory(f"Out of GPU memory on {node}.", details=details)
        raise ExecutionFailed(f"Failed on {node}: {text}", details=details)


VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif"})
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac"})


def _kind(key: str, item: dict, animated: bool) -> str:
    suffix = PurePosixPath(item["filename"]).suffix.lower()
    if key == "audio" or suffix in AUDIO_EXTENSIONS:
        return "audio"
    if animated or suffix in VIDEO_EXTENSIONS or (key in ("gifs", "videos") and suffix not in {".png", ".jpg"}):
        return "video"
    return "image"


def output_files(entry: dict, *, result_node: str = "") -> list[OutputFile]:
    """The saved files of a finished prompt, each with its kind (image, video, audio).

    Core video nodes (SaveVideo, SaveWEBM, SaveAnimatedWEBP/PNG) report under `images` with `animated: [true]`;
    VideoHelperSuite's VHS_VideoCombine under `gifs`, naming the clip (its `-audio` twin when audio was
    connected) and, as `workflow`, a first-frame PNG that is never the result. With `result_node` only that
    node's files count (previews in temp/ included, as VHS writes there with save_output off); without,
    every node's saved files (previews in temp/ are not outputs).
    """
    files = []
    outputs_by_node = entry.get("outputs", {})
    if result_node:
        outputs_by_node = {result_node: outputs_by_node.get(result_node, {})}
    for node_id, outputs in sorted(outputs_by_node.items()):
        index = 0
        animated = any(outputs.get("animated") or []) if isinstance(outputs, dict) else False
        for key in ("images", "gifs", "videos", "audio"):
            items = [i for i in outputs.get(key, []) or [] if isinstance(i, dict) and i.get("filename")]
            names = {i["filename"] for i in items}
            for item in items:
                stem, dot, ext = item["filename"].rpartition(".")
                if key == "gifs" and f"{stem}-audio{dot}{ext}" in names:
                    continue  # the silent twin of an `-audio` clip
                folder = item.get("type", "output")
                if folder == "output" or (result_node and folder == "temp"):
                    kind = _kind(key, item, animated)
                    files.append(OutputFile(node_id, index, item["filename"], item.get("subfolder", ""), folder, kind))
                    index += 1
    return files
