"""The one error shape through the real web server: what the HTTP server and Django refuse themselves.

The server is the same subprocess the fault and browser tests start (tests/e2e/conftest.AsgiServer), serving
this test's database; requests are plain HTTP from httpx.
"""

from pathlib import Path

import httpx
import pytest

from artists.services import api_token_create
from mcn_site.lib import roles
from tests.e2e.conftest import AsgiServer, free_port
from tests.factories import make_artist, make_post, make_user
from tests.factory.conftest import subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Under daphne, its HTTP layer (twisted) answered a malformed multipart POST itself with a bare 400 (no
# headers, no body) before Django saw it; uvicorn (mcn_site/lib/web_server.py) hands the body to Django,
# whose parser errors the API reshapes.


@pytest.fixture
def live(settings, tmp_path):
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    env = subprocess_env(ALLOWED_HOSTS="127.0.0.1,localhost")
    server = AsgiServer(port=free_port(), env=env, log_path=tmp_path / "web.log").start()
    yield server
    server.stop()


@pytest.fixture
def shot_and_auth():
    producer = make_user(role=roles.PRODUCER)
    shot = make_post(artist=make_artist(members=[producer]), shots=1).shots.get()
    _, key = api_token_create(user=producer, name="live")
    return shot, {"Authorization": f"Token {key}"}


def assert_error_shape(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] and error["message"] and isinstance(error["fields"], dict)
    return error


def test_a_malformed_or_empty_multipart_body_gets_the_error_shape(live, shot_and_auth):
    shot, auth = shot_and_auth
    url = f"{live.url}/api/v1/shots/{shot.pk}/asset"
    for content_type, body in (
        ("multipart/form-data; boundary=xyz", b"garbage"),
        ("multipart/form-data; boundary=xyz", b""),
        ("multipart/form-data", b"no boundary"),
        ('multipart/form-data; boundary=""', b"--\r\n"),
    ):
        response = httpx.post(url, content=body, headers={**auth, "Content-Type": content_type}, timeout=30)
        assert_error_shape(response, 400)


def test_a_json_body_over_the_data_limit_is_413_with_the_limit(live, shot_and_auth, settings):
    shot, auth = shot_and_auth
    body = b'{"script": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'", "version": 1}'
    response = httpx.patch(
        f"{live.url}/api/v1/shots/{shot.pk}/",
        content=body,
        headers={**auth, "Content-Type": "application/json"},
        timeout=60,
    )
    error = assert_error_shape(response, 413)
    assert error["code"] == "too_large"
    assert "10.0\xa0MB" in error["message"]
    shot.refresh_from_db()
    assert not shot.script.startswith("xxx")
