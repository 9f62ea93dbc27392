"""The benchmarks keep running: each test runs one bench/ script at its --smoke size in a subprocess.

No time is ever asserted (speed is measured by bench/, not tests): the tests check that every row of
the report is there. Each script makes a throwaway database of its own beside whatever DATABASE_URL
names; the Redis-using ones get a database of the test run's Redis server that only they use, since
they flush it.
"""

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import redis as redis_lib
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
BENCH_REDIS_DB = 12


def bench_redis_url() -> str:
    """The test run's Redis server, database BENCH_REDIS_DB: the benches flush what they use."""
    return urlsplit(settings.REDIS_URL)._replace(path=f"/{BENCH_REDIS_DB}").geturl()


def run_bench(script: str, *args: str, redis: bool = False, timeout: int = 300) -> str:
    """Run `bench/<script> --smoke [args]`; assert it exits 0 and return what it printed."""
    argv = [sys.executable, f"bench/{script}", "--smoke", *args]
    if redis:
        url = bench_redis_url()
        redis_lib.Redis.from_url(url).flushdb()  # whatever an earlier bench left (approval_burst wants empty queues)
        argv += ["--redis", url]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def table_rows(output: str) -> list[str]:
    """The first cell of every Markdown table row the script printed."""
    return [line.split(" | ")[0] for line in output.splitlines() if line.startswith("| ")]
