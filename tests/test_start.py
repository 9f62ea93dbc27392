"""The README's start command: one process that brings the whole system up and down."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from rq import Worker

from mcn_site.lib.embedded_redis import free_port
from tests.processes import ROOT, ManagedProcess

START_TIMEOUT = 120  # migrate + seed on a cold SQLite file, on a 2-core CI machine


class Started(ManagedProcess):
    """`scripts/dev.py run` in its own process group, its output collected line by line."""

    def __init__(self, tmp_path: Path, port: int, *options: str, **env: str):
        # A newcomer's machine: no DATABASE_URL (SQLite under var/), no REDIS_URL (embedded Redis).
        environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}}
        environ.update({"MCN_VAR_DIR": str(tmp_path / "var"), "DEBUG": "1", "PYTHONUNBUFFERED": "1", **env})
        super().__init__(["scripts/dev.py", "run", "--port", str(port), *options], env=environ)

    def redis_url(self) -> str:
        match = re.search(r"Redis: (redis://\S+)", self.output())
        assert match, self.output()
        return match.group(1)

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the whole process group."""
        self.send(signal.SIGINT)
        return self.process.wait(timeout=30)


def _wait_for_http(url: str, started: Started) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert started.process.poll() is None, f"start command exited early:\n{started.output()}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {START_TIMEOUT}s:\n{started.output()}")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _manage_beside(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    """A README command typed in a second terminal of the same checkout: no DEBUG, no REDIS_URL, no SECRET_KEY."""
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}}
    environ["MCN_VAR_DIR"] = str(tmp_path / "var")  # the checkout's var/ (here: the started one's)
    return subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


def test_start_command_serves_the_demo_with_a_worker_and_stops_everything_on_ctrl_c(tmp_path):
    port = free_port()
    started = Started(tmp_path, port)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_http(f"{base}/healthz", started)

        # The demo producer printed on start can sign in and browse the control plane.
        assert "producer" in started.output()
        password = re.search(r"password[:=]?\s+(\S+)", started.output(), re.IGNORECASE).group(1)
        with httpx.Client(base_url=base, timeout=10) as client:
            login = client.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
            response = client.post(
                "/admin/login/?next=/admin/",
                data={"username": "producer", "password": password, "csrfmiddlewaretoken": token},
                headers={"Referer": f"{base}/admin/login/"},
                follow_redirects=True,
            )
            assert response.status_code == 200
            assert "Artists" in response.text and "Posts" in response.text
            assert (
                "Luna" in client.get("/admin/artists/artist/").text
                or "Kai" in client.get("/admin/artists/artist/").text
            )

        # A GPU worker (vip lane first) and a CPU worker listen on the embedded Redis.
        connection = redis.Redis.from_url(started.redis_url())
        deadline = time.monotonic() + 30
        while len(Worker.all(connection=connection)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        queues = sorted(tuple(worker.queue_names()) for worker in Worker.all(connection=connection))
        assert queues == [("cpu", "default"), ("gpu-vip", "gpu")]
        redis_port = connection.connection_pool.connection_kwargs["port"]

        # The scheduler ticks beside them.
        assert "Scheduler running" in started.output()

        # A command in a second terminal finds the development settings and the embedded Redis
        # (random port) through var/dev.env: it sees the two workers there.
        beside = _manage_beside(tmp_path, "rqstats", "--json")
        assert beside.returncode == 0, beside.stderr
        workers = {queue["name"]: queue["workers"] for queue in json.loads(beside.stdout)["queues"]}
        assert workers["cpu"] >= 1 and workers["gpu"] >= 1, workers

        # Ctrl-C: the processes stop before their Redis, so none of them prints a traceback.
        assert started.interrupt() == 0, started.output()
        assert "Traceback" not in started.output(), started.output()
        assert "Scheduler stopped." in started.output(), "the scheduler did not finish cleanly on Ctrl-C"
        assert not _port_open(port), "the web server outlived Ctrl-C"
        assert not _port_open(redis_port), "the embedded Redis outlived Ctrl-C"

        # Stopped: the file is gone, and a command that needs a setting says so in one line.
        assert not (tmp_path / "var" / "dev.env").exists()
        after = _manage_beside(tmp_path, "rqstats", "--json")
        assert after.returncode != 0
        assert after.stderr.strip().splitlines() == [
            "manage.py: SECRET_KEY is not set. Set it in the environment (DEBUG=1 allows a dev key; "
            "commands run beside `make run` get DEBUG=1 from it)."
        ]
    finally:
        started.kill()


def test_on_a_machine_with_no_cjk_font_at_all_the_start_command_warns_once_not_once_per_process(tmp_path):
    # No font anywhere: the machine's are skipped, and the font wheel is shadowed by an empty package.
    shadow = tmp_path / "no-font-wheel"
    (shadow / "manimgx_fonts_cjk").mkdir(parents=True)
    (shadow / "manimgx_fonts_cjk" / "__init__.py").write_text("")
    port = free_port()
    started = Started(tmp_path, port, "--no-seed", MCN_SYSTEM_FONTS="0", PYTHONPATH=str(shadow))
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/healthz", started)
        deadline = time.monotonic() + 30
        while "Scheduler running" not in started.output() and time.monotonic() < deadline:
            time.sleep(0.2)  # the last process to start says so
        assert started.interrupt() == 0, started.output()
        assert started.output().count("(factory.W001) No CJK font found") == 1, started.output()
    finally:
        started.kill()
