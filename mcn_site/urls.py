from functools import wraps

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.urls import URLPattern, include, path
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from factory.admin import ops_status_view
from mcn_site import views
from mcn_site.lib.roles import is_ops

admin.site.site_header = "MCN OS"
admin.site.site_title = "MCN OS"
admin.site.index_title = "Control plane"


def ops_only(view):
    """django_rq's dashboard only checks is_staff; its buttons empty queues, so only ops get it."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_ops(request.user):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return guarded


rq_dashboard = get_admin_urlpatterns(view_wrapper=ops_only) + [
    URLPattern(p.pattern, ops_only(p.callback), p.default_args, p.name) for p in get_api_urlpatterns()
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/rq/", include((rq_dashboard, "django_rq"))),
    # The factory's ops status page (workers, queues, throughput): factory.admin, behind the admin login.
    path("admin/factory/status/", admin.site.admin_view(ops_status_view), name="factory_ops_status"),
    path("admin/", admin.site.urls),
    path("posts/", include("posts.urls")),
    path("schedules/", include("schedules.urls")),
    path("api/v1/", include("mcn_site.api_urls")),
    # The schema needs a token or a session (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]); the docs page a login.
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", views.media, name="media"),
]

handler400 = "mcn_site.views.bad_request"
handler404 = "mcn_site.views.not_found"
