#!/usr/bin/env python3
"""Start the whole MCN OS system, or run the test suite, with one command.

    python scripts/dev.py run  [--host 127.0.0.1] [--port 8000] [--no-seed]
    python scripts/dev.py test [pytest arguments...]

`run` migrates, seeds the demo, then runs the web server (uvicorn: HTTP and
websockets), a GPU worker (bound to COMFYUI_URL), a CPU worker, the job
reconciler and the scheduler until Ctrl-C, which stops them all.
Without REDIS_URL both commands start a private redis-server and stop it at the end.
While `run` runs, var/dev.env tells manage.py commands of this checkout its DEBUG and REDIS_URL
(mcn_site/lib/devenv.py), so they work beside it as the README shows.
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

from mcn_site.lib import devenv  # noqa: E402
from mcn_site.lib.embedded_redis import embedded_redis  # noqa: E402
from mcn_site.lib.env import env_int, env_raw, env_str  # noqa: E402
from mcn_site.lib.web_server import default_workers, web_server_argv  # noqa: E402

PYTHON = sys.executable
SKIP_CHECKS = ("--skip-checks",)  # for the processes started after migrate has run the system checks


def var_dir() -> Path:
    return Path(env_str("MCN_VAR_DIR", str(ROOT / "var")))


@contextlib.contextmanager
def redis_url():
    """REDIS_URL from the environment, or an embedded server for the duration."""
    if env_raw("REDIS_URL"):
        yield env_raw("REDIS_URL"), False
        return
    with embedded_redis(var_dir() / "redis") as url:
        os.environ["REDIS_URL"] = url
        yield url, True


def manage(*args: str) -> None:
    code = subprocess.call([PYTHON, "manage.py", *args], cwd=ROOT)  # noqa: S603
    if code:  # the command said why (a setting, a check) on stderr: stop here, no traceback of ours on top
        raise SystemExit(code)


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
    if env_raw("DEBUG") is None:
        os.environ["DEBUG"] = "1"  # a laptop: dev secret key, plain-http cookies
    # Ends in reverse order: the processes stop first, then var/dev.env goes, then the embedded Redis.
    with (
        redis_url() as (url, embedded),
        devenv.published(devenv.dev_env_file(var_dir()), {"DEBUG": os.environ["DEBUG"], "REDIS_URL": url}),
    ):
        print(f"Redis: {url}{' (embedded, stops with this command)' if embedded else ''}", flush=True)
        manage("migrate", "--noinput", "-v", "0")
        if not args.no_seed:
            manage("seed_demo", *SKIP_CHECKS, "--url", f"http://{args.host}:{args.port}/admin/")
        processes = {
            "web": subprocess.Popen(  # noqa: S603
                web_server_argv(host=args.host, port=args.port, workers=default_workers()), cwd=ROOT
            ),
            # One GPU worker per ComfyUI server; COMFYUI_URL says which (default http://127.0.0.1:8188).
            # The system checks ran once, in migrate: their warnings (a missing font, ...) are printed once,
            # not once per process, hence --skip-checks below (same environment, same answers).
            "gpu-worker": subprocess.Popen([PYTHON, "manage.py", "run_gpu_worker", *SKIP_CHECKS], cwd=ROOT),  # noqa: S603
            "cpu-worker": subprocess.Popen(  # noqa: S603
                [PYTHON, "manage.py", "rqworker", "cpu", "default", "--with-scheduler", *SKIP_CHECKS], cwd=ROOT
            ),
            "reconciler": subprocess.Popen([PYTHON, "manage.py", "reconcile_jobs", *SKIP_CHECKS], cwd=ROOT),  # noqa: S603
            "scheduler": subprocess.Popen([PYTHON, "manage.py", "run_scheduler", *SKIP_CHECKS], cwd=ROOT),  # noqa: S603
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
    for name, value in {"SECRET_KEY": "tests-only-not-a-secret", "DEBUG": "0"}.items():
        if env_raw(name) is None:
            os.environ[name] = value
    with redis_url() as (url, embedded):
        print(f"Redis: {url}{' (embedded)' if embedded else ''}", flush=True)
        return subprocess.call([PYTHON, "-m", "pytest", *pytest_args], cwd=ROOT)  # noqa: S603


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="migrate, seed the demo, start web + worker")
    run_parser.add_argument("--host", default=env_str("HOST", "127.0.0.1"))
    run_parser.add_argument("--port", type=int, default=env_int("PORT", 8000, minimum=1))
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
