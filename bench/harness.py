"""What every benchmark shares: Django set up for measuring, a throwaway database, interleaved repeats,
min/median/max, the machine line, and the benchmark's block in docs/benchmarks.md.

A benchmark measures our path and its raw baseline in the same run, alternating which goes first, and
reports ratios: machines here are shared and noisy, absolute times are not comparable between runs.
"""

import contextlib
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def setup_django() -> None:
    """Django for a benchmark: the project's settings, DEBUG off (it would keep, and time, every query)."""
    sys.path.insert(0, str(ROOT))
    from mcn_site.lib.env import env_raw

    for name, value in {"DJANGO_SETTINGS_MODULE": "mcn_site.settings", "SECRET_KEY": "bench-only"}.items():
        if env_raw(name) is None:  # set but empty counts as unset, as in settings
            os.environ[name] = value
    os.environ["DEBUG"] = "0"
    import django

    django.setup()


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A migrated database of the bench's own, dropped at the end; yields its engine and version.

    Never the one DATABASE_URL names (nor a test run's beside it): a temporary SQLite file, or a
    `mcn_bench_<pid>` database on the PostgreSQL server that DATABASE_URL names.
    """
    from django.db import connection

    with tempfile.TemporaryDirectory(prefix="mcn-bench-") as folder:  # SQLite's file and its -wal, -shm
        test = connection.settings_dict.setdefault("TEST", {})
        sqlite = connection.vendor == "sqlite"
        test["NAME"] = str(Path(folder) / "bench.sqlite3") if sqlite else f"mcn_bench_{os.getpid()}"
        old_name = connection.settings_dict["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        try:
            with connection.cursor() as cursor:
                cursor.execute("select sqlite_version()" if sqlite else "show server_version")
                version = cursor.fetchone()[0].split()[0]
            yield f"SQLite {version} (WAL)" if sqlite else f"PostgreSQL {version}"
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


@dataclass
class Series:
    """One measured thing: its samples (seconds, or any unit the benchmark names) and an optional note."""

    name: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def percentile(self, share: float) -> float:
        """Nearest-rank percentile (share in 0..1) of the samples."""
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def interleave(measurements: dict[str, Callable[[], float]], *, repeats: int) -> dict[str, Series]:
    """Run each measurement `repeats` times, rotating the order every round (none always goes first).

    Each callable returns one sample; what it does outside the timed part (resetting state) is its own.
    """
    names = list(measurements)
    series = {name: Series(name) for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            series[name].samples.append(measurements[name]())
    return series


def machine(**versions: str) -> str:
    """The line naming where a table was measured: CPU count, Python, and the versions given."""
    parts = [f"{platform.machine()}, {os.cpu_count()} vCPU", f"Python {platform.python_version()}"]
    parts += [f"{name} {version}" for name, version in versions.items()]
    return ", ".join(parts)


def ratio(ours: float, baseline: float) -> str:
    return f"{ours / baseline:.2f}" if baseline else "n/a"


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; floats get three significant decimals' worth of precision."""

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """How this run was started, as one copy-pasteable line (--write-docs left out, DATABASE_URL kept)."""
    args = [arg for arg in sys.argv[1:] if arg != "--write-docs"]
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    env = [f"DATABASE_URL={os.environ['DATABASE_URL']}"] if os.environ.get("DATABASE_URL") else []
    return " ".join([*env, shlex.join([".venv/bin/python", str(script), *args])])


def write_docs(marker: str, body: str) -> None:
    """Put `body` (with the command that made it) between `<!-- marker:begin -->` and `<!-- marker:end -->`.

    The block must already be in docs/benchmarks.md: where a benchmark's figures go, and the prose
    around them, are written by hand.
    """
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    text = DOC.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"{DOC} has no {begin} ... {end} block to fill")
    block = "\n".join([begin, "```sh", command_line(), "```", "", body.strip(), end])
    DOC.write_text(re.sub(f"{re.escape(begin)}.*?{re.escape(end)}", lambda _: block, text, flags=re.DOTALL))


# ----------------------------------------------------------------------------- the processes a bench starts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url() -> str:
    """The database this process uses now (the throwaway one) as a DATABASE_URL, for subprocesses."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Process:
    """A subprocess in its own process group (signals reach its children), its output in a log file."""

    def __init__(self, argv: list[str], *, env: dict, log: Path):
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def check(self) -> None:
        """Stop the bench, showing the log, if the process has exited."""
        if self.process.poll() is not None:
            raise SystemExit(f"{self.process.args[:4]} exited with {self.process.returncode}:\n{self.output()}")

    def wait(self, timeout: float) -> None:
        """Wait for a process that should end by itself (a --burst worker); it must exit 0."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise SystemExit(f"{self.process.args[:4]} did not finish in {timeout:.0f} s:\n{self.output()}") from None
        if code != 0:
            raise SystemExit(f"{self.process.args[:4]} exited with {code}:\n{self.output()}")

    def terminate(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self, grace: float = 20) -> None:
        """Warm shutdown (SIGTERM: a worker finishes its job), then SIGKILL after `grace` seconds."""
        self.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def wait_until_up(url: str, *, process: Process, timeout: float = 60) -> None:
    """Poll `url` until it answers 200; stop the bench with the process's log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        process.check()
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - our own local server
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer in {timeout:.0f} s:\n{process.output()}")
        time.sleep(0.1)
