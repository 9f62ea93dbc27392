"""var/dev.env: how a `manage.py` command finds the `make run` running beside it.

`scripts/dev.py run` (`make run`) starts with DEBUG=1 and, without REDIS_URL, an embedded Redis on a
random port. While it runs it writes both to `$MCN_VAR_DIR/dev.env` (with its pid), and removes the
file when it stops. Settings read the file at start: a variable that is not set in the environment
(or set to nothing) takes the file's value, so `manage.py submit_job ...` in a second terminal uses
the same Redis and the development settings without being told. The environment always wins; a
file left by a killed `make run` (its pid is gone) is ignored. Production never runs `make run`.
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mcn_site.lib.env import env_raw

FILE_NAME = "dev.env"
_PID_KEY = "MCN_DEV_PID"  # who wrote the file: its values hold only while that process lives


def dev_env_file(var_dir: Path) -> Path:
    return Path(var_dir) / FILE_NAME


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def read(path: Path) -> dict[str, str]:
    """The file's variables, or {} when there is none or the process that wrote it has gone."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    pid = values.pop(_PID_KEY, "")
    if not pid.isdigit() or not _alive(int(pid)):
        return {}
    return values


def apply(path: Path) -> dict[str, str]:
    """Fill the variables the environment leaves unset from the file; returns those it filled."""
    filled = {key: value for key, value in read(path).items() if env_raw(key) is None}
    os.environ.update(filled)
    return filled


@contextlib.contextmanager
def published(path: Path, values: dict[str, str]) -> Iterator[Path]:
    """Write `values` to the file for as long as the block runs (this process's pid marks it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Written by scripts/dev.py run (pid {os.getpid()}) while it runs; removed when it stops.",
        "# manage.py commands of this checkout read it for what their environment does not set.",
        f"{_PID_KEY}={os.getpid()}",
        *(f"{key}={value}" for key, value in values.items()),
    ]
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    partial.replace(path)  # whole or not at all: a command starting now never reads half a file
    try:
        yield path
    finally:
        # Only our own file: a second `make run` of this checkout may have replaced it since.
        with contextlib.suppress(OSError):
            if f"{_PID_KEY}={os.getpid()}\n" in path.read_text(encoding="utf-8"):
                path.unlink()
