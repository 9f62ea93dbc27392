"""Who may open what in the admin: every registered ModelAdmin's changelist, add and change pages, per caller.

The models are discovered from admin.site._registry, so a newly registered model fails
`test_every_registered_model_has_a_row` until ADMIN says who may open it. Verdicts:

    OK     the page opens (changelist, add)
    EDIT   the change page opens with a form that saves
    VIEW   the change page opens read-only (the role has view_ and not change_)
    403    the role lacks the model's permission
    404    the object is another team's (ScopedAdmin), or not the user's own (API tokens)

Anonymous is sent to the admin's login everywhere (checked for every page). The object of each change
page is made by OBJECTS below, belonging to the artist whose members P and R are.
"""

import uuid
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from artists.services import api_token_create
from factory.models import Rate, RateKind
from mcn_site.lib import roles
from posts.costs import cost_record
from posts.models import PromptTemplate, Webhook, WebhookDelivery, WebhookEvent
from schedules.models import ScheduleRun
from tests.access.conftest import ROLES
from tests.factories import (
    make_gpu_worker,
    make_job,
    make_postevent,
    make_schedule,
    make_shot_workflow,
    make_source,
    make_wardrobe,
)

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

OK, EDIT, VIEW = "ok", "edit", "view"
REGISTERED = sorted(f"{m._meta.app_label}.{m._meta.model_name}" for m in admin.site._registry)


def by_role(X, P, R, O) -> dict[str, str | int]:  # noqa: E741 - the roles' letters
    return {"X": X, "P": P, "R": R, "O": O}


def pages(*, changelist, add, change) -> dict[str, dict]:
    return {"changelist": changelist, "add": add, "change": change}


ALL_OK = by_role(OK, OK, OK, OK)
OPS_ONLY = by_role(403, 403, 403, OK)
OPS_EDIT = by_role(403, 403, 403, EDIT)
PRODUCERS_ADD = by_role(OK, OK, 403, OK)
NOBODY = by_role(403, 403, 403, 403)
LIBRARY = pages(changelist=ALL_OK, add=PRODUCERS_ADD, change=by_role(EDIT, EDIT, VIEW, EDIT))  # voices, ...
OPS_TABLE = pages(changelist=OPS_ONLY, add=OPS_ONLY, change=OPS_EDIT)

ADMIN: dict[str, dict[str, dict]] = {
    "artists.artist": pages(changelist=ALL_OK, add=PRODUCERS_ADD, change=by_role(404, EDIT, VIEW, EDIT)),
    "artists.voice": LIBRARY,
    "artists.wardrobe": LIBRARY,
    "artists.source": LIBRARY,
    # Each user's own tokens; ops everybody's. The object is P's token.
    "artists.apitoken": pages(changelist=ALL_OK, add=ALL_OK, change=by_role(404, EDIT, 404, EDIT)),
    # Staff accounts: ops give roles (mcn_site/admin.py); the object is P's account.
    "auth.user": pages(changelist=OPS_ONLY, add=OPS_ONLY, change=OPS_EDIT),
    "auth.group": pages(changelist=OPS_ONLY, add=NOBODY, change=by_role(403, 403, 403, VIEW)),  # roles: code
    # Jobs are made by the pipeline and moved by the page's Cancel / Retry actions, never edited as a form.
    "factory.job": pages(changelist=OPS_ONLY, add=NOBODY, change=by_role(403, 403, 403, VIEW)),
    "factory.workflowtemplate": OPS_TABLE,
    "factory.rate": OPS_TABLE,  # prices: ops only
    "factory.gpuworker": pages(changelist=OPS_ONLY, add=NOBODY, change=by_role(403, 403, 403, VIEW)),
    "posts.post": pages(changelist=ALL_OK, add=PRODUCERS_ADD, change=by_role(404, EDIT, EDIT, EDIT)),
    "posts.postevent": pages(changelist=ALL_OK, add=NOBODY, change=by_role(404, VIEW, VIEW, VIEW)),
    # The cost ledger: written by posts.costs only; each role reads its artists' rows.
    "posts.costentry": pages(changelist=ALL_OK, add=NOBODY, change=by_role(404, VIEW, VIEW, VIEW)),
    "posts.shotworkflow": OPS_TABLE,
    "posts.prompttemplate": OPS_TABLE,
    "posts.webhook": OPS_TABLE,
    "posts.webhookdelivery": pages(changelist=OPS_ONLY, add=NOBODY, change=by_role(403, 403, 403, VIEW)),
    "schedules.schedule": pages(changelist=ALL_OK, add=PRODUCERS_ADD, change=by_role(404, EDIT, VIEW, EDIT)),
    "schedules.schedulerun": pages(changelist=ALL_OK, add=NOBODY, change=by_role(404, VIEW, VIEW, VIEW)),
}


