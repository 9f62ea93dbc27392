"""Deployment values come from the environment and bad ones stop the start with a clear message."""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from mcn_site import checks
from mcn_site.lib import devenv, env

ROOT = Path(__file__).resolve().parent.parent


def test_env_bool_reads_common_spellings_and_refuses_others(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    assert env.env_bool("FLAG") is True
    monkeypatch.setenv("FLAG", "0")
    assert env.env_bool("FLAG", True) is False
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG='maybe' is not a boolean"):
        env.env_bool("FLAG")


def test_env_int_refuses_words_and_values_below_the_minimum(monkeypatch):
    monkeypatch.setenv("N", "ten")
    with pytest.raises(ImproperlyConfigured, match="N='ten' is not a whole number"):
        env.env_int("N", 1)
    monkeypatch.setenv("N", "-1")
    with pytest.raises(ImproperlyConfigured, match="must be at least 0"):
        env.env_int("N", 1, minimum=0)


def test_env_timezone_refuses_a_zone_that_does_not_exist(monkeypatch):
    monkeypatch.setenv("TZ_NAME", "Mars/Olympus")
    with pytest.raises(ImproperlyConfigured, match="not an IANA time zone"):
        env.env_timezone("TZ_NAME", "UTC")


def test_a_variable_set_to_nothing_reads_as_unset_in_every_reader(monkeypatch):
    for name in ("S", "B", "I", "L", "Z"):
        monkeypatch.setenv(name, "  ")
    assert env.env_str("S", "fallback") == "fallback"
    assert env.env_bool("B", True) is True
    assert env.env_int("I", 7) == 7
    assert env.env_list("L", ["a", "b"]) == ["a", "b"]
    assert env.env_timezone("Z", "Asia/Shanghai") == "Asia/Shanghai"


# Prints every setting (repr), the per-process test database name made comparable.
_DUMP_SETTINGS = """
import json, os
import mcn_site.settings as s
print(json.dumps({k: repr(getattr(s, k)).replace(str(os.getpid()), "<pid>") for k in dir(s) if k.isupper()}))
"""


def _settings_after(shell_prelude: str, environ: dict[str, str]) -> dict[str, str]:
    result = subprocess.run(
        ["bash", "-c", f'{shell_prelude} exec "{sys.executable}" -c "$0"', _DUMP_SETTINGS],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sourcing_env_example_as_its_header_says_keeps_every_default():
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    # A newcomer's shell: none of the variables set, except the one .env.example asks to change.
    bare = {k: v for k, v in os.environ.items() if k not in listed}
    defaults = _settings_after("", {**bare, "SECRET_KEY": "change-me"})
    sourced = _settings_after("set -a; . ./.env.example; set +a;", bare)

    assert sourced["MEDIA_ROOT"] == repr(ROOT / "var" / "media")  # not the checkout itself
    assert sourced["VAR_DIR"] == repr(ROOT / "var")
    differ = {k: (defaults[k], sourced.get(k)) for k in defaults if defaults[k] != sourced.get(k)}
    assert differ == {}


def test_media_root_that_holds_the_code_and_the_env_file_is_refused(settings):
    settings.MEDIA_ROOT = ""  # what an empty MEDIA_ROOT meant: the current directory, the checkout
    errors = checks.check_served_folders(None)
    assert [error.id for error in errors] == ["mcn_site.E001"]
    message = errors[0].msg
    assert "the code (BASE_DIR)" in message and "the env file" in message and "MCN_VAR_DIR" in message


def test_static_root_that_holds_the_media_is_refused(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "public" / "media"
    settings.STATIC_ROOT = tmp_path / "public"
    errors = checks.check_served_folders(None)
    assert len(errors) == 1 and errors[0].msg.startswith(f"STATIC_ROOT={str(tmp_path / 'public')!r} would serve")
    assert "MEDIA_ROOT" in errors[0].msg


def test_default_folders_pass_the_check():
    assert checks.check_served_folders(None) == []


def _manage_check(**extra: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "SECRET_KEY": "x", "DEBUG": "0", **extra}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


def test_manage_py_refuses_to_start_with_the_checkout_as_media_root():
    result = _manage_check(MEDIA_ROOT=str(ROOT))
    assert result.returncode != 0
    assert f"(mcn_site.E001) MEDIA_ROOT={str(ROOT)!r} would serve the code (BASE_DIR)" in result.stderr


def test_manage_py_refuses_to_start_with_the_sqlite_file_under_media_root(tmp_path):
    result = _manage_check(MEDIA_ROOT=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'db' / 'mcn.sqlite3'}")
    assert result.returncode != 0
    assert f"would serve the default database file ({tmp_path / 'db' / 'mcn.sqlite3'})." in result.stderr


def _django_settings_in(environ: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-v",
            "0",
            "-c",
            "from django.conf import settings; print(settings.DEBUG, settings.REDIS_URL)",
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_command_beside_make_run_takes_debug_and_redis_from_var_dev_env_the_environment_wins(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "REDIS_URL"}}
    environ["MCN_VAR_DIR"] = str(tmp_path)
    published = {"DEBUG": "1", "REDIS_URL": "redis://127.0.0.1:6399/0"}
    with devenv.published(devenv.dev_env_file(tmp_path), published):  # as scripts/dev.py run does
        assert _django_settings_in(environ).stdout.split() == ["True", "redis://127.0.0.1:6399/0"]
        # Set but empty is unset too; a value set in the environment wins.
        beside = _django_settings_in({**environ, "REDIS_URL": "", "DEBUG": ""})
        assert beside.stdout.split() == ["True", "redis://127.0.0.1:6399/0"]
        told = _django_settings_in({**environ, "REDIS_URL": "redis://10.0.0.9:6379/1"})
        assert told.stdout.split() == ["True", "redis://10.0.0.9:6379/1"]
    assert not devenv.dev_env_file(tmp_path).exists()  # removed when the block (make run) ends


def test_a_dev_env_file_left_by_a_killed_make_run_is_ignored(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    devenv.dev_env_file(tmp_path).write_text(f"MCN_DEV_PID={gone.stdout.strip()}\nDEBUG=1\n")
    environ = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    result = _django_settings_in({**environ, "MCN_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "manage.py: SECRET_KEY is not set. Set it in the environment (DEBUG=1 allows a dev key; "
        "commands run beside `make run` get DEBUG=1 from it)."
    ]


def _start_django(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}}
    environ["MCN_VAR_DIR"] = tempfile.mkdtemp()  # no var/dev.env of a `make run` in this checkout
    environ.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**environ, "DJANGO_SETTINGS_MODULE": "mcn_site.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_start_without_secret_key_is_refused():
    result = _start_django({"DEBUG": "0"})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_a_database_url_that_cannot_be_parsed_is_refused(tmp_path):
    result = _start_django({"SECRET_KEY": "x", "DATABASE_URL": "nosuchdb://x", "MCN_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "DATABASE_URL cannot be used" in result.stderr


def test_env_example_lists_every_variable_the_project_reads():
    read = set()
    for path in [ROOT / "mcn_site" / "settings.py", ROOT / "scripts" / "dev.py"]:
        text = path.read_text()
        read |= set(re.findall(r'env_(?:raw|str|bool|int|list|timezone)\("([A-Z_]+)"', text))
        read |= set(re.findall(r'environ(?:\.get)?\(\s*"([A-Z_]+)"', text))
    read |= {"MCN_DEMO_PASSWORD", "MCN_WORKER_NAME"}  # read by seed_demo and the factory
    listed = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert read - listed == set(), "add these to .env.example"
