"""The OpenAPI schema says what the server enforces (and the server does what it says)."""

import re

import pytest

from posts.models import PostEvent
from tests.factories import make_post

pytestmark = pytest.mark.django_db

ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def schema(api):
    return api.get("/api/schema/?format=json").json()


def parameter(operation: dict, name: str) -> dict:
    return next(p for p in operation["parameters"] if p["name"] == name)


def test_writes_document_the_version_preconditions(schema, api, artist):
    for path, method in (("/api/v1/posts/{id}/", "patch"), ("/api/v1/shots/{id}/", "patch")):
        responses = schema["paths"][path][method]["responses"]
        assert {"409", "412", "413", "428"} <= set(responses)
        assert responses["428"]["content"]["application/json"]["schema"] == ERROR_REF
        assert "428" in parameter(schema["paths"][path][method], "If-Match")["description"]
    post = make_post(artist=artist)
    response = api.patch(f"/api/v1/posts/{post.pk}/", {"title": "x"}, format="json")
    assert response.status_code == 428 and response.json()["error"]["code"] == "precondition_required"
    assert (
        api.patch(f"/api/v1/posts/{post.pk}/", {"title": "x"}, format="json", HTTP_IF_MATCH='"v9"').status_code == 412
    )


def test_the_idempotency_key_format_is_the_one_the_server_takes(schema, api, artist):
    key_schema = parameter(schema["paths"]["/api/v1/posts/{id}/submit"]["post"], "Idempotency-Key")["schema"]
    assert key_schema["maxLength"] == 200
    pattern = re.compile(key_schema["pattern"])
    post = make_post(artist=artist, shots=1)
    for key, ok in (("a" * 200, True), ("a" * 201, False), ("with space", False), ("ключ", False)):
        assert bool(pattern.match(key)) is ok
        if not ok and key.isascii():  # a header value must be Latin-1 to be sent at all
            response = api.post(f"/api/v1/posts/{post.pk}/submit", {}, format="json", HTTP_IDEMPOTENCY_KEY=key)
            assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]["fields"]
    assert "400" in schema["paths"]["/api/v1/jobs/{id}/retry"]["post"]["responses"]


def test_events_that_are_no_status_change_have_empty_statuses_in_the_schema_too(schema, api, artist):
    event = schema["components"]["schemas"]["PostEvent"]["properties"]["from_status"]
    assert {"$ref": "#/components/schemas/BlankEnum"} in event["oneOf"]
    post = make_post(artist=artist)
    PostEvent.objects.create(post=post, kind=PostEvent.Kind.EDITED, actor=api.user)
    listed = api.get(f"/api/v1/post-events/?post={post.pk}").json()["results"]
    assert "" in {e["from_status"] for e in listed}


def test_pages_start_at_one_and_a_page_past_the_last_is_a_documented_404(schema, api, artist):
    listing = schema["paths"]["/api/v1/posts/"]["get"]
    assert parameter(listing, "page")["schema"]["minimum"] == 1
    assert parameter(listing, "page_size")["schema"]["minimum"] == 1
    assert listing["responses"]["404"]["content"]["application/json"]["schema"] == ERROR_REF
    make_post(artist=artist)
    for query in ("page=0", "page=-1", "page=x", "page=", "page_size=0"):
        response = api.get(f"/api/v1/posts/?{query}")
        assert response.status_code == 400, query
        assert set(response.json()["error"]["fields"]) <= {"page", "page_size"}
    assert api.get("/api/v1/posts/?page=2").status_code == 404
    assert api.get("/api/v1/posts/?page_size=500").status_code == 200  # capped at 200, as documented


def test_filters_refuse_what_their_schema_refuses(schema, api, artist):
    artists = schema["paths"]["/api/v1/artists/"]["get"]
    assert parameter(artists, "active")["allowEmptyValue"] is True  # "" is "not given"
    assert parameter(schema["paths"]["/api/v1/posts/"]["get"], "artist")["schema"]["minimum"] == 1
    response = api.get("/api/v1/artists/?active=maybe")
    assert response.status_code == 400 and "active" in response.json()["error"]["fields"]
    assert api.get("/api/v1/artists/?active=").status_code == 200


def test_each_body_is_documented_in_the_type_that_can_hold_it(schema):
    paths = schema["paths"]
    assert set(paths["/api/v1/shots/{id}/"]["patch"]["requestBody"]["content"]) == {"application/json"}
    assert set(paths["/api/v1/shots/{id}/asset"]["post"]["requestBody"]["content"]) == {"multipart/form-data"}
    shot = schema["components"]["schemas"]["ShotWriteRequest"]["properties"]
    assert shot["duration_seconds"] == {"type": "number", "minimum": 0.01, "maximum": 60, "multipleOf": 0.01}
    name = schema["components"]["schemas"]["SourceRequest"]["properties"]["name"]
    assert not re.match(name["pattern"], "nul\x00") and not re.match(name["pattern"], "   ")
