"""Project-level views: media only for signed-in staff (bytes from nginx in production), JSON 404s under /api/."""

import pytest

from tests.factories import make_media_file, make_user

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_log_in_for_media(client):
    make_media_file("artists/faces/luna.png")
    response = client.get("/media/artists/faces/luna.png")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_signed_in_user_gets_the_file_from_django_in_development(client):
    make_media_file("artists/faces/luna.png", b"png bytes")
    client.force_login(make_user())
    response = client.get("/media/artists/faces/luna.png")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"png bytes"


def test_with_accel_redirect_nginx_sends_the_file_after_the_login_check(client, settings):
    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    make_media_file("posts/final/post-1.mp4", b"video")
    client.force_login(make_user())
    response = client.get("/media/posts/final/post-1.mp4")
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == "/protected-media/posts/final/post-1.mp4"
    assert response.content == b""


def test_accel_redirect_refuses_paths_out_of_the_media_folder(client, settings):
    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    client.force_login(make_user())
    response = client.get("/media/..%2F..%2Fetc%2Fpasswd")
    assert response.status_code == 404
    assert "X-Accel-Redirect" not in response


def test_an_unknown_api_path_is_a_json_404_in_the_api_error_shape(client):
    client.force_login(make_user())
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such endpoint or object.", "fields": {}}}


def test_an_unknown_page_is_still_an_html_404(client):
    client.force_login(make_user())
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
