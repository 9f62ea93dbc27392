"""Start-up checks of the factory's configuration (run by `manage.py check` and every server start)."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, register

REDIS_SCHEMES = {"redis", "rediss", "unix"}


@register()
def check_redis_url(app_configs, **kwargs):
    url = settings.REDIS_URL
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        return [
            Error(
                f"REDIS_URL={url!r} has no redis scheme.",
                hint="Use redis://host:6379/0, rediss://... for TLS, or unix:///path/to/redis.sock.",
                id="factory.E001",
            )
        ]
    if parts.scheme != "unix" and not parts.hostname:
        return [Error(f"REDIS_URL={url!r} names no host.", hint="e.g. redis://127.0.0.1:6379/0", id="factory.E002")]
    return []
