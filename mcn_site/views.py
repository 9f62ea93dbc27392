"""Project-level endpoints: liveness, and media behind a login."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import SuspiciousFileOperation
from django.http import Http404, HttpResponse, JsonResponse
from django.utils._os import safe_join
from django.views.defaults import page_not_found
from django.views.static import serve


def healthz(request):
    """Liveness for load balancers and the start script: the process answers."""
    return JsonResponse({"status": "ok"})


@login_required
def media(request, path: str):
    """Uploaded media for signed-in staff only: face anchors and drafts are not public.

    Django checks the login either way. With MEDIA_ACCEL_REDIRECT set, the web server sends the
    bytes (nginx `internal` location, see docs/deploy.md); otherwise Django does (development).
    """
    if settings.MEDIA_ACCEL_REDIRECT:
        try:
            safe_join(str(settings.MEDIA_ROOT), path)  # no ../ out of the media folder
        except SuspiciousFileOperation:
            raise Http404("No such file.") from None
        response = HttpResponse()
        response["X-Accel-Redirect"] = settings.MEDIA_ACCEL_REDIRECT.rstrip("/") + "/" + path.lstrip("/")
        del response["Content-Type"]  # nginx sets it from the file
        return response
    return serve(request, path, document_root=settings.MEDIA_ROOT)


def not_found(request, exception=None):
    """404s: the API's error shape under /api/ (integrations parse JSON), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        body = {"error": {"code": "not_found", "message": "No such endpoint or object.", "fields": {}}}
        return JsonResponse(body, status=404)
    return page_not_found(request, exception)
