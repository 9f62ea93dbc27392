"""The production environment of docs/deploy.md passes `manage.py check --deploy`, and secrets rotate."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import signing
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent


def production_env(tmp_path: Path) -> dict[str, str]:
    """The env block of docs/deploy.md ("The production environment") with real-looking values."""
    font = tmp_path / "NotoSansCJK-Regular.ttc"
    font.write_bytes(b"stand-in")  # the CJK font is the render's concern (factory.W001, tests/factory/test_checks)
    return {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECRET_KEY_FALLBACKS": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "mcn.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://mcn.example.com",
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_HSTS_PRELOAD": "1",
        "DATABASE_URL": "postgres://mcn:db-password@10.0.0.2:5432/mcn",
        "DATABASE_CONN_MAX_AGE": "60",
        "REDIS_URL": "redis://:redis-password@10.0.0.2:6379/0",
        "MCN_VAR_DIR": str(tmp_path / "var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "MEDIA_ACCEL_REDIRECT": "/protected-media/",
        "MCN_GPU_POOLS": "video",
        "COMFYUI_URL": "http://10.0.0.11:8188",
        "MCN_FONT_FILE": str(font),
    }


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "SECRET_", "DATABASE_", "MCN_"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**keep, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_documented_production_environment_passes_check_deploy_without_a_warning(tmp_path):
    result = check_deploy(production_env(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."
    assert "WARNING" not in result.stderr


def test_the_documented_environment_block_names_every_production_variable(tmp_path):
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = text.split("<!-- production-env -->", 2)[1]
    documented = set(re.findall(r"^([A-Z_]+)=", block, re.MULTILINE))
    assert set(production_env(tmp_path)) - {"MCN_VAR_DIR", "MCN_FONT_FILE"} <= documented


def test_a_laptop_environment_is_not_taken_for_a_production_one(tmp_path):
    # The same check fails without the HTTPS settings: the test above is not passing by accident.
    env = {**production_env(tmp_path), "SECURE_PROXY_SSL_HEADER": "", "SECURE_HSTS_SECONDS": "0"}

    result = check_deploy(env)

    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


def test_nginx_takes_the_same_largest_body_as_the_app():
    # The app's limit with the default upload limits, in a process that sees none of this one's MCN_ values.
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MCN_")}
    app_limit = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from mcn_site.lib import request_size as r; "
            "print(r.largest_request_bytes())",
        ],
        cwd=ROOT,
        env={**keep, "DJANGO_SETTINGS_MODULE": "mcn_site.settings", "DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    nginx = re.findall(r"client_max_body_size (\d+)m;", (ROOT / "docs" / "deploy.md").read_text())

    assert [int(size) * 1024 * 1024 for size in nginx] == [int(app_limit)]


OLD_KEY = "old-" + "k" * 20 + "-0123456789abcdefghijklmnopqrstuvwxyz"
NEW_KEY = "new-" + "n" * 20 + "-zyxwvutsrqponmlkjihgfedcba9876543210"


@pytest.mark.django_db
def test_sessions_and_signed_values_made_with_the_old_key_work_during_a_rotation(settings, admin_user):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    used_during_rotation, idle_during_rotation = Client(), Client()
    for client in (used_during_rotation, idle_during_rotation):
        client.force_login(admin_user)
        assert client.get("/admin/").status_code == 200
    token = signing.dumps({"post": 42})

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]  # step 1: new key, old as fallback

    assert used_during_rotation.get("/admin/").status_code == 200  # still signed in
    assert signing.loads(token) == {"post": 42}

    settings.SECRET_KEY_FALLBACKS = []  # step 2, later: the old key is dropped

    # A session seen during the rotation was re-signed with the new key; one not seen is signed out.
    assert used_during_rotation.get("/admin/").status_code == 200
    response = idle_during_rotation.get("/admin/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    with pytest.raises(signing.BadSignature):
        signing.loads(token)
