"""Schemathesis against the live schema: generated requests to every operation, every check.

The schema is fetched from /api/schema/ with an ops token and the requests go to the WSGI application in
this process (no server, no network), so the test database is the one seeded here. Each operation gets its
examples, the coverage phase's boundary cases (deterministic) and a bounded, seeded set of fuzzed cases,
positive and negative, all derandomized with a fixed seed; a run takes about 45 s on two cores (40 s of
CPU; up to 2.5 min when the cores are shared with other work).

Every default check runs: no 5xx, status codes, content types, headers and bodies as documented (errors
included), schema-valid requests accepted, schema-violating ones refused, auth not ignored, 405 for
undocumented methods. What a schema cannot say is listed in EXCLUSIONS below, each with its reason, and
is excused only where the answer shows it is that case.
"""

import re

import django_rq
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from mcn_site.lib import roles
from schedules.models import ScheduleRun
from tests.api.conftest import token_client
from tests.factories import make_artist, make_job, make_post, make_schedule, make_source, make_user, make_wardrobe
from tests.fakes.comfyui import FakeComfyUI

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(600)]

# Fixed, so a failure found once is found again (and CI does not meet a new one by chance).
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20261206,
        "checks": {
            # 412: an If-Match that matches the pattern but not the post's version now; 428: a write with neither
            # `version` nor If-Match (OpenAPI cannot say "one of this header and that body field").
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "412", "428", "429", "5xx"]
            },
        },
    }
)
# 400 codes that mean "not now, in this state" (the post's status, a locked shot): the schema says what a
# request may hold, not which state the object is in when it arrives.
STATE_CODES = {"bad_transition", "not_editable", "locked", "gone", "bad_order", "bad_status", "empty_storyboard"}
# Uploads whose content is checked beyond what a schema can say (pixels, audio format, size).
FILE_FIELDS = {"face_anchor", "full_body", "three_view_sheet", "preview", "sample_audio", "manual_asset"}
# Field errors about a name that must exist, or a format stricter than the schema's: an id of no row
# ("Invalid pk"), a time zone name that is not in the IANA database, an address Django's URL validator
# refuses (host names over 63 characters per label, ...) though it is a `uri`.
REFERENCE = re.compile(r"Invalid pk|is not an IANA time zone|^Enter a valid URL\.$")
# Text in a multipart form: the schema's pattern refuses NUL and blank text, but the generator's form
# encoding lets some through (a NUL, a whitespace-only list item); the server refuses them with a 400.
FORM_TEXT = re.compile(r"^Null characters are not allowed\.$|^This field may not be blank\.$")
# A schedule's fields depend on each other (kind and period decide which of weekdays, month_days, times and
# trigger_at are needed): OpenAPI 3.0 has no if/then to say so, the field descriptions do.
CROSS_FIELD_PATHS = {"/api/v1/schedules/", "/api/v1/schedules/{id}/"}
EXCLUSIONS = {
    "state": "positive_data_acceptance: a 400 whose code is one of STATE_CODES (the object's state decides)",
    "references": 'positive_data_acceptance: a 400 whose every field error is an id that does not exist ("Invalid '
    'pk"), a time zone or URL that does not exist (REFERENCE) or an uploaded file whose content is refused '
    '(FILE_FIELDS): the schema says "integer", "string", "uri" and "binary"',
    "form text": "positive_data_acceptance: a 400 for NUL or blank text in a multipart form (FORM_TEXT)",
    "cross-field": "positive_data_acceptance: a 400 invalid on a schedule write (CROSS_FIELD_PATHS)",
    "lenient": "negative_data_rejection: a body of the wrong type that DRF reads as the right one (0 for the text "
    '"0", "true" for true) or a multipart body that is no form at all (a PATCH without fields): '
    "accepted, and what is stored is a valid value",
}
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
    return schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", APP, config=CONFIG, headers={"Authorization": ops_token}
    )


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
    # Each generated request is a first attempt: an Idempotency-Key drawn twice with two bodies is a 422 by design.
    redis = django_rq.get_connection("default")
    for key in redis.scan_iter("idem:*"):
        redis.delete(key)
    headers = {"Authorization": ops_token}
    response = case.call(headers=headers)
    excused = excused_checks(case, response)
    case.validate_response(response, headers=headers, excluded_checks=excused, transport_kwargs={"headers": headers})


def excused_checks(case, response) -> list:
    """The checks EXCLUSIONS excuse for this answer (none for most)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):  # no body (204), or not a JSON object
        error = None
    error = error if isinstance(error, dict) else None
    if response.status_code == 400 and error and case.meta.generation.mode == GenerationMode.POSITIVE:
        fields = error.get("fields") or {}
        form = case.media_type == "multipart/form-data"
        references = fields and all(
            name.split(".")[0] in FILE_FIELDS
            or all(REFERENCE.search(message) or (form and FORM_TEXT.search(message)) for message in messages)
            for name, messages in fields.items()
        )
        cross_field = case.operation.path in CROSS_FIELD_PATHS and error.get("code") == "invalid"
        if error.get("code") in STATE_CODES or references or cross_field:
            return [positive_data_acceptance]
    if 200 <= response.status_code < 300 and case.meta.generation.mode == GenerationMode.NEGATIVE:
        description = str(getattr(case.meta.phase.data, "description", "") or "")
        negated = [location for location, info in case.meta.components.items() if info.mode == GenerationMode.NEGATIVE]
        body_only = [str(location) for location in negated] == [str(ParameterLocation.BODY)]
        if body_only and ("type" in description.lower() or case.media_type == "multipart/form-data"):
            return [negative_data_rejection]
    return []
