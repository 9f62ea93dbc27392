"""API tokens: made in the admin and shown once, hashed at rest, revoked at once, acting as their user."""

import hashlib
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from artists.models import ApiToken
from artists.services import api_token_create
from mcn_site.lib import roles
from tests.factories import make_artist, make_post, make_user

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"mcn_[0-9a-f]{8}_[A-Za-z0-9_\-]{20,}")


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_ops_create_a_token_for_a_user_and_see_the_key_once():
    ops, producer = make_user(role=roles.OPS), make_user(role=roles.PRODUCER)
    client = admin_client(ops)
    response = client.post("/admin/artists/apitoken/add/", {"user": producer.pk, "name": "n8n publishing"}, follow=True)
    assert response.status_code == 200
    [key] = KEY_RE.findall(response.content.decode())
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.prefix) == (producer, "n8n publishing", key[4:12])
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(list(ApiToken.objects.values()))  # only the hash is stored
    change_page = client.get(f"/admin/artists/apitoken/{token.pk}/change/").content.decode()
    assert key not in change_page and f"mcn_{token.prefix}_" in change_page
    assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/posts/").status_code == 200


def test_producers_make_and_see_only_their_own_tokens():
    producer, other = make_user(role=roles.PRODUCER), make_user(role=roles.PRODUCER)
    theirs, _ = api_token_create(user=other, name="not yours")
    client = admin_client(producer)
    response = client.post("/admin/artists/apitoken/add/", {"user": other.pk, "name": "mine"}, follow=True)
    assert KEY_RE.search(response.content.decode())
    assert ApiToken.objects.get(name="mine").user == producer  # never someone else's
    listing = client.get("/admin/artists/apitoken/").content.decode()
    assert "mine" in listing and "not yours" not in listing
    assert client.get(f"/admin/artists/apitoken/{theirs.pk}/change/").status_code == 404


def test_the_revoke_action_stops_a_token_at_once():
    ops = make_user(role=roles.OPS)
    token, key = api_token_create(user=make_user(role=roles.PRODUCER), name="old")
    api = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/posts/").status_code == 200
    admin_client(ops).post(
        "/admin/artists/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert api.get("/api/v1/posts/").status_code == 401


def test_the_token_changelist_renders_for_every_role():
    for role in (roles.OPS, roles.PRODUCER, roles.REVIEWER):
        user = make_user(role=role)
        api_token_create(user=user, name=f"{role} token")
        assert admin_client(user).get("/admin/artists/apitoken/").status_code == 200


def test_a_token_sees_exactly_its_users_artists():
    producer = make_user(role=roles.PRODUCER)
    mine = make_post(artist=make_artist(members=[producer]))
    theirs = make_post(artist=make_artist())
    _, key = api_token_create(user=producer, name="t")
    api = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    assert [p["id"] for p in api.get("/api/v1/posts/").json()["results"]] == [mine.pk]
    assert api.get(f"/api/v1/posts/{theirs.pk}/").status_code == 404
    theirs.artist.members.add(producer)  # membership changes apply to the token at once
    assert api.get(f"/api/v1/posts/{theirs.pk}/").status_code == 200


def test_use_is_recorded_at_most_once_a_minute():
    token, key = api_token_create(user=make_user(role=roles.PRODUCER), name="t")
    api = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    api.get("/api/v1/posts/")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        api.get("/api/v1/posts/")
    token.refresh_from_db()
    assert token.last_used_at == first
    assert not [query for query in queries.captured_queries if query["sql"].startswith("UPDATE")]
    # A minute later the next request records it again.
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    api.get("/api/v1/posts/")
    token.refresh_from_db()
    assert token.last_used_at > first
