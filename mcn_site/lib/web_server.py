"""The web server's command line, for `make run`, the benchmarks and the tests that start one.

uvicorn serves mcn_site.asgi (HTTP through Django, websockets through Channels). It reads a
request body only as fast as Django takes it (Django spools it to a temporary file), so an
upload costs disk, not memory; daphne held whole bodies in memory. Each worker process runs
Django's sync views on one thread, so the web tier uses a core per worker: safe because every
shared thing lives outside the process (sessions in the database; the Channels layer, throttles
and idempotency keys in Redis). The Procfile and docs/deploy.md spell the same line.
"""

import os
import sys


def default_workers() -> int:
    """WEB_CONCURRENCY (the convention uvicorn and gunicorn read); else one on SQLite, which takes one
    writer at a time: web processes wait for its lock in sleeps, and under the load bench the writes'
    p95 doubled with two (docs/benchmarks.md); else one per core, at most 4."""
    if os.environ.get("WEB_CONCURRENCY"):
        return int(os.environ["WEB_CONCURRENCY"])
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql")):
        return 1
    return min(os.cpu_count() or 1, 4)


def web_server_argv(*, host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "mcn_site.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--lifespan",
        "off",  # Django has no lifespan events; "auto" would log that at every start
    ]
