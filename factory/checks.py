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


@register()
def check_comfyui_settings(app_configs, **kwargs):
    errors = []
    parts = urlsplit(settings.COMFYUI_URL)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        errors.append(
            Error(
                f"COMFYUI_URL={settings.COMFYUI_URL!r} has no http(s) scheme or host.",
                hint="e.g. http://10.0.0.5:8188 (keep ComfyUI on a private network: it has no authentication).",
                id="factory.E003",
            )
        )
    if settings.FACTORY_JOB_DEADLINE >= settings.RQ_DEFAULT_TIMEOUT:
        errors.append(
            Error(
                f"FACTORY_JOB_DEADLINE ({settings.FACTORY_JOB_DEADLINE}s) must be below RQ_DEFAULT_TIMEOUT "
                f"({settings.RQ_DEFAULT_TIMEOUT}s), or rq kills jobs before they can fail cleanly.",
                id="factory.E004",
            )
        )
    if settings.FACTORY_FREE_AFTER_JOB not in {"none", "unload_models", "free_memory"}:
        errors.append(
            Error(
                f"FACTORY_FREE_AFTER_JOB={settings.FACTORY_FREE_AFTER_JOB!r}: use none, unload_models or free_memory.",
                id="factory.E005",
            )
        )
    bad = [d for d in settings.FACTORY_UNREACHABLE_RETRIES if not d.isdigit()]
    if bad:
        errors.append(
            Error(
                f"FACTORY_UNREACHABLE_RETRIES has non-numbers: {', '.join(bad)}.",
                hint="e.g. 10,30,60",
                id="factory.E006",
            )
        )
    return errors
