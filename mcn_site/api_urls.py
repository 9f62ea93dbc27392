"""/api/v1/: every app's API routes, in one list (each app's `api.py` owns its own)."""

from artists import api as artists_api
from factory import api as factory_api
from posts import api as posts_api
from posts import webhooks_api
from schedules import api as schedules_api

urlpatterns = [
    *artists_api.urlpatterns,
    *schedules_api.urlpatterns,
    *posts_api.urlpatterns,
    *factory_api.urlpatterns,
    *webhooks_api.urlpatterns,
]
