"""Who may call what on the site's pages and their JSON endpoints: every URL that is neither the API nor the admin.

The API has its own matrix (tests/api/test_permission_matrix.py) and the admin's model pages theirs
(tests/access/test_admin.py). Here every other route of the root URLconf is discovered, so a new page
or endpoint fails `test_every_page_route_has_a_row` until it gets a row in PAGES below, saying per
caller what a request gets:

    OK     allowed: anything but a login redirect, 401/403/404/405 and never a 500 (an empty body may be a 400)
    LOGIN  a redirect to the login page (anonymous)
    403    the role may not do this (the model permission the API checks: posts.selectors.SHOT_PERMS, ...)
    404    the object is another team's, or the page is ops-only and does not exist for others

Callers: A anonymous, then X P R O as in tests/access/conftest.py. Rows may name a route prefix
("admin/rq/"): every route under it gets that row. Every answer carries the Content-Security-Policy.
"""

import django_rq
import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rq import Worker

from posts.models import PostStatus
from tests.access.conftest import ROLES
from tests.factories import make_shot_workflow

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

OK, LOGIN = "ok", "login"
CALLERS = "A" + ROLES


def row(anonymous=LOGIN, **roles) -> dict[str, str | int]:
    """Anonymous gets `anonymous` (a login redirect unless said); each role OK unless named."""
    return {"A": anonymous, **{role: roles.get(role, OK) for role in ROLES}}


EVERYONE = row(anonymous=OK, X=OK)
SIGNED_IN = row()
MEMBERS = row(X=404)
MEMBER_EDITORS = row(X=404, R=403)  # the shots: a reviewer's role lacks posts.add/change/delete_shot
OPS_PAGE = row(X=404, P=404, R=404)  # ops-only pages do not exist for anyone else
OPS_PAGE_NOTHING_THERE = row(X=404, P=404, R=404, O=404)

# (method, route) -> verdict per caller. Routes as the URLconf spells them (str(pattern), joined).
PAGES: dict[tuple[str, str], dict[str, str | int]] = {
    ("GET", ""): EVERYONE,  # a redirect to the admin's index
    ("GET", "admin/rq/"): OPS_PAGE,  # django_rq's dashboard, behind mcn_site.urls.ops_only: every route below
    # ... where the test has no such object, ops get django_rq's 404 too (nobody else ever gets further)
    ("GET", "admin/rq/queues/<int:queue_index>/<str:job_id>/results/<str:result_id>/"): OPS_PAGE_NOTHING_THERE,
    ("GET", "admin/rq/cron-schedulers/<int:connection_index>/<str:scheduler_name>/"): OPS_PAGE_NOTHING_THERE,
    ("GET", "admin/rq/cron-schedulers/<int:connection_index>/<str:scheduler_name>/jobs/<path:cron_job_name>/"): (
        OPS_PAGE_NOTHING_THERE
    ),
    ("POST", "admin/rq/queues/<int:queue_index>/<str:job_id>/stop/"): OPS_PAGE,  # POST only
    ("GET", "admin/factory/status/"): row(X=403, P=403, R=403),  # the admin's login, then factory.view_job
    # posts.views: the post list, the storyboard page and its JSON endpoints
    ("GET", "posts/"): SIGNED_IN,
    ("GET", "posts/<int:post_id>/"): MEMBERS,
    ("GET", "posts/<int:post_id>/state"): MEMBERS,
    ("POST", "posts/<int:post_id>/shots"): MEMBER_EDITORS,
    ("POST", "posts/<int:post_id>/shots/reorder"): MEMBER_EDITORS,
    ("POST", "posts/<int:post_id>/shots/<int:shot_id>"): MEMBER_EDITORS,
    ("PATCH", "posts/<int:post_id>/shots/<int:shot_id>"): MEMBER_EDITORS,
    ("POST", "posts/<int:post_id>/shots/<int:shot_id>/delete"): MEMBER_EDITORS,
    ("POST", "posts/<int:post_id>/shots/<int:shot_id>/lock"): MEMBER_EDITORS,
    ("POST", "posts/<int:post_id>/shots/<int:shot_id>/asset"): MEMBER_EDITORS,
    ("POST", "posts/<int:post_id>/shots/<int:shot_id>/generate"): MEMBER_EDITORS,
    ("POST", "posts/<int:post_id>/shots/<int:shot_id>/revoice"): MEMBER_EDITORS,
    ("POST", "posts/<int:post_id>/actions/<str:action>"): MEMBER_EDITORS,  # action=generate; all: ACTIONS
    # schedules.views
    ("GET", "schedules/"): SIGNED_IN,
    # the API's schema and docs (the schema needs a session or a token: SPECTACULAR_SETTINGS)
    ("GET", "api/schema/"): row(anonymous=401),
    ("GET", "api/docs/"): SIGNED_IN,
    # mcn_site.views: probes and metrics (no MCN_METRICS_TOKEN here: ops signed in only)
    ("GET", "healthz"): EVERYONE,
    ("GET", "readyz"): EVERYONE,
    ("GET", "metrics"): row(anonymous=403, X=403, P=403, R=403),
    # A file nobody has: the same 404 for everyone signed in. Per-artist media files have their own
    # matrix beside the media view's tests.
    ("GET", "media/<path:path>"): row(X=404, P=404, R=404, O=404),
}

