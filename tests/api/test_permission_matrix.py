"""Who may call what: every /api/v1/ endpoint, for every role, against the admin's roles.

The endpoints are discovered from the URLconf (drf-spectacular's enumerator, the one the schema is built
from), so a new endpoint fails `test_every_endpoint_has_a_row` until it gets a row in MATRIX below. Each row
says, per role, what a request gets:

    OK   allowed: anything but 401/403/404 and never a 500 (an empty body may well be a 400 or a 409)
    403  the role may not do this (the admin's model permissions, mcn_site.lib.roles)
    404  the object is another team's (artists.selectors), or the factory, which only ops see

Roles: X a producer who is a member of no artist (an outsider), P a producer and R a reviewer who are
members of the artist the objects belong to, O ops. Anonymous is a 401 with the error shape everywhere.
Each role's request runs in a savepoint that is rolled back, so a DELETE by one role leaves the object for
the next.

The other doors have matrices of their own, discovered the same way: every page route (tests/access/test_pages.py),
every admin model's pages (tests/access/test_admin.py) and the websocket (tests/access/test_websocket.py).
"""

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import EndpointEnumerator

from mcn_site.lib import roles
from schedules.models import ScheduleRun
from tests.api.conftest import token_client
from tests.factories import (
    make_artist,
    make_job,
    make_post,
    make_post_media,
    make_schedule,
    make_source,
    make_user,
    make_wardrobe,
)

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

OK = "ok"
ROLES = "XPRO"
PREFIX = "/api/v1/"


def allow(*allowed: str, **denied: int) -> dict[str, str | int]:
    """Allowed roles get OK; every other role gets 403 unless named with its own status."""
    return {role: OK if role in allowed else denied.get(role, 403) for role in ROLES}


EVERYONE = allow(*ROLES)
MEMBERS_READ = allow("P", "R", "O", X=404)
MEMBER_PRODUCERS = allow("P", "O", X=404)  # the reviewer's role lacks the permission: 403
PRODUCERS_ADD = allow("X", "P", "O")  # an outsider may add, but only for an artist they may see (a 400)
OPS_ONLY_LIBRARY = allow("O")
FACTORY = allow("O", X=404, P=404, R=404)
REVIEWERS = allow("R", "O", X=403)  # approve and reject: the producer's role lacks posts.review_post
POST_CHANGE = allow("P", "R", "O", X=404)  # reviewers may change posts (posts.change_post)


def crud(kind: str, *, add, read, change, delete) -> dict:
    items, item = f"{PREFIX}{kind}/", f"{PREFIX}{kind}/{{pk}}/"
    return {
        ("GET", items): read if read is not MEMBERS_READ else EVERYONE,
        ("POST", items): add,
        ("GET", item): read,
        ("PUT", item): change,
        ("PATCH", item): change,
        ("DELETE", item): delete,
    }