def objects(people) -> dict:
    """One object of every registered model, of the members' artist where it has one."""
    artist, post, users = people["artist"], people["post"], people["users"]
    schedule = make_schedule(artist=artist)
    job = make_job()
    webhook = Webhook.objects.create(
        name="n8n", url="https://example.com/hook", event_types=[WebhookEvent.POST_STATUS_CHANGED], artist=artist
    )
    token, _ = api_token_create(user=users["P"], name="matrix")
    return {
        "artists.artist": artist,
        "artists.voice": artist.voice,
        "artists.wardrobe": make_wardrobe(),
        "artists.source": make_source(),
        "artists.apitoken": token,
        "auth.user": users["P"],
        "auth.group": Group.objects.get(name=roles.PRODUCER),
        "factory.job": job,
        "factory.workflowtemplate": job.template,
        "factory.gpuworker": make_gpu_worker(),
        "factory.rate": Rate.objects.create(kind=RateKind.GPU_HOUR, price=Decimal("3.6")),
        "posts.post": post,
        "posts.postevent": make_postevent(post=post),
        "posts.costentry": cost_record(
            job_id=make_job(subject=f"post.{post.pk}/render", status="succeeded", finished_at=timezone.now()).pk
        ),
        "posts.shotworkflow": make_shot_workflow(),
        "posts.prompttemplate": PromptTemplate.objects.first(),
        "posts.webhook": webhook,
        "posts.webhookdelivery": WebhookDelivery.objects.create(
            webhook=webhook,
            uuid=uuid.uuid4(),
            event_id=uuid.uuid4(),
            event_type=WebhookEvent.POST_STATUS_CHANGED,
            event_at=timezone.now(),
        ),
        "schedules.schedule": schedule,
        "schedules.schedulerun": ScheduleRun.objects.create(
            schedule=schedule, slot_at=schedule.next_slot_at, outcome="missed"
        ),
    }


def test_every_registered_model_has_a_row():
    missing = sorted(set(REGISTERED) - set(ADMIN))
    assert not missing, f"Admin models without a row in ADMIN (say who may open them): {missing}"
    stale = sorted(set(ADMIN) - set(REGISTERED))
    assert not stale, f"Rows for models no longer registered: {stale}"


def verdict(response, view: str) -> str | int:
    if response.status_code in (403, 404):
        return response.status_code
    assert response.status_code == 200, (view, response.status_code, response.content[:300])
    if view != "change":
        return OK
    return EDIT if response.context["has_change_permission"] else VIEW


@pytest.mark.parametrize("label", REGISTERED)
def test_who_may_open_the_admin_pages(label, people, clients, client):
    target = objects(people)[label]
    app_label, model_name = label.split(".")
    urls = {
        "changelist": reverse(f"admin:{app_label}_{model_name}_changelist"),
        "add": reverse(f"admin:{app_label}_{model_name}_add"),
        "change": reverse(f"admin:{app_label}_{model_name}_change", args=[target.pk]),
    }
    got = {}
    for view, url in urls.items():
        anonymous = client.get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/"), url
        got[view] = {role: verdict(clients[role].get(url), view) for role in ROLES}

    assert got == ADMIN[label], f"{label}: expected {ADMIN[label]}, got {got}"
