"""Project-level endpoints: liveness, readiness, metrics, and media for the members of its artist."""

import hmac

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.defaults import bad_request as django_bad_request
from django.views.defaults import page_not_found
from prometheus_client import CONTENT_TYPE_LATEST

from mcn_site import health
from mcn_site.lib.api import bad_request_response as api_bad_request_response
from mcn_site.lib.downloads import is_signed_link, media_name, media_response, signed_link_problem
from mcn_site.lib.roles import is_ops
from mcn_site.metrics import exposition
from posts.selectors import media_visible_to


def healthz(request):
    """Liveness for load balancers and the start script: the process answers."""
    return JsonResponse({"status": "ok"})


def _bearer_matches(request, token: str) -> bool:
    """`Authorization: Bearer <token>` with the configured token (never matches when none is configured)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _ops_session(request) -> bool:
    """Ops signed in (worker names and hosts are infrastructure, not a producer's business)."""
    try:
        return is_ops(request.user)
    except Exception:  # the session store is the database: when it is down, nobody is signed in
        return False


@never_cache
def readyz(request):
    """Readiness: 200 when every check passes, 503 naming the failing ones.

    Anyone gets ok/fail per check (load balancers probe anonymously); ops signed in, or a caller
    with `Authorization: Bearer $MCN_HEALTH_TOKEN`, also get latencies, messages and worker names.
    """
    checks = health.readiness()
    ready = all(check.ok for check in checks)
    body = {"status": "ready" if ready else "unready", "checks": {c.name: "ok" if c.ok else "fail" for c in checks}}
    if _bearer_matches(request, settings.MCN_HEALTH_TOKEN) or _ops_session(request):
        body["details"] = {
            c.name: {"ok": c.ok, "latency_ms": c.latency_ms, "message": c.message, **c.data} for c in checks
        }
    return JsonResponse(body, status=200 if ready else 503)


@never_cache
def metrics(request):
    """Prometheus text format, computed from the database and Redis at scrape time (mcn_site.metrics)."""
    if not (_bearer_matches(request, settings.MCN_METRICS_TOKEN) or _ops_session(request)):
        if not settings.MCN_METRICS_TOKEN:
            message = "Metrics are off: set MCN_METRICS_TOKEN and scrape with Authorization: Bearer <token>."
            return JsonResponse({"error": {"code": "forbidden", "message": message, "fields": {}}}, status=403)
        message = "Send Authorization: Bearer <MCN_METRICS_TOKEN>."
        response = JsonResponse({"error": {"code": "unauthorized", "message": message, "fields": {}}}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(now=timezone.now()), content_type=CONTENT_TYPE_LATEST)


def media(request, path: str):
    """A media file for a user who may see its artist (posts.selectors.media_visible_to), or for a signed link.

    Anyone else gets a 404, the same as for a missing file (a 404 does not confirm that a guessed
    name exists); anonymous visitors without a signed link are sent to log in. With
    MEDIA_ACCEL_REDIRECT set, nginx sends the bytes after the same check (docs/deploy.md).
    """
    name = media_name(path)
    if is_signed_link(request.GET):
        # A webhook receiver without an account: the signature names the file (mcn_site.lib.downloads).
        problem = signed_link_problem(name, request.GET)
        if problem:
            return JsonResponse({"error": {"code": "bad_link", "message": problem, "fields": {}}}, status=403)
        return media_response(request, name)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if name is None or not media_visible_to(user=request.user, name=name):
        raise Http404("No such file.")
    return media_response(request, name)


def bad_request(request, exception=None):
    """400s Django answers itself (a body over its limit, too many fields): the API's error shape under /api/."""
    if request.path.startswith("/api/"):
        return api_bad_request_response(exception)
    return django_bad_request(request, exception)


def not_found(request, exception=None):
    """404s: the API's error shape under /api/ (integrations parse JSON), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        body = {"error": {"code": "not_found", "message": "No such endpoint or object.", "fields": {}}}
        return JsonResponse(body, status=404)
    return page_not_found(request, exception)