# (method, path) -> expected status per role. The object behind {pk} is OBJECTS[first path segment].
MATRIX: dict[tuple[str, str], dict[str, str | int]] = {
    **crud("artists", add=PRODUCERS_ADD, read=MEMBERS_READ, change=MEMBER_PRODUCERS, delete=OPS_ONLY_LIBRARY),
    **crud("voices", add=PRODUCERS_ADD, read=EVERYONE, change=allow("X", "P", "O"), delete=OPS_ONLY_LIBRARY),
    **crud("wardrobes", add=PRODUCERS_ADD, read=EVERYONE, change=allow("X", "P", "O"), delete=OPS_ONLY_LIBRARY),
    **crud("sources", add=PRODUCERS_ADD, read=EVERYONE, change=allow("X", "P", "O"), delete=OPS_ONLY_LIBRARY),
    **crud("schedules", add=PRODUCERS_ADD, read=MEMBERS_READ, change=MEMBER_PRODUCERS, delete=MEMBER_PRODUCERS),
    ("GET", f"{PREFIX}schedule-runs/"): EVERYONE,
    ("GET", f"{PREFIX}schedule-runs/{{pk}}/"): MEMBERS_READ,
    # posts (posts.api)
    ("GET", f"{PREFIX}posts/"): EVERYONE,
    ("POST", f"{PREFIX}posts/"): PRODUCERS_ADD,
    ("GET", f"{PREFIX}posts/{{pk}}/"): MEMBERS_READ,
    ("PATCH", f"{PREFIX}posts/{{pk}}/"): POST_CHANGE,
    ("POST", f"{PREFIX}posts/{{pk}}/generate"): MEMBER_PRODUCERS,
    ("POST", f"{PREFIX}posts/{{pk}}/submit"): POST_CHANGE,
    ("POST", f"{PREFIX}posts/{{pk}}/approve"): REVIEWERS,
    ("POST", f"{PREFIX}posts/{{pk}}/reject"): REVIEWERS,
    ("POST", f"{PREFIX}posts/{{pk}}/render"): POST_CHANGE,
    ("POST", f"{PREFIX}posts/{{pk}}/cancel"): POST_CHANGE,
    ("POST", f"{PREFIX}posts/{{post_pk}}/shots/"): MEMBER_PRODUCERS,
    ("POST", f"{PREFIX}posts/{{post_pk}}/shots/reorder"): MEMBER_PRODUCERS,
    ("GET", f"{PREFIX}shots/{{pk}}/"): MEMBERS_READ,
    ("PATCH", f"{PREFIX}shots/{{pk}}/"): MEMBER_PRODUCERS,
    ("DELETE", f"{PREFIX}shots/{{pk}}/"): MEMBER_PRODUCERS,
    ("POST", f"{PREFIX}shots/{{pk}}/lock"): MEMBER_PRODUCERS,
    ("POST", f"{PREFIX}shots/{{pk}}/unlock"): MEMBER_PRODUCERS,
    ("POST", f"{PREFIX}shots/{{pk}}/asset"): MEMBER_PRODUCERS,
    ("DELETE", f"{PREFIX}shots/{{pk}}/asset"): MEMBER_PRODUCERS,
    ("POST", f"{PREFIX}shots/{{pk}}/revoice"): MEMBER_PRODUCERS,  # a new take of the voice: posts.change_shot
    ("GET", f"{PREFIX}post-events/"): EVERYONE,
    # the cost ledger (posts.api): an artist's month, for every role on their own artists
    ("GET", f"{PREFIX}artists/{{pk}}/costs"): MEMBERS_READ,
    # downloads (posts.api): the files of a post of the members' artist
    ("GET", f"{PREFIX}posts/{{pk}}/video"): MEMBERS_READ,
    ("GET", f"{PREFIX}shots/{{pk}}/picture"): MEMBERS_READ,
    ("GET", f"{PREFIX}shots/{{pk}}/voice"): MEMBERS_READ,
    # the factory (factory.api): ops only, a 404 for everyone else
    ("GET", f"{PREFIX}jobs/"): FACTORY,
    ("GET", f"{PREFIX}jobs/{{pk}}/"): FACTORY,
    ("POST", f"{PREFIX}jobs/{{pk}}/cancel"): FACTORY,
    ("POST", f"{PREFIX}jobs/{{pk}}/retry"): FACTORY,
    ("GET", f"{PREFIX}workflow-templates/"): FACTORY,
    ("GET", f"{PREFIX}workflow-templates/{{pk}}/"): FACTORY,
    ("POST", f"{PREFIX}workflow-templates/{{pk}}/preflight"): FACTORY,
}

# Lists of rows scoped to artists: the member sees the object, the outsider does not.
SCOPED_LISTS = {"artists", "schedules", "schedule-runs", "posts"}


def api_endpoints() -> list[tuple[str, str]]:
    """Every (method, path) under /api/v1/ in the URLconf, as drf-spectacular enumerates them."""
    found = {
        (method, path)
        for path, _, method, _ in EndpointEnumerator().get_api_endpoints()
        if path.startswith(PREFIX) and method != "OPTIONS"
    }
    return sorted(found, key=lambda item: (item[1], item[0]))


