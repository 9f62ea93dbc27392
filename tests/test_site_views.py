"""Project-level views: JSON 404s under /api/ (media access: tests/test_media_access.py)."""

import pytest

from tests.factories import make_user

pytestmark = pytest.mark.django_db


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
