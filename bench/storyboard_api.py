"""B6 storyboard API: GET /api/v1/posts/<id>/ (a post with its shots) against a trivial DRF view.

Both are served by one uvicorn worker process (production runs one per core: Procfile `web`; DEBUG=0,
the same middleware, DATABASE_CONN_MAX_AGE=60 as docs/deploy.md), started on a throwaway database; the trivial view is
added by the bench's own URLconf (bench/b6_urls.py, through bench/b6_settings.py), never by the site's.
Load: wrk, 10 keep-alive connections (an asyncio httpx client with 10 connections where wrk is missing).
Interleaved, repeated, a rotating order:

- baseline: `/bench/trivial`, an APIView with no authentication that answers a constant;
- ours: the post with 30 shots, with a real API token (authentication, role permission, the selector);

then the cost curve, once each: the post with 10, 100 and 1000 shots. The SQL statements a request
issues are counted in-process (Django's test client) at each size: they must not grow with the shots.

    .venv/bin/python bench/storyboard_api.py [--repeats 5] [--seconds 5]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mcn_bench .venv/bin/python bench/storyboard_api.py
    .venv/bin/python bench/storyboard_api.py --smoke      # 1 repeat of 1 s (CI)

--write-docs: also put the table in docs/benchmarks.md, between the B6 markers.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from harness import (
    ROOT,
    Process,
    Series,
    database_url,
    free_port,
    interleave,
    machine,
    ratio,
    setup_django,
    table,
    throwaway_database,
    wait_until_up,
    write_docs,
)

setup_django()

import django  # noqa: E402 - set up by the harness above
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from artists.models import Artist, Niche, Voice  # noqa: E402
from artists.services import api_token_create  # noqa: E402
from mcn_site.lib import roles  # noqa: E402
from mcn_site.lib.web_server import web_server_argv  # noqa: E402
from posts.models import Post, Shot, ShotKind  # noqa: E402

CONNECTIONS = 10
SIZES = [10, 100, 1000]  # the cost curve
SHOTS = 30  # the measured post


def load() -> tuple[str, dict[int, int]]:
    """A producer with a token, one artist, a post per size; returns the raw key and {shots: post id}."""
    user = User.objects.create_user(username="bench-producer", is_staff=True)  # no password: a token only
    user.groups.add(Group.objects.get(name=roles.PRODUCER))
    voice = Voice.objects.create(name="Bench voice", speaker_id="zh_female_1")
    artist = Artist.objects.create(
        stage_name="Bench", slug="bench", niche=Niche.FINANCE, voice=voice, face_anchor="artists/f.png"
    )
    artist.members.add(user)
    _, key = api_token_create(user=user, name="bench")
    posts = {}
    for count in sorted({SHOTS, *SIZES}):
        post = Post.objects.create(title=f"Bench post, {count} shots", artist=artist, brief="Markets.", updated_by=user)
        Shot.objects.bulk_create(
            Shot(
                post=post,
                position=n,
                kind=ShotKind.A_ROLL,
                duration_seconds=4,
                script=f"今天的市场第{n}句：指数小幅上涨，成交量放大。",
                visual_prompt=f"Shot {n}: the artist at a desk, city at night behind, warm light.",
                manual_asset="posts/manual/shot.png" if n % 3 == 0 else "",
            )
            for n in range(1, count + 1)
        )
        posts[count] = post.pk
    return key, posts


def start_server(port: int, log: Path) -> Process:
    """The web server as production runs it (one worker), on the throwaway database, with the bench's trivial
    view beside the API."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "b6_settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)]),
        "DEBUG": "0",
        "DATABASE_URL": database_url(),
        "DATABASE_CONN_MAX_AGE": "60",
    }
    server = Process(
        web_server_argv(host="127.0.0.1", port=port, workers=1),
        env=env,
        log=log,
    )
    wait_until_up(f"http://127.0.0.1:{port}/bench/trivial", process=server)
    return server


