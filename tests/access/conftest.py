"""One artist's world and the five callers the access matrices ask about, signed in as a browser is.

X a producer who is a member of no artist of these objects (an outsider), P a producer and R a reviewer
who are members of the artist the objects belong to, O ops; anonymous is a client with no session.
"""

import pytest
from django.test import Client

from mcn_site.lib import roles
from tests.factories import make_artist, make_post, make_user

ROLES = "XPRO"


def session_client(user) -> Client:
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def people(db):
    producer, reviewer = make_user(role=roles.PRODUCER), make_user(role=roles.REVIEWER)
    outsider = make_user(role=roles.PRODUCER)
    make_artist(members=[outsider])  # a producer with work of their own, none of it this artist's
    artist = make_artist(members=[producer, reviewer])
    return {
        "artist": artist,
        "post": make_post(artist=artist, shots=2),
        "users": {"X": outsider, "P": producer, "R": reviewer, "O": make_user(role=roles.OPS)},
    }


@pytest.fixture
def clients(people) -> dict[str, Client]:
    return {role: session_client(user) for role, user in people["users"].items()}
