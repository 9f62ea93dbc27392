"""Deployment values come from the environment and bad ones stop the start with a clear message."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from mcn_site.lib import env

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


def _start_django(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}}
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
        read |= set(re.findall(r'env_(?:str|bool|int|list|timezone)\("([A-Z_]+)"', text))
        read |= set(re.findall(r'environ(?:\.get)?\(\s*"([A-Z_]+)"', text))
    read |= {"MCN_DEMO_PASSWORD", "MCN_WORKER_NAME"}  # read by seed_demo and the factory
    listed = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert read - listed == set(), "add these to .env.example"
