"""Schemathesis against the live schema: generated requests to every operation, no 500s, answers as documented.

The schema is fetched from /api/schema/ with an ops token and the requests go to the WSGI application in
this process (no server, no network), so the test database is the one seeded here. Each operation gets a
bounded, derandomized set of examples; a run takes well under a minute on two cores.

Two checks only: `not_a_server_error` (never a 5xx for any input) and `response_schema_conformance` (every
answer, errors included, matches what /api/docs/ documents for that status). Multipart uploads (artist
images, voice samples, shot assets) are generated from the schema too, as random bytes: the content
checks must refuse them with a 400, never crash.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from mcn_site.lib import roles
from schedules.models import ScheduleRun
from tests.api.conftest import token_client
from tests.factories import make_artist, make_job, make_post, make_schedule, make_source, make_user, make_wardrobe
from tests.fakes.comfyui import FakeComfyUI

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(300)]

CHECKS = [not_a_server_error, response_schema_conformance]
APP = get_wsgi_application()
SEEDED: dict[str, int] = {}  # first path segment -> the id of the seeded object of that kind


def aim_at_seeded_objects(case) -> None:
    """A generated id that is a valid one (a positive integer) becomes the seeded object's, so that bodies are
    validated against a real row, not answered with a 404. Invalid ids (text, negative) stay as generated."""
    kind = case.operation.path.split("/")[3]
    params = case.path_parameters or {}
    for name, target in (("id", SEEDED.get(kind)), ("post_pk", SEEDED.get("posts"))):
        value = params.get(name)
        if target is not None and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            params[name] = target


@pytest.fixture
def fake_gpu_server():
    fake = FakeComfyUI().start()
    yield fake
    fake.stop()


@pytest.fixture
def in_process_wsgi():
    """Requests through the WSGI app inside the test's transaction, as Django's test client makes them.

    Django closes the database connection when a request starts and ends; the test client switches that off,
    a plain WSGI call does not, and the test's transaction (with the seeded rows) would be gone.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield APP
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def ops_token(db, settings, fake_gpu_server, in_process_wsgi):
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    settings.COMFYUI_URL = fake_gpu_server.url  # preflight asks a (fake) GPU server, not a closed port
    ops = make_user(role=roles.OPS)
    # Something to find behind the ids: one of every object, ids 1..n in a fresh test database.
    producer = make_user(role=roles.PRODUCER)
    artist = make_artist(members=[producer])
    post = make_post(artist=artist, shots=2)
    schedule = make_schedule(artist=artist)
    run = ScheduleRun.objects.create(schedule=schedule, slot_at=schedule.next_slot_at, outcome="missed")
    job = make_job()
    SEEDED.clear()
    SEEDED.update(
        {
            "artists": artist.pk,
            "voices": artist.voice_id,
            "wardrobes": make_wardrobe().pk,
            "sources": make_source().pk,
            "schedules": schedule.pk,
            "schedule-runs": run.pk,
            "posts": post.pk,
            "shots": post.shots.first().pk,
            "jobs": job.pk,
            "workflow-templates": job.template_id,
        }
    )
    return token_client(ops)._credentials["HTTP_AUTHORIZATION"]


@pytest.fixture
def api_schema(ops_token):
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", APP, headers={"Authorization": ops_token})


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_documented_and_never_with_a_500(case, ops_token):
    aim_at_seeded_objects(case)
    case.call_and_validate(headers={"Authorization": ops_token}, checks=CHECKS)
