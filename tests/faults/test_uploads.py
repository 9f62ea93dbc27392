"""Row 10 of the fault matrix: a huge upload and a file whose name lies, against a live web server.

The server is a real `uvicorn mcn_site.asgi:application` subprocess (as in production, less nginx), with
its temp directory (TMPDIR: Django's spooled body and upload files) of the test's own. The big body is
generated on the fly and streamed with a Content-Length, never held in the test's memory; the server's
peak memory (VmHWM) and its temp files are read from /proc afterwards.

The limits here: images and audio 4 MB, videos 8 MB, so the largest request the server reads is
8 MB + 10 MB of form (mcn_site.lib.request_size); a body under that reaches the field's validator,
one over it is refused at the door.
"""

import os
import re
import socket
import uuid
from pathlib import Path

import httpx
import pytest

from artists.models import Wardrobe
from artists.services import api_token_create
from mcn_site.lib import roles
from tests.e2e.conftest import AsgiServer, free_port
from tests.factories import make_artist, make_post, make_user, mp4_bytes
from tests.factory.conftest import subprocess_env
from tests.faults.conftest import wait_for
from tests.faults.invariants import assert_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault, pytest.mark.timeout(120)]

MB = 1 << 20
BODY = 16 * MB  # 2x the video limit, under the request limit: the server reads it all, the validator refuses it
REQUEST_LIMIT = 18 * MB  # the video limit + DATA_UPLOAD_MAX_MEMORY_SIZE (10 MB)
PASSWORD = "pw-for-tests-1"
# PNG magic, then a web page: sniffing by magic alone would call it a PNG.
HTML_AS_PNG = b"\x89PNG\r\n\x1a\n<html><body><script>alert(document.cookie)</script></body></html>"


@pytest.fixture
def upload_tmp(tmp_path) -> Path:
    folder = tmp_path / "server-tmp"
    folder.mkdir()
    return folder


@pytest.fixture
def start_live(settings, upload_tmp, tmp_path):
    """start_live(**env) -> a running web server with the limits above (env overrides them)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]  # the server's hashers
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    started = []

    def start(**env) -> AsgiServer:
        limits = {
            "MCN_MAX_IMAGE_BYTES": str(4 * MB),
            "MCN_MAX_AUDIO_BYTES": str(4 * MB),
            "MCN_MAX_VIDEO_BYTES": str(8 * MB),
        }
        env = subprocess_env(
            ALLOWED_HOSTS="127.0.0.1,localhost",
            TMPDIR=str(upload_tmp),
            SECURE_COOKIES="0",  # plain http on 127.0.0.1: the session cookie must travel
            **{**limits, **env},
        )
        started.append(AsgiServer(port=free_port(), env=env, log_path=tmp_path / "web.log").start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live(start_live):
    return start_live()


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def open_temp_files(pid: int, folder: Path) -> list[str]:
    """Files the server still holds open in its temp folder, or deleted (an unlinked temp file)."""
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(str(folder)) or (target.startswith("/") and target.endswith(" (deleted)")):
            held.append(target)
    return held


def multipart(fields: dict[str, str], *, name: str, filename: str, head: bytes, size: int):
    """(content type, length, body chunks) of a multipart form whose file part is `head` then zeros up to
    `size` bytes, produced 1 MB at a time."""
    boundary = uuid.uuid4().hex
    preamble = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    )
    preamble += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    ending = f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        yield preamble + head
        left, zeros = size - len(head), bytes(MB)
        while left > 0:
            yield zeros[: min(left, MB)]
            left -= MB
        yield ending

    return f"multipart/form-data; boundary={boundary}", len(preamble) + size + len(ending), chunks()


def producer_with_a_shot():
    producer = make_user(role=roles.PRODUCER)
    shot = make_post(artist=make_artist(members=[producer]), shots=1).shots.get()
    _, key = api_token_create(user=producer, name="uploads")
    return shot, {"Authorization": f"Token {key}"}


def post_video(live, shot, auth, *, size: int = BODY, chunked: bool = False, version: int = 1):
    """POST a `size`-byte MP4 to the shot's asset endpoint; chunked: without a Content-Length."""
    content_type, length, body = multipart(
        {"version": str(version)}, name="manual_asset", filename="clip.mp4", head=mp4_bytes(), size=size
    )
    headers = {**auth, "Content-Type": content_type}
    if not chunked:
        headers["Content-Length"] = str(length)
    return httpx.post(f"{live.url}/api/v1/shots/{shot.pk}/asset", content=body, headers=headers, timeout=90)


def temp_files_gone(live, upload_tmp) -> None:
    """Django's spooled body and its upload file are deleted, none held open. Django deletes its upload file
    once the request is over, which is just after the client has the response."""
    wait_for(
        lambda: list(upload_tmp.iterdir()) == [] and open_temp_files(live.process.pid, upload_tmp) == [],
        timeout=10,
        what="the server's temp files to go",
    )


def test_a_huge_upload_is_refused_with_the_limit_and_leaves_no_temp_file(live, upload_tmp):
    shot, auth = producer_with_a_shot()

    response = post_video(live, shot, auth)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["fields"]["manual_asset"] == [
        f"This video is {BODY // MB}.0\xa0MB; the limit is 8.0\xa0MB."  # filesizeformat's non-breaking spaces
    ]
    temp_files_gone(live, upload_tmp)
    shot.refresh_from_db()
    assert not shot.manual_asset
    assert_invariants(jobs=[], responses=[response])


