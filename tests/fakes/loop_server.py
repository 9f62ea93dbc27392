"""An aiohttp server on its own event-loop thread: the lifecycle the fake LLM and CosyVoice share."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class LoopThreadServer:
    """Subclasses set `name` and implement `_listen()` / `_unlisten()` (coroutines run on the loop)."""

    name = "fake-server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self):
        """Start the loop thread and listen. Returns self."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.name, daemon=True)
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """Close every connection (ending stalled or delayed replies) and stop the loop thread."""
        if self._thread is None or self._loop is None:
            return
        try:
            self._call(self._unlisten())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self._thread = None
            self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coroutine) -> None:
        """Run a coroutine on the server's loop from the test's thread and wait for it."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        raise NotImplementedError  # build the aiohttp app, then `await self._serve(app)`

    async def _serve(self, app: web.Application) -> None:
        """Serve `app` on 127.0.0.1 at self._port (0: any free port, read back into self._port)."""
        self._closing = asyncio.Event()
        self._runner = await start_runner(app, self._port)
        self._port = self._runner.addresses[0][1]

    async def _unlisten(self) -> None:
        """Wake anything waiting on `_closing` (delayed or stalled replies), then close every connection."""
        if getattr(self, "_closing", None) is not None:
            self._closing.set()
        if getattr(self, "_runner", None) is not None:
            await self._runner.cleanup()
            self._runner = None


async def start_runner(app: web.Application, port: int, *, shutdown_timeout: float = 0.5) -> web.AppRunner:
    """Listen with `app` on 127.0.0.1:`port` (0: a free port); a failed bind leaves nothing running."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