# --------------------------------------------------------------------------- load generators


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: float, headers: dict) -> tuple[float, float, float]:
    """req/s, p50 ms, p99 ms from one wrk run (2 threads, CONNECTIONS connections)."""
    argv = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout  # noqa: S603
    if "Non-2xx or 3xx responses" in out:
        raise SystemExit(f"{url} answered errors under load:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))
    return rps, p50, p99


def httpx_load(url: str, seconds: float, headers: dict) -> tuple[float, float, float]:
    """The same as wrk, from an asyncio httpx client (CONNECTIONS keep-alive connections)."""

    async def go() -> tuple[int, list[float]]:
        latencies: list[float] = []
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as client:
            deadline = time.perf_counter() + seconds

            async def worker():
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    response = await client.get(url)
                    if response.status_code != 200:
                        raise SystemExit(f"{url} answered {response.status_code}")
                    latencies.append((time.perf_counter() - started) * 1000)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
            return time.perf_counter() - started, latencies

    elapsed, latencies = asyncio.run(go())
    series = Series("latency", latencies)
    return len(latencies) / elapsed, series.percentile(0.5), series.percentile(0.99)


# --------------------------------------------------------------------------- the measurement


def queries_per_request(post_id: int, key: str) -> int:
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Token {key}")
    client.get(f"/api/v1/posts/{post_id}/")  # the token's last_used_at write, once a minute, is not the norm
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/api/v1/posts/{post_id}/")
    assert response.status_code == 200, response.content[:500]
    return len(captured)


def run(args) -> tuple[list[list], str]:
    key, posts = load()
    counts = {size: queries_per_request(posts[size], key) for size in sorted({SHOTS, *SIZES})}
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Token {key}"}
    generate = wrk if shutil.which("wrk") and not args.httpx else httpx_load
    with tempfile.TemporaryDirectory(prefix="mcn-b6-") as folder:
        server = start_server(port, Path(folder) / "web.log")
        try:
            for path in ["/bench/trivial", f"/api/v1/posts/{posts[SHOTS]}/"]:  # warm-up: imports, connections
                generate(base_url + path, 1, auth)
            p50s: dict[str, list[float]] = {}
            p99s: dict[str, list[float]] = {}

            def measure(name: str, path: str):
                def sample() -> float:
                    rps, p50, p99 = generate(base_url + path, args.seconds, auth)
                    p50s.setdefault(name, []).append(p50)
                    p99s.setdefault(name, []).append(p99)
                    return rps

                return sample

            base_name, ours_name = "trivial DRF view (baseline)", f"GET post with {SHOTS} shots"
            series = interleave(
                {
                    base_name: measure(base_name, "/bench/trivial"),
                    ours_name: measure(ours_name, f"/api/v1/posts/{posts[SHOTS]}/"),
                },
                repeats=args.repeats,
            )
            curve = {}
            for size in SIZES:
                name = f"GET post with {size} shots (cost curve, 1 run)"
                curve[name] = Series(name, [measure(name, f"/api/v1/posts/{posts[size]}/")()])
        finally:
            server.stop(grace=5)  # nothing to keep: no need to wait for open keep-alive connections

    base = series[base_name]
    base_p99 = Series("p99", p99s[base_name]).median
    rows = []
    for name, s, shots in [(base_name, base, None), (ours_name, series[ours_name], SHOTS)] + [
        (name, s, size) for (name, s), size in zip(curve.items(), SIZES, strict=True)
    ]:
        p50, p99 = Series("p50", p50s[name]), Series("p99", p99s[name])
        rows.append(
            [
                name,
                len(s.samples),
                f"{s.min:.0f}",
                f"{s.median:.0f}",
                f"{s.max:.0f}",
                ratio(s.median, base.median),
                ratio(s.min, base.min),
                f"{p50.median:.1f}",
                f"{p99.median:.1f}",
                ratio(p99.median, base_p99),
                counts[shots] if shots else "-",
            ]
        )
    tool = f"wrk c={CONNECTIONS}" if generate is wrk else f"asyncio httpx client, {CONNECTIONS} connections"
    return rows, tool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one load run")
    parser.add_argument("--httpx", action="store_true", help="load from the asyncio httpx client even if wrk is here")
    parser.add_argument("--smoke", action="store_true", help="1 repeat of 1 s: only checks that it runs")
    parser.add_argument("--write-docs", action="store_true", help="put the table in docs/benchmarks.md")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.seconds = 1, 1.0
    with throwaway_database() as engine:  # never the database DATABASE_URL names
        rows, tool = run(args)
    headers = [
        *("measurement", "runs", "min req/s", "median req/s", "max req/s", "median / baseline"),
        *("min / baseline", "p50 ms", "p99 ms", "p99 / baseline", "queries per request"),
    ]
    versions = machine(**{"Django": django.get_version(), "uvicorn": _uvicorn_version()})
    text = f"{tool}, {args.seconds:g} s a run, {args.repeats} interleaved repeats; {engine}, {versions}\n\n" + table(
        headers, rows
    )
    print(text)
    if args.write_docs:
        write_docs("B6", text)
    return 0


def _uvicorn_version() -> str:
    import uvicorn

    return uvicorn.__version__


if __name__ == "__main__":
    sys.exit(main())
