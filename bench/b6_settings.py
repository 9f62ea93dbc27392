"""B6 only: the project's settings with the bench's URLconf (the API plus one trivial DRF view to compare with).

Not a deployment settings file: bench/storyboard_api.py starts the web server with DJANGO_SETTINGS_MODULE=b6_settings
so the baseline view is served by the same process, through the same middleware, as /api/v1/.
"""

from mcn_site.settings import *  # noqa: F403 - every real setting, unchanged

ROOT_URLCONF = "b6_urls"