def _routes(patterns, prefix: str = ""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern.callback


def test_every_endpoint_has_a_row():
    endpoints = set(api_endpoints())
    assert len(endpoints) > 30
    missing = sorted(endpoints - set(MATRIX))
    assert not missing, f"Endpoints without a row in MATRIX (say who may call them): {missing}"
    stale = sorted(set(MATRIX) - endpoints)
    assert not stale, f"Rows for endpoints that no longer exist: {stale}"


def test_every_route_under_api_v1_is_a_drf_view():
    """A plain Django view there would escape the enumeration above (and the error shape, and the schema)."""
    routes = [(route, callback) for route, callback in _routes(get_resolver().url_patterns) if "api/v1/" in route]
    assert routes
    plain = [route for route, callback in routes if not hasattr(callback, "cls")]
    assert not plain, f"Not DRF views: {plain}"


@pytest.fixture
def world(settings):
    """Two artists: the members' (P, R) with one of everything, and a stranger's; plus the four roles' clients."""
    settings.COMFYUI_URL = "http://127.0.0.1:9"  # nothing listens: preflight answers 503 at once
    producer, reviewer = make_user(role=roles.PRODUCER), make_user(role=roles.REVIEWER)
    artist = make_artist(members=[producer, reviewer])
    make_artist()  # another team's
    post = make_post(artist=artist, shots=2)
    make_post_media(post)  # something for the download endpoints to send
    schedule = make_schedule(artist=artist)
    run = ScheduleRun.objects.create(schedule=schedule, slot_at=schedule.next_slot_at, outcome="missed")
    job = make_job()
    objects = {
        "artists": artist,
        "voices": artist.voice,
        "wardrobes": make_wardrobe(),
        "sources": make_source(),
        "schedules": schedule,
        "schedule-runs": run,
        "posts": post,
        "shots": post.shots.first(),
        "jobs": job,
        "workflow-templates": job.template,
    }
    outsider = make_user(role=roles.PRODUCER)
    make_artist(members=[outsider])  # a producer with work of their own, none of it this artist's
    clients = {
        "X": token_client(outsider),
        "P": token_client(producer),
        "R": token_client(reviewer),
        "O": token_client(make_user(role=roles.OPS)),
    }
    return objects, clients


def _url(path: str, objects: dict) -> str:
    if "{pk}" in path:
        path = path.replace("{pk}", str(objects[path[len(PREFIX) :].split("/")[0]].pk))
    return path.replace("{post_pk}", str(objects["posts"].pk))


def _call(client, method: str, url: str):
    """One request in a savepoint rolled back afterwards: a DELETE by one role leaves the row for the next."""
    with transaction.atomic():
        body = {} if method in ("POST", "PUT", "PATCH") else None
        response = client.generic(method, url, data=None if body is None else "{}", content_type="application/json")
        transaction.set_rollback(True)
    return response


def _verdict(response) -> str | int:
    status = response.status_code
    if status in (401, 403, 404):
        return status
    return OK if status < 500 or (status == 503 and _code(response) == "gpu_server_unreachable") else status


def _code(response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


@pytest.mark.parametrize(("method", "path"), api_endpoints(), ids=[f"{m} {p}" for m, p in api_endpoints()])
def test_who_may_call_it(method, path, world, client):
    objects, clients = world
    expected = MATRIX.get((method, path))
    if expected is None:
        pytest.fail(f"{method} {path} has no row in MATRIX")
    url = _url(path, objects)

    anonymous = client.generic(method, url)
    assert anonymous.status_code == 401, (url, anonymous.content)
    assert set(anonymous.json()["error"]) >= {"code", "message", "fields"}

    got = {}
    for role in ROLES:
        response = _call(clients[role], method, url)
        got[role] = _verdict(response)
        if response.status_code >= 400:
            assert _code(response), f"{role} {method} {url}: no error shape in {response.content[:200]!r}"
    assert got == expected, f"{method} {path}: expected {expected}, got {got}"


@pytest.mark.parametrize("kind", sorted(SCOPED_LISTS))
def test_a_list_shows_a_member_the_object_and_hides_it_from_an_outsider(kind, world):
    objects, clients = world
    target = objects[kind].pk

    def listed(role: str) -> list[int]:
        response = clients[role].get(f"{PREFIX}{kind}/?page_size=200")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert target in listed("P") and target in listed("R") and target in listed("O")
    assert target not in listed("X")


def test_an_outsider_gets_the_same_404_for_a_foreign_object_and_a_missing_one(world):
    objects, clients = world
    for kind in ("artists", "schedules", "schedule-runs", "posts", "shots"):
        foreign = clients["X"].get(f"{PREFIX}{kind}/{objects[kind].pk}/")
        missing = clients["X"].get(f"{PREFIX}{kind}/987654321/")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
