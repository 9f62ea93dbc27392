from functools import wraps
from importlib.util import find_spec
from pathlib import Path

import django_rq
from csp.decorators import csp_update
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.urls import URLPattern, include, path
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from factory.admin import ops_status_view
from mcn_site import views
from mcn_site.lib.csp import inline_script_hashes
from mcn_site.lib.roles import is_ops

admin.site.site_header = "MCN OS"
admin.site.site_title = "MCN OS"
admin.site.index_title = "Control plane"


# django_rq's pages select jobs with a small inline script: the CSP allows exactly that script there.
RQ_INLINE_SCRIPTS = csp_update({"script-src": inline_script_hashes(Path(django_rq.__file__).parent / "templates")})


def ops_only(view):
    """django_rq's dashboard only checks is_staff; its buttons empty queues, so only ops get it."""

    @RQ_INLINE_SCRIPTS
    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_ops(request.user):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return guarded


# Its rq-scheduler page is a 500 without that package (not a dependency of ours): left out then.
HAS_RQ_SCHEDULER = find_spec("rq_scheduler") is not None
rq_dashboard = [
    p for p in get_admin_urlpatterns(view_wrapper=ops_only) if HAS_RQ_SCHEDULER or not p.name.endswith("scheduler_jobs")
] + [URLPattern(p.pattern, ops_only(p.callback), p.default_args, p.name) for p in get_api_urlpatterns()]

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
    # The split view serves its script from ?script, not inline: the page's CSP allows no inline script.
    path(
        "api/docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html")),
        name="api-docs",
    ),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", views.media, name="media"),
]

handler400 = "mcn_site.views.bad_request"
handler404 = "mcn_site.views.not_found"
