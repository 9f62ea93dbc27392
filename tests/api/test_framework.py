"""The API's framework: authentication, the one error shape, 404 for foreign objects, schema and docs."""

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from artists.services import api_token_create, api_token_revoke
from mcn_site.lib import roles
from tests.api.conftest import token_client
from tests.factories import make_artist, make_post, make_user

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["fields"], dict)
    return error


def test_anonymous_is_401_with_the_error_shape_and_a_challenge():
    response = APIClient().get("/api/v1/posts/")
    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"].startswith("Token")


def test_unknown_and_malformed_tokens_are_401(producer):
    api_token_create(user=producer, name="real")
    for header in ("Token mcn_00000000_nope", "Token nonsense", "Bearer mcn_12345678_x", "Token a b"):
        response = APIClient().get("/api/v1/posts/", HTTP_AUTHORIZATION=header)
        assert_error(response, 401, "authentication_failed")


def test_a_revoked_token_is_401_and_says_so(producer):
    token, key = api_token_create(user=producer, name="n8n")
    client = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/posts/").status_code == 200
    api_token_revoke(token=token)
    error = assert_error(client.get("/api/v1/posts/"), 401, "authentication_failed")
    assert "revoked" in error["message"]


def test_bearer_works_like_token(producer):
    _, key = api_token_create(user=producer, name="bearer")
    assert APIClient().get("/api/v1/posts/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_a_token_of_an_inactive_user_is_401(producer):
    _, key = api_token_create(user=producer, name="gone")
    producer.is_active = False
    producer.save()
    assert_error(APIClient().get("/api/v1/posts/", HTTP_AUTHORIZATION=f"Token {key}"), 401, "authentication_failed")


def test_validation_errors_are_400_with_field_paths(api, artist):
    response = api.post("/api/v1/posts/", {"artist": artist.pk, "aspect_ratio": "4:3"}, format="json")
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"title", "aspect_ratio"}
    post = make_post(artist=artist)
    response = api.post(f"/api/v1/posts/{post.pk}/shots/reorder", {"order": [1, "x"], "version": 1}, format="json")
    assert "order.1" in assert_error(response, 400, "invalid")["fields"]


def test_a_service_refusal_is_400_with_the_model_field(api, artist):
    post = make_post(artist=artist)
    response = api.post(f"/api/v1/posts/{post.pk}/shots/", {"kind": "a_roll", "script": " ", "version": 1})
    error = assert_error(response, 400, "invalid")
    assert "script" in error["fields"]


def test_malformed_json_is_400_not_500(api):
    response = api.post("/api/v1/posts/", data="{nope", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_a_json_body_over_the_data_limit_is_413_with_the_error_shape_and_the_limit(api, artist, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    post = make_post(artist=artist)
    body = json.dumps({"title": "x" * 4096, "artist": artist.pk, "version": post.version})
    for response in (
        api.post("/api/v1/posts/", data=body, content_type="application/json"),
        api.patch(f"/api/v1/posts/{post.pk}/", data=body, content_type="application/json"),
        api.post(f"/api/v1/posts/{post.pk}/submit", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"),
    ):
        error = assert_error(response, 413, "too_large")
        assert "larger than 2.0\xa0KB" in error["message"]
    post.refresh_from_db()
    assert post.title != "x" * 4096


def test_a_browser_session_gets_the_same_413(producer, artist, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    browser = Client()
    browser.force_login(producer)
    body = json.dumps({"title": "x" * 4096, "artist": artist.pk})
    assert_error(browser.post("/api/v1/posts/", data=body, content_type="application/json"), 413, "too_large")


def test_too_many_fields_or_query_parameters_are_400_with_the_limit(api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    many = {f"f{i}": "1" for i in range(10)}
    for response in (api.post("/api/v1/posts/", data=many), api.get("/api/v1/posts/", data=many)):
        error = assert_error(response, 400, "too_many_fields")
        assert "more than 5 " in error["message"]


def test_what_django_refuses_before_the_api_sees_it_has_the_error_shape(api):
    # A Host outside ALLOWED_HOSTS is refused by Django itself (handler400), before any DRF view runs.
    assert_error(api.get("/api/v1/posts/", HTTP_HOST="evil.example"), 400, "bad_request")
    assert b"<html" in Client().get("/posts/", HTTP_HOST="evil.example").content  # pages keep Django's page


def test_a_body_of_the_wrong_content_type_is_415_with_the_error_shape(api):
    response = api.post("/api/v1/posts/", data=b"title=x", content_type="text/plain")
    assert "text/plain" in assert_error(response, 415, "unsupported_media_type")["message"]


def test_a_malformed_multipart_body_is_400_with_the_error_shape(api):
    response = api.post("/api/v1/posts/", data=b"--x\r\n", content_type="multipart/form-data")  # no boundary
    assert_error(response, 400, "parse_error")


def test_a_foreign_post_is_404_like_a_missing_one(api):
    foreign = make_post(artist=make_artist())
    for path in (f"/api/v1/posts/{foreign.pk}/", "/api/v1/posts/999999/"):
        assert_error(api.get(path), 404, "not_found")
    assert_error(api.post(f"/api/v1/posts/{foreign.pk}/submit", {}, format="json"), 404, "not_found")


def test_the_schema_needs_credentials_and_is_openapi_3(api):
    assert_error(APIClient().get("/api/schema/?format=json"), 401, "not_authenticated")
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/posts/{id}/approve" in schema["paths"]
    assert "tokenAuth" in schema["components"]["securitySchemes"]
    yaml = api.get("/api/schema/")
    assert yaml.status_code == 200 and b"openapi: 3" in yaml.content


def test_the_docs_page_needs_a_login_and_serves_its_own_assets(producer):
    browser = Client()
    assert browser.get("/api/docs/").status_code == 302  # to the login page
    browser.force_login(producer)
    response = browser.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"cdn.jsdelivr" not in response.content  # served from our static files
    assert browser.get("/api/schema/").status_code == 200  # the page fetches it with the session


def test_a_user_without_a_role_may_not_list_posts(db):
    assert_error(token_client(make_user(role=None)).get("/api/v1/posts/"), 403, "permission_denied")


def test_a_token_acts_with_its_users_role(db):
    reviewer = make_user(role=roles.REVIEWER)
    artist = make_artist(members=[reviewer])
    response = token_client(reviewer).post("/api/v1/posts/", {"title": "x", "artist": artist.pk}, format="json")
    assert_error(response, 403, "permission_denied")  # reviewers do not add posts
