from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from mcn_site import views

admin.site.site_header = "MCN OS"
admin.site.site_title = "MCN OS"
admin.site.index_title = "Control plane"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", views.media, name="media"),
]
