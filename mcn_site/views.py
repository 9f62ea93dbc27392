"""Project-level endpoints: liveness, and media behind a login."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.views.static import serve


def healthz(request):
    """Liveness for load balancers and the start script: the process answers."""
    return JsonResponse({"status": "ok"})


@login_required
def media(request, path: str):
    """Uploaded media for signed-in staff only: face anchors and drafts are not public.

    Served by Django for a single-host install; a larger deployment points
    MEDIA_URL at object storage with signed URLs instead.
    """
    return serve(request, path, document_root=settings.MEDIA_ROOT)
