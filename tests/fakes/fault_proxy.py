"""A TCP fault proxy on 127.0.0.1 for tests: sits between a client and one upstream and drops connections.

Put it where a process expects its server (a GPU worker's `--comfyui-url`, a Redis URL) and switch its
behaviour while the test runs:

    with FaultProxy("http://127.0.0.1:8188") as proxy:     # or FaultProxy(("127.0.0.1", 6379))
        start_worker(proxy.url)
        proxy.reset_after(0, websocket_only=True, times=1)  # RST the websocket at its next byte
        proxy.black_hole()                                  # accept, forward nothing (timeouts)
        proxy.refuse()                                      # the port closes: ECONNREFUSED
        proxy.hold(b"GET /view")                            # park requests that contain these bytes...
        proxy.release()                                     # ...until the test lets them go
        proxy.pass_through()                                # back to a plain pipe (reopens a refused port)
        proxy.wait_until(lambda: proxy.resets == 1, what="the reset")

Modes apply to connections already open as well as to new ones. A reset closes the client side with
SO_LINGER 0, so the client reads ECONNRESET (no FIN, no websocket close frame), and drops the upstream
side too, as a NAT or load balancer that forgets a connection would. Every count and each connection's
record (`connections()`) is readable from the test's thread; waits go through `wait_until` on a condition
variable, never through sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "ProxiedConnection"]

CHUNK = 1 << 16


@dataclass
class ProxiedConnection:
    """What the proxy saw of one client connection."""

    number: int
    request: str = ""  # the first line the client sent ("GET /ws?clientId=... HTTP/1.1"), if it is text
    websocket: bool = False
    bytes_up: int = 0  # client -> upstream, forwarded
    bytes_down: int = 0  # upstream -> client, forwarded
    held: bool = False  # parked by hold() right now
    outcome: str = "open"  # open | closed | reset | black-holed | upstream-refused
    # The response byte count at which to park this connection (hold(..., response_bytes=N)).
    hold_down_at: int | None = field(default=None, repr=False)


class FaultProxy:
    def __init__(self, upstream: str | tuple[str, int], *, port: int = 0):
        if isinstance(upstream, str):
            parts = urlsplit(upstream if "//" in upstream else f"tcp://{upstream}")
            upstream = (parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80))
        self.upstream = upstream
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._cond = threading.Condition()  # guards every field below; notified on each change
        self._mode = "pass"  # pass | reset | black-hole | refuse | hold
        self._reset_after = 0
        self._reset_websocket_only = False
        self._resets_left: int | None = None
        self._hold_match = b""
        self._hold_response_bytes: int | None = None
        self._records: list[ProxiedConnection] = []
        self._resets = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self._wake: asyncio.Event | None = None  # set on every mode change and release (loop side)
        self._release_generation = 0

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> FaultProxy:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._call(self._boot())
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- switches (from the test's thread) ----------------------------------------------------------

    def pass_through(self) -> None:
        """A plain pipe; a refused port listens again, parked connections go on."""
        self._switch("pass")

    def reset_after(self, nbytes: int, *, websocket_only: bool = False, times: int | None = None) -> None:
        """Reset each connection (or only websocket ones) once it has sent the client `nbytes` bytes in all.

        A connection already past `nbytes` is reset at its next byte from upstream. `times`: stop after
        that many resets (then the proxy passes everything through).
        """
        self._switch("reset", _reset_after=nbytes, _reset_websocket_only=websocket_only, _resets_left=times)

    def black_hole(self) -> None:
        """Accept connections and forward nothing either way; open connections stall where they are."""
        self._switch("black-hole")

    def refuse(self) -> None:
        """Close the listening port: new connections are refused; open ones carry on."""
        self._switch("refuse")

    def hold(self, match: bytes, *, response_bytes: int | None = None) -> None:
        """Park connections whose request contains `match` until release().

        response_bytes=None parks the request itself before upstream sees it; a number forwards the
        request and parks the response after that many of its bytes reached the client.
        """
        self._switch("hold", _hold_match=match, _hold_response_bytes=response_bytes)

    def release(self) -> None:
        """Let every connection parked right now go on (the mode stays: later matches park again)."""
        self._call(self._release())

    # --- what the proxy saw -------------------------------------------------------------------------

    def connections(self) -> list[ProxiedConnection]:
        with self._cond:
            return [ProxiedConnection(**vars(r)) for r in self._records]

    @property
    def connection_count(self) -> int:
        with self._cond:
            return len(self._records)

    @property
    def websocket_count(self) -> int:
        with self._cond:
            return sum(1 for r in self._records if r.websocket)

    @property
    def resets(self) -> int:
        with self._cond:
            return self._resets

    @property
    def held(self) -> list[ProxiedConnection]:
        with self._cond:
            return [ProxiedConnection(**vars(r)) for r in self._records if r.held]

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        """Wait (on the proxy's condition variable) until predicate() is truthy; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"fault proxy: timed out after {timeout}s waiting for {what}")
                self._cond.wait(min(remaining, 0.5))  # predicates may also read outside state

    # --- loop side --------------------------------------------------------------------------------

    def _call(self, coroutine) -> Any:
        assert self._loop is not None, "start() the proxy first"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(15)

    def _switch(self, mode: str, **fields: Any) -> None:
        async def apply() -> None:
            with self._cond:
                for name, value in fields.items():
                    setattr(self, name, value)
                self._mode = mode
                self._cond.notify_all()
            if mode == "refuse":
                await self._unlisten()
            elif self._server is None:
                await self._listen()
            self._poke()

        self._call(apply())

    async def _release(self) -> None:
        with self._cond:
            self._release_generation += 1
            self._cond.notify_all()
        self._poke()

    def _poke(self) -> None:
        assert self._wake is not None
        self._wake.set()
        self._wake = asyncio.Event()

    async def _boot(self) -> None:
        self._wake = asyncio.Event()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._port, reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _shutdown(self) -> None:
        await self._unlisten()
        self._closing = True
        self._poke()  # parked and stalled connections give up...
        for writer in list(self._writers):
            writer.transport.abort()  # ...and every pump sees its peer gone
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        with self._cond:
            record = ProxiedConnection(number=len(self._records) + 1)
            self._records.append(record)
            mode = self._mode
            self._cond.notify_all()
        self._writers.add(client_writer)
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            if mode == "black-hole":
                record.outcome = "black-holed"
                self._changed()
                while await client_reader.read(CHUNK):  # swallow until the client gives up
                    pass
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                record.outcome = "upstream-refused"
                self._changed()
                return
            self._writers.add(upstream_writer)
            try:
                up = asyncio.ensure_future(self._pump_up(record, client_reader, upstream_writer))
                down = asyncio.ensure_future(self._pump_down(record, upstream_reader, client_writer, upstream_writer))
                done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.exception()  # a peer that hung up mid-write is an ordinary end here
                for task in pending:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            finally:
                self._writers.discard(upstream_writer)
                upstream_writer.transport.abort()
        finally:
            self._tasks.discard(task)
            self._writers.discard(client_writer)
            if record.outcome == "open":
                record.outcome = "closed"
            if record.outcome == "reset":
                client_writer.transport.abort()
            else:
                client_writer.close()
            self._changed()

    async def _stall_while_black_hole(self) -> None:
        while self._mode == "black-hole" and not self._closing:
            await self._wake.wait()

    async def _park(self, record: ProxiedConnection) -> None:
        """Wait for a release() issued after this point (or the mode to leave hold)."""
        with self._cond:
            generation = self._release_generation
            record.held = True
            self._cond.notify_all()
        try:
            while self._release_generation == generation and self._mode == "hold" and not self._closing:
                await self._wake.wait()
        finally:
            with self._cond:
                record.held = False
                self._cond.notify_all()

    async def _pump_up(self, record, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while data := await reader.read(CHUNK):
            if first:
                first = False
                line = data.split(b"\r\n", 1)[0]
                with self._cond:
                    record.request = line.decode("latin-1") if line.isascii() else ""
                    record.websocket = b"upgrade: websocket" in data.lower()
                    self._cond.notify_all()
            await self._stall_while_black_hole()
            if self._holds(data) and self._hold_response_bytes is None:
                await self._park(record)
            # Checked again after a park: the test may have switched to parking the response meanwhile.
            if self._holds(data) and self._hold_response_bytes is not None:
                record.hold_down_at = record.bytes_down + self._hold_response_bytes
            writer.write(data)
            await writer.drain()
            with self._cond:
                record.bytes_up += len(data)
                self._cond.notify_all()
        with contextlib.suppress(OSError):
            writer.write_eof()  # half-close: the upstream may still answer

    def _holds(self, data: bytes) -> bool:
        return self._mode == "hold" and bool(self._hold_match) and self._hold_match in data

    def _should_reset(self, record: ProxiedConnection, incoming: int) -> int | None:
        """How many of the `incoming` bytes to forward before resetting, or None for no reset."""
        if self._mode != "reset" or (self._reset_websocket_only and not record.websocket):
            return None
        if self._resets_left is not None and self._resets_left <= 0:
            return None
        if record.bytes_down + incoming < self._reset_after:
            return None
        return max(0, self._reset_after - record.bytes_down)

    async def _pump_down(self, record, reader, writer: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        while data := await reader.read(CHUNK):
            await self._stall_while_black_hole()
            keep = self._should_reset(record, len(data))
            if keep is not None:
                if keep:
                    writer.write(data[:keep])
                    await writer.drain()
                    with self._cond:
                        record.bytes_down += keep
                self._reset(record, writer, upstream)
                return
            if record.hold_down_at is not None and record.bytes_down + len(data) > record.hold_down_at:
                keep = record.hold_down_at - record.bytes_down
                record.hold_down_at = None
                writer.write(data[:keep])
                await writer.drain()
                with self._cond:
                    record.bytes_down += keep
                data = data[keep:]
                await self._park(record)
            writer.write(data)
            await writer.drain()
            with self._cond:
                record.bytes_down += len(data)
                self._cond.notify_all()

    def _reset(self, record: ProxiedConnection, writer: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        upstream.transport.abort()
        with self._cond:
            record.outcome = "reset"
            self._resets += 1
            if self._resets_left is not None:
                self._resets_left -= 1
            self._cond.notify_all()