def test_a_huge_upload_keeps_the_server_memory_flat(start_live):
    # A video limit of 100 MB lets a 104 MB body through to the validator: the server reads all of it.
    # daphne held the whole body in memory (peak +289 MB for a 24 MB body); uvicorn hands it over in
    # pieces as Django spools it to disk.
    live = start_live(MCN_MAX_VIDEO_BYTES=str(100 * MB))
    shot, auth = producer_with_a_shot()
    pid = live.process.pid
    assert post_video(live, shot, auth, size=1 * MB).status_code == 200  # loads the code a request needs
    peak_before = status_kb(pid, "VmHWM")

    response = post_video(live, shot, auth, size=104 * MB, version=2)

    assert response.status_code == 400, response.text
    refusal = response.json()["error"]["fields"]["manual_asset"]
    assert refusal == ["This video is 104.0\xa0MB; the limit is 100.0\xa0MB."]
    growth_mb = (status_kb(pid, "VmHWM") - peak_before) / 1024
    assert growth_mb < 50, f"the server's peak memory grew by {growth_mb:.0f} MB for a 104 MB body"


def send_only_the_head(live, path: str, *, length: int, headers: dict[str, str]) -> tuple[bytes, dict]:
    """POST the request head announcing `length` bytes, send none of them, and read the answer to the end
    (an answer at all shows the server did not wait for the body): (status line and headers, JSON body)."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while chunk := conn.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, httpx.Response(200, content=body).json()


def test_a_body_over_every_limit_is_refused_before_it_is_read(live, upload_tmp):
    shot, auth = producer_with_a_shot()

    head, body = send_only_the_head(
        live,
        f"/api/v1/shots/{shot.pk}/asset",
        length=600 * MB,
        headers={**auth, "Content-Type": "multipart/form-data; boundary=x"},
    )

    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"content-type: application/json" in head.lower()
    assert body == {
        "error": {
            "code": "too_large",
            "message": "This request is 600.0\xa0MB; the largest upload allowed is 18.0\xa0MB.",
            "fields": {},
        }
    }
    assert list(upload_tmp.iterdir()) == []
    shot.refresh_from_db()
    assert not shot.manual_asset


def test_a_chunked_body_over_every_limit_is_cut_off_with_413(live, upload_tmp):
    shot, auth = producer_with_a_shot()

    response = post_video(live, shot, auth, size=REQUEST_LIMIT + MB, chunked=True)

    assert response.status_code == 413, response.text
    assert response.json()["error"] == {
        "code": "too_large",
        "message": "This request is larger than 18.0\xa0MB, the largest upload allowed.",
        "fields": {},
    }
    temp_files_gone(live, upload_tmp)
    shot.refresh_from_db()
    assert not shot.manual_asset
    assert_invariants(jobs=[], responses=[response])


def test_the_pages_upload_endpoint_gets_the_pages_error_shape_for_a_body_over_every_limit(live):
    # The storyboard page reads {"error": "<message>"} and shows it on the shot's card.
    shot, _ = producer_with_a_shot()

    head, body = send_only_the_head(
        live, f"/posts/{shot.post_id}/shots/{shot.pk}/asset", length=20 * MB, headers={"Content-Type": "text/plain"}
    )

    assert head.startswith(b"HTTP/1.1 413 "), head
    assert body == {"error": "This request is 20.0\xa0MB; the largest upload allowed is 18.0\xa0MB.", "fields": {}}


def test_html_named_png_is_refused_by_the_api(live):
    shot, auth = producer_with_a_shot()
    content_type, length, body = multipart(
        {"version": "1"}, name="manual_asset", filename="cat.png", head=HTML_AS_PNG, size=len(HTML_AS_PNG)
    )

    response = httpx.post(
        f"{live.url}/api/v1/shots/{shot.pk}/asset",
        content=body,
        headers={**auth, "Content-Type": content_type, "Content-Length": str(length)},
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["fields"]["manual_asset"] == [
        "This file is not a readable image (JPEG, PNG or WebP)."
    ]
    shot.refresh_from_db()
    assert not shot.manual_asset
    assert_invariants(jobs=[], responses=[response])


def test_html_named_png_is_refused_by_the_admin_form(live):
    producer = make_user(role=roles.PRODUCER)
    with httpx.Client(base_url=live.url, timeout=30) as browser:
        login = browser.get("/admin/login/")
        answer = browser.post(
            "/admin/login/",
            data={"username": producer.username, "password": PASSWORD, "csrfmiddlewaretoken": csrf(login.text)},
        )
        assert answer.status_code == 302, answer.text[:500]
        form = browser.get("/admin/artists/wardrobe/add/")
        data = {
            "csrfmiddlewaretoken": csrf(form.text),
            "name": "Navy suit",
            "category": "formal",
            "comfy_payload": '{"lora_name": "suit.safetensors"}',
        }
        response = browser.post(
            "/admin/artists/wardrobe/add/", data=data, files={"preview": ("suit.png", HTML_AS_PNG, "image/png")}
        )

    assert response.status_code == 200  # the form again, with the field's error
    errors = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.text, re.S)
    # Django's ImageField opens it with Pillow before our validator runs: the magic bytes do not fool it.
    assert errors == [
        "<li>Upload a valid image. The file you uploaded was either not an image or a corrupted image.</li>"
    ]
    assert not Wardrobe.objects.exists()
    assert_invariants(jobs=[], responses=[login, answer, form, response])


def csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
