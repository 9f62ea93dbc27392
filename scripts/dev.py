#!/usr/bin/env python3
"""Start the whole MCN OS system, or run the test suite, with one command.

    python scripts/dev.py run  [--host 127.0.0.1] [--port 8000] [--no-seed]
    python scripts/dev.py test [pytest arguments...]

`run` migrates, seeds the demo, then runs the web server (uvicorn: HTTP and
websockets), a GPU worker (bound to COMFYUI_URL), a CPU worker, the job
reconciler and the scheduler until Ctrl-C, which stops them all.
Without REDIS_URL both commands start a private redis-server and stop it at the end.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcn_site.lib.embedded_redis import embedded_redis  # noqa: E402
from mcn_site.lib.web_server import default_workers, web_server_argv  # noqa: E402

PYTHON = sys.executable


def var_dir() -> Path:
    return Path(os.environ.get("MCN_VAR_DIR", ROOT / "var"))


@contextlib.contextmanager
def redis_url():
    """REDIS_URL from the environment, or an embedded server for the duration."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"], False
        return
    with embedded_redis(var_dir() / "redis") as url:
        os.environ["REDIS_URL"] = url
        yield url, True


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True)  # noqa: S603


def stop_all(processes: dict[str, subprocess.Popen], grace: float = 10.0) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if process.poll() is None:
            process.kill()
            process.wait()


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("DEBUG", "1")  # a laptop: dev secret key, plain-http cookies
    with redis_url() as (url, embedded):
        print(f"Redis: {url}{' (embedded, stops with this command)' if embedded else ''}", flush=True)
        manage("migrate", "--noinput", "-v", "0")
        if not args.no_seed:
            manage("seed_demo", "--url", f"http://{args.host}:{args.port}/admin/")
        processes = {
            "web": subprocess.Popen(  # noqa: S603
                web_server_argv(host=args.host, port=args.port, workers=default_workers()), cwd=ROOT
            ),
            # One GPU worker per ComfyUI server; COMFYUI_URL says which (default http://127.0.0.1:8188).
            "gpu-worker": subprocess.Popen([PYTHON, "manage.py", "run_gpu_worker"], cwd=ROOT),  # noqa: S603
            "cpu-worker": subprocess.Popen(  # noqa: S603
                [PYTHON, "manage.py", "rqworker", "cpu", "default", "--with-scheduler"], cwd=ROOT
            ),
            "reconciler": subprocess.Popen([PYTHON, "manage.py", "reconcile_jobs"], cwd=ROOT),  # noqa: S603
            "scheduler": subprocess.Popen([PYTHON, "manage.py", "run_scheduler"], cwd=ROOT),  # noqa: S603
        }
        print(f"MCN OS is starting on http://{args.host}:{args.port}/ (Ctrl-C stops everything)", flush=True)
        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        try:
            while not stopping:
                exited = {name: p.returncode for name, p in processes.items() if p.poll() is not None}
                if exited:
                    print(f"Stopping: {', '.join(f'{n} exited with {c}' for n, c in exited.items())}", flush=True)
                    return 1
                time.sleep(0.2)
            print("Stopping MCN OS ...", flush=True)
            return 0
        finally:
            stop_all(processes)


def test(pytest_args: list[str]) -> int:
    # Tests never need a real secret; a deployment's SECRET_KEY is not read here.
    os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret")
    os.environ.setdefault("DEBUG", "0")
    with redis_url() as (url, embedded):
        print(f"Redis: {url}{' (embedded)' if embedded else ''}", flush=True)
        return subprocess.call([PYTHON, "-m", "pytest", *pytest_args], cwd=ROOT)  # noqa: S603


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="migrate, seed the demo, start web + worker")
    run_parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    run_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run_parser.add_argument("--no-seed", action="store_true", help="skip the demo data")
    commands.add_parser("test", help="run the whole test suite (extra arguments go to pytest)", add_help=False)
    args, rest = parser.parse_known_args()
    if args.command == "test":
        return test(rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
