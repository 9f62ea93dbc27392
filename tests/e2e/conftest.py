"""The real ASGI server (uvicorn, as production starts it) for browser tests that need websockets.

pytest-django's live_server speaks WSGI only, so the storyboard tests start
`python -m uvicorn mcn_site.asgi:application ...` against the test's own database,
Redis and media folder, and can stop, kill and restart it on the same port.
Tests using it must be transactional: the server reads what the test committed.

Screenshots: set MCN_SCREENSHOT_DIR (e.g. docs/screenshots) to keep the PNGs the
tests take of each main state of the page; otherwise they go to the test's tmp_path.
"""

import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mcn_site.lib.web_server import web_server_argv
from tests.factory.conftest import (  # noqa: F401 - fixtures shared with the factory tests
    fake_comfyui,
    rq_clean,
    start_worker,
    subprocess_env,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD = "demo-pass-for-e2e"
STARTUP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AsgiServer:
    """One web server on a fixed port; start() again after stop()/kill() reuses the port.

    `workers` > 1 runs uvicorn's supervisor with that many worker processes (its children).
    """

    def __init__(self, *, port: int, env: dict, log_path: Path, workers: int = 1):
        self.port = port
        self.workers = workers
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> "AsgiServer":
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes to it until it ends
        self.process = subprocess.Popen(
            web_server_argv(host="127.0.0.1", port=self.port, workers=self.workers),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes it down like a crash would
        )
        log.close()
        wait_for(self._healthy, timeout=STARTUP_SECONDS, what=f"the web server to answer /healthz\n{self.output()}")
        return self

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the web server exited with {self.process.returncode}:\n{self.output()}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """Die at once, as a crashed or OOM-killed server would: sockets drop without a close frame."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_hashers(settings):
    """Users made by the test must log in on the server, which knows only the standard hashers."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]


@pytest.fixture
def asgi_server(settings, server_hashers, transactional_db, tmp_path):
    """A running web server serving this test's database, Redis and media folder (stopped after the test)."""
    env = subprocess_env(ALLOWED_HOSTS="127.0.0.1,localhost")
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    server = AsgiServer(port=free_port(), env=env, log_path=tmp_path / "web.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def screenshot(tmp_path):
    """screenshot(page, "name") -> a PNG of the viewport in MCN_SCREENSHOT_DIR (or tmp_path)."""
    folder = Path(os.environ.get("MCN_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, **options) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), animations="disabled", caret="initial", **options)
        return path

    return take


def log_in(page, base: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the admin's login form, then land on the post list."""
    page.goto(f"{base}/admin/login/?next=/posts/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/posts/")
