"""Start-up checks of the factory's configuration (run by `manage.py check` and every server start)."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from factory import vram
from factory.render import RenderFailed, ffmpeg_binary
from mcn_site.lib.fonts import cjk_font

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
    if settings.FACTORY_FREE_AFTER_JOB not in vram.MODES:
        errors.append(
            Error(
                f"FACTORY_FREE_AFTER_JOB={settings.FACTORY_FREE_AFTER_JOB!r}: use {', '.join(vram.MODES)}.",
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


@register()
def check_render_tools(app_configs, **kwargs):
    """Renders need ffmpeg and a font that has Chinese: say so at start, not at the first render."""
    problems = []
    try:
        ffmpeg_binary()
    except RenderFailed as error:
        problems.append(Error(str(error), id="factory.E007"))
    try:
        font = cjk_font()
    except ImproperlyConfigured as error:
        problems.append(Error(str(error), hint="Point MCN_FONT_FILE at an existing .ttf/.otf/.ttc.", id="factory.E008"))
    else:
        if font is None:
            problems.append(
                CheckWarning(
                    "No CJK font found: captions and title cards in Chinese would show as empty boxes.",
                    hint="pip install -r requirements.txt (its manimgx-fonts-cjk wheel ships Noto Sans CJK), "
                    "or set MCN_FONT_FILE to a font with Chinese glyphs.",
                    id="factory.W001",
                )
            )
    return problems


@register(Tags.database)
def check_gpu_pools(app_configs, databases=None, **kwargs):
    """An active template whose GPU pool is not declared could never run: its queue does not exist.

    A database check: `manage.py migrate` runs it on every deploy, and `manage.py check --database default`.
    """
    from factory.models import WorkflowTemplate
    from factory.queues import pool_problem

    if not databases or "default" not in databases:
        return []
    try:
        used = set(
            WorkflowTemplate.objects.filter(active=True).order_by().values_list("gpu_pool", flat=True).distinct()
        )
    except DatabaseError:  # not migrated yet: nothing to check
        return []
    errors = []
    for pool in sorted(used):
        problem = pool_problem(pool)
        if problem:
            names = WorkflowTemplate.objects.filter(active=True, gpu_pool=pool).values_list("name", flat=True)
            errors.append(
                Error(
                    f"Active workflow templates use GPU pool “{pool}”, which is not declared: "
                    f"{', '.join(sorted(set(names)))}.",
                    hint=problem,
                    id="factory.E009",
                )
            )
    return errors
