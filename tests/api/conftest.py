"""API tests call with a real token, made the way the admin makes one."""

import django_rq
import pytest
from rest_framework.test import APIClient

from artists.services import api_token_create
from mcn_site.lib import roles
from tests.factories import make_artist, make_user


def token_client(user) -> APIClient:
    """An APIClient that sends `Authorization: Token <key>` for a fresh token of `user`."""
    _, key = api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    client.user = user
    return client


@pytest.fixture(autouse=True)
def _clean_redis():
    """Idempotency keys and throttle counters live in Redis: each test starts without them."""
    django_rq.get_connection("default").flushdb()
    yield
    django_rq.get_connection("default").flushdb()


@pytest.fixture
def producer(db):
    return make_user(role=roles.PRODUCER)


@pytest.fixture
def artist(producer):
    return make_artist(members=[producer])


@pytest.fixture
def api(producer) -> APIClient:
    return token_client(producer)


from tests.factory.conftest import fake_comfyui  # noqa: E402, F401 - the shared fake ComfyUI fixture
