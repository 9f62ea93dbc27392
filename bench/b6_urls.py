"""B6 only: every real route (mcn_site.urls) plus /bench/trivial, the trivial DRF view B6 compares with."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from mcn_site.urls import handler404  # noqa: F401 - handler404 is read from here
from mcn_site.urls import urlpatterns as site_urlpatterns


class TrivialView(APIView):
    """The smallest DRF view: no authentication, no database, a constant answer."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [path("bench/trivial", TrivialView.as_view()), *site_urlpatterns]
