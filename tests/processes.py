"""A subprocess a test owns: its own process group, its output collected line by line, stopped like systemd.

The GPU and CPU workers, the reconciler loop and `scripts/dev.py run` are all started this way, so a test
can read what they printed, send them real signals (to the whole group: rq's work horse included) and
always leave nothing running.
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ManagedProcess:
    def __init__(self, argv: list[str], *, env: dict):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so a test can kill it like an OOM killer would
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def output(self) -> str:
        return "\n".join(self.lines)

    def send(self, sig: int) -> None:
        """Send `sig` to the whole process group (what a terminal's Ctrl-C or systemd's stop does)."""
        os.killpg(self.process.pid, sig)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.send(sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Warm shutdown as an operator would (SIGTERM), then make sure it is gone."""
        if self.process.poll() is None:
            self.send(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