# The storyboard page's post actions (posts.views.post_action), each as the API's matching route allows.
ACTIONS = {
    "generate": MEMBER_EDITORS,  # the director writes shots: posts.change_shot
    PostStatus.REVIEW: MEMBERS,  # submit: posts.change_post (a reviewer has it, as in the API)
    PostStatus.APPROVED: row(X=403, P=403),  # posts.review_post, asked before the post is looked up
    PostStatus.REJECTED: row(X=403, P=403),
    PostStatus.RENDERING: MEMBERS,
    PostStatus.DRAFT: MEMBERS,
}


def page_routes() -> list[tuple[str, URLPattern, str]]:
    """(route, pattern, reversible name) of every route that is neither /api/v1/ nor admin.site's."""

    def walk(patterns, prefix: str, namespace: str):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                inner = ":".join(filter(None, [namespace, pattern.namespace]))
                yield from walk(pattern.url_patterns, route, inner)
            else:
                name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name or ""
                yield route, pattern, name, namespace

    found = []
    for route, pattern, name, namespace in walk(get_resolver().url_patterns, "", ""):
        if route.startswith("api/v1/") or namespace.split(":")[0] == "admin":
            continue
        found.append((route, pattern, name))
    return found


ROUTES = {route: (pattern, name) for route, pattern, name in page_routes()}


def row_for(method: str, route: str):
    if (method, route) in PAGES:
        return PAGES[(method, route)]
    prefixes = [r for m, r in PAGES if m == method and r.endswith("/") and r and route.startswith(r)]
    return PAGES[(method, max(prefixes, key=len))] if prefixes else None


def cases() -> list[tuple[str, str]]:
    """Each (method, route) to call: the explicit rows, and every route a prefix row covers."""
    found = set()
    for route in ROUTES:
        methods = {m for m, r in PAGES if r == route} or {
            m for m, r in PAGES if r.endswith("/") and r and route.startswith(r)
        }
        found |= {(method, route) for method in methods}
    return sorted(found, key=lambda case: (case[1], case[0]))


def test_every_page_route_has_a_row():
    routes = set(ROUTES)
    assert {"posts/<int:post_id>/shots", "schedules/", "healthz", "admin/factory/status/"} <= routes
    assert not any(r.startswith(("api/v1/", "admin/posts/")) for r in routes)
    missing = sorted(r for r in routes if not any(row_for(m, r) for m in ("GET", "POST", "PATCH")))
    assert not missing, f"Page routes without a row in PAGES (say who may call them): {missing}"
    stale = sorted(r for _, r in PAGES if r not in routes and not any(x.startswith(r) for x in routes if r))
    assert not stale, f"Rows for routes that no longer exist: {stale}"


@pytest.fixture
def params(people, settings):
    """A value for every parameter a page route takes: the world's post and shot, a real rq job."""
    settings.COMFYUI_URL = "http://127.0.0.1:9"  # nothing listens: nothing reaches a GPU
    make_shot_workflow()
    queue = django_rq.get_queue("default")
    job = queue.enqueue("builtins.print", "matrix")
    worker = Worker([queue], connection=queue.connection, name=f"matrix-{job.id}")
    worker.register_birth()  # django_rq's worker page is a 500 (an assert) for a worker it cannot find
    yield {
        "post_id": people["post"].pk,
        "shot_id": people["post"].shots.first().pk,
        "action": "generate",
        "queue_index": 0,
        "job_id": job.id,
        "result_id": "none",
        "key": worker.key,
        "scheduler_index": 0,
        "connection_index": 0,
        "scheduler_name": "none",
        "cron_job_name": "none",
        "path": "no/such/file.png",
        "token": "none",
    }
    job.delete()
    worker.register_death()


def url_of(route: str, params: dict) -> str:
    pattern, name = ROUTES[route]
    keys = getattr(pattern.pattern, "converters", None) or pattern.pattern.regex.groupindex
    if not name:
        return "/" + route
    return reverse(name, kwargs={key: params[key] for key in keys})


def call(client, method: str, url: str):
    """One request in a savepoint rolled back afterwards: a delete by one role leaves the row for the next."""
    with transaction.atomic():
        response = client.generic(method, url, data="{}", content_type="application/json")
        transaction.set_rollback(True)
    return response


def verdict(response) -> str | int:
    status = response.status_code
    if status in (301, 302) and "/login/" in response.get("Location", ""):
        return LOGIN
    if status in (401, 403, 404, 405):
        return status
    if status == 503 and b'"unready"' in response.content:
        return OK  # /readyz tells the truth about the test's machine (no workers): still an answer
    return OK if status < 500 else status


def ask_everyone(method: str, url: str, clients, anonymous) -> dict[str, str | int]:
    got = {}
    for caller in CALLERS:
        response = call(anonymous if caller == "A" else clients[caller], method, url)
        assert "script-src 'self'" in response.get("Content-Security-Policy", ""), f"{caller} {method} {url}"
        if caller != "A" and response.status_code == 403 and url.startswith("/posts/"):
            assert response.json()["error"], f"{caller} {method} {url}: a 403 without a message"
        got[caller] = verdict(response)
    return got


@pytest.mark.parametrize(("method", "route"), cases(), ids=[f"{m} {r}" for m, r in cases()])
def test_who_may_call_the_page(method, route, params, clients, client):
    expected = row_for(method, route)

    got = ask_everyone(method, url_of(route, params), clients, client)

    assert got == expected, f"{method} {route}: expected {expected}, got {got}"


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_who_may_run_each_storyboard_action(action, params, clients, client):
    url = url_of("posts/<int:post_id>/actions/<str:action>", {**params, "action": action})

    got = ask_everyone("POST", url, clients, client)

    assert got == ACTIONS[action], f"{action}: expected {ACTIONS[action]}, got {got}"
