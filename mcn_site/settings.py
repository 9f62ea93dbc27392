"""MCN OS settings: one file, every deployment value from the environment.

Defaults are safe for a laptop: SQLite under var/, an embedded Redis started by
`manage.py start`, DEBUG on only when asked for. Production differs by
environment values (see .env.example), never by another settings file.
"""

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from mcn_site.lib import devenv
from mcn_site.lib.env import env_bool, env_int, env_list, env_str, env_timezone

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MCN_VAR_DIR", str(BASE_DIR / "var")))
# Beside a running `make run`: DEBUG and its embedded Redis's REDIS_URL, for what the environment
# leaves unset (mcn_site/lib/devenv.py). Read before any other setting.
devenv.apply(devenv.dev_env_file(VAR_DIR))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (DEBUG=1 allows a dev key; "
            "commands run beside `make run` get DEBUG=1 from it)."
        )
    SECRET_KEY = "dev-only-insecure-key-do-not-deploy"  # noqa: S105 - DEBUG only
# Rotation: the new key signs, the old ones listed here still verify (sessions, password-reset links,
# signed values) until they are dropped from the list (docs/deploy.md, "Rotating secrets").
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_rq",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, not a CDN
    "artists",
    "posts",
    "schedules",
    "factory",
    "mcn_site",  # project-wide operations: manage.py backup / restore (mcn_site/backup.py)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy on every response (CONTENT_SECURITY_POLICY below)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mcn_site.urls"
WSGI_APPLICATION = "mcn_site.wsgi.application"
ASGI_APPLICATION = "mcn_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite under var/ by default; DATABASE_URL (postgres://...) selects PostgreSQL.
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0))
    }
except ValueError as error:
    raise ImproperlyConfigured(f"DATABASE_URL cannot be used: {error}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the workers are separate processes writing one file: WAL lets readers
    # run beside a writer, IMMEDIATE takes the write lock up front (no deadlock on upgrade), and
    # writers wait for each other instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # Tests start real worker processes, so the test database is a file they can open too
    # (one per test run: two runs side by side must not share it).
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: django-rq queues and the Channels layer. `make run` (scripts/dev.py) sets REDIS_URL to its
# embedded server when none is configured, and publishes it in var/dev.env for commands beside it.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# GPU pools: named sets of GPU machines (e.g. "video" for the 48 GB cards). The default pool always
# exists; MCN_GPU_POOLS names the others, the same list on every machine (web, workers, reconciler).
# A workflow template names its pool; a GPU worker serves one (`run_gpu_worker --pool`, MCN_GPU_POOL).
MCN_GPU_POOLS = [pool for pool in env_list("MCN_GPU_POOLS", []) if pool != "default"]
for _pool in MCN_GPU_POOLS:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,49}", _pool):
        raise ImproperlyConfigured(
            f"MCN_GPU_POOLS: {_pool!r} is not a pool name (lower-case letters, digits, - and _, e.g. video)."
        )
MCN_GPU_POOL = env_str("MCN_GPU_POOL", "default")  # the pool a GPU worker serves when --pool is not given

# The cost ledger: every price (factory.models.Rate) and every amount is in this one currency, so sums add up.
MCN_CURRENCY = env_str("MCN_CURRENCY", "USD").upper()
if not re.fullmatch(r"[A-Z]{3}", MCN_CURRENCY):
    raise ImproperlyConfigured(f"MCN_CURRENCY={MCN_CURRENCY!r} is not an ISO 4217 code (e.g. USD, CNY, EUR).")

# Queues: "gpu-vip" before "gpu" for ComfyUI jobs (a GPU worker listens to both, in that
# order); "cpu" for TTS, LLM and assembly; "default" for small housekeeping. Each extra GPU pool
# has its own pair, "gpu-vip.<pool>" and "gpu.<pool>" (factory.queues.gpu_queues names them).
RQ_DEFAULT_TIMEOUT = env_int("RQ_DEFAULT_TIMEOUT", 3600, minimum=60)
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": RQ_DEFAULT_TIMEOUT}
    for name in (
        "gpu-vip",
        "gpu",
        "cpu",
        "default",
        *(f"{base}.{pool}" for pool in MCN_GPU_POOLS for base in ("gpu-vip", "gpu")),
    )
}

# --- Factory: the ComfyUI server a GPU worker drives (each worker process gets its own).
COMFYUI_URL = env_str("COMFYUI_URL", "http://127.0.0.1:8188")
FACTORY_CONNECT_TIMEOUT = env_int("FACTORY_CONNECT_TIMEOUT", 3, minimum=1)
FACTORY_READ_TIMEOUT = env_int("FACTORY_READ_TIMEOUT", 30, minimum=1)
FACTORY_JOB_DEADLINE = env_int("FACTORY_JOB_DEADLINE", 3000, minimum=10)  # seconds; kept below RQ_DEFAULT_TIMEOUT
FACTORY_STALL_SECONDS = env_int("FACTORY_STALL_SECONDS", 120, minimum=1)  # no progress for this long: stalled
FACTORY_POLL_SECONDS = env_int("FACTORY_POLL_SECONDS", 5, minimum=1)  # /history poll beside the socket
FACTORY_MAX_ATTEMPTS = env_int("FACTORY_MAX_ATTEMPTS", 3, minimum=1)
FACTORY_UNREACHABLE_RETRIES = env_list("FACTORY_UNREACHABLE_RETRIES", ["10", "30", "60", "120", "300"])
# auto: unload ComfyUI's models only when the next job runs another workflow | none | unload_models | free_memory
FACTORY_FREE_AFTER_JOB = env_str("FACTORY_FREE_AFTER_JOB", "auto")
# GPU workers take queued jobs of the workflow their server has loaded first; no job is passed over once it has
# waited this long (seconds). 0: plain FIFO (factory/dispatch.py).
FACTORY_AFFINITY_MAX_WAIT_SECONDS = env_int("FACTORY_AFFINITY_MAX_WAIT_SECONDS", 300, minimum=0)
FACTORY_HEARTBEAT_SECONDS = env_int("FACTORY_HEARTBEAT_SECONDS", 10, minimum=1)
# A running job whose worker has said nothing for this long is presumed dead (killed) and re-driven.
FACTORY_STALE_SECONDS = env_int("FACTORY_STALE_SECONDS", 30, minimum=2)
FACTORY_PREFLIGHT_CACHE_SECONDS = env_int("FACTORY_PREFLIGHT_CACHE_SECONDS", 300, minimum=0)

# --- Voice: a CosyVoice FastAPI server (runtime/python/fastapi/server.py). None: silent animatics.
COSYVOICE_URL = env_str("COSYVOICE_URL", "")
# The model's real output rate: the server streams bare PCM. 24000 for CosyVoice 2/3, 22050 for v1.
COSYVOICE_SAMPLE_RATE = env_int("COSYVOICE_SAMPLE_RATE", 24000, minimum=8000)
COSYVOICE_TIMEOUT = env_int("COSYVOICE_TIMEOUT", 120, minimum=1)  # seconds one synthesis may take
# Which model the server loaded (e.g. CosyVoice2-0.5B): the server does not say, and each voice records it.
COSYVOICE_MODEL = env_str("COSYVOICE_MODEL", "")

# --- Render (ffmpeg assembly on the CPU queue)
FFMPEG_BINARY = env_str("FFMPEG_BINARY", "")  # empty: the imageio-ffmpeg binary, else ffmpeg on PATH
MCN_FONT_FILE = env_str("MCN_FONT_FILE", "")  # CJK-capable font for captions and title cards; empty: found
# 0: skip the machine's fonts and use the bundled Noto Sans CJK (mcn_site/lib/fonts.py): the same captions everywhere.
MCN_SYSTEM_FONTS = env_bool("MCN_SYSTEM_FONTS", True)
MCN_MUSIC_VOLUME = env_int("MCN_MUSIC_VOLUME_PERCENT", 25, minimum=0) / 100  # background music level
# The release written into each final MP4's provenance metadata; empty: pyproject.toml's version.
_PROJECT = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]
MCN_VERSION = env_str("MCN_VERSION", "") or _PROJECT["version"]

# --- Director (LLM): any OpenAI-compatible chat-completions endpoint. No key: the offline rule-based director.
LLM_BASE_URL = env_str("LLM_BASE_URL", "https://api.deepseek.com/v1")
LLM_MODEL = env_str("LLM_MODEL", "deepseek-chat")
LLM_API_KEY = env_str("LLM_API_KEY", "")  # never stored in the DB nor logged
LLM_TIMEOUT = env_int("LLM_TIMEOUT", 60, minimum=1)  # seconds one LLM call may take in total

# --- Webhooks (posts.webhooks): signed POSTs to the integrations' endpoints, configured in the admin.
# 1: endpoints may be on loopback or private networks (on-prem receivers, tests). Link-local (cloud
# metadata), multicast and reserved addresses stay refused either way.
MCN_WEBHOOK_ALLOW_PRIVATE = env_bool("MCN_WEBHOOK_ALLOW_PRIVATE", False)
MCN_WEBHOOK_TIMEOUT = env_int("MCN_WEBHOOK_TIMEOUT", 10, minimum=1)  # seconds one delivery attempt may take
# Seconds to wait before each retry after a 5xx, 408, 429, timeout or connection error: 6 attempts in all.
try:
    MCN_WEBHOOK_RETRY_DELAYS = [
        float(value) for value in env_list("MCN_WEBHOOK_RETRY_DELAYS", ["30", "120", "600", "3600", "21600"])
    ]
except ValueError:
    raise ImproperlyConfigured("MCN_WEBHOOK_RETRY_DELAYS must be seconds and commas, e.g. 30,120,600.") from None
if any(delay < 0 for delay in MCN_WEBHOOK_RETRY_DELAYS):
    raise ImproperlyConfigured("MCN_WEBHOOK_RETRY_DELAYS cannot be negative.")

# Enqueue at once: services already ring rq in transaction.on_commit; django_rq's own deferral
# would make enqueue() return None inside an outer transaction.
# `rqworker` runs factory.worker.CpuWorker: a killed work horse's job is queued again at once.
RQ = {"COMMIT_MODE": "auto", "WORKER_CLASS": "factory.worker.CpuWorker"}

# The queue dashboard lives at /admin/rq/ for ops only (mcn_site.urls); no admin entry for every staff user.
RQ_SHOW_ADMIN_LINK = False

# The pub/sub layer, not the core one: under bursts the core layer silently drops messages past
# its per-channel capacity; pub/sub delivers to whoever is connected (bench/realtime_layers.py).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CHANNELS_PREFIX", "mcn")},
    }
}

# Shared state between web processes: the API's throttle counters live in Redis, not per process.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "mcn"}
}

# --- Integration API (/api/v1/, schema at /api/schema/, docs at /api/docs/)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "artists.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "mcn_site.lib.api.Pagination",
    "DEFAULT_FILTER_BACKENDS": [
        "mcn_site.lib.api.FilterBackend",  # django-filter, booleans strict
        "rest_framework.filters.OrderingFilter",
    ],
    "EXCEPTION_HANDLER": "mcn_site.lib.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "mcn_site.lib.api_schema.AutoSchema",  # JSON bodies, multipart where a file goes
    # Per token (or per signed-in user): the actions that start LLM or GPU work (generate, render).
    "DEFAULT_THROTTLE_RATES": {"expensive": env_str("MCN_API_EXPENSIVE_RATE", "30/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MCN OS API",
    "VERSION": "1",
    "DESCRIPTION": """\
The integration API of MCN OS: artists, schedules, posts and their storyboards, factory jobs.

**Authentication.** Ask ops for a token (admin: *Artists > API tokens > Add*; the key is shown once)
and send it on every request as `Authorization: Token mcn_xxxxxxxx_...` (`Bearer` works too).
A token acts as its user: the same role and the same artists. In the browser, your admin login works.

**Errors** share one shape: `{"error": {"code": "...", "message": "...", "fields": {"path": ["..."]}}}`,
including what the server refuses before reading a request: a body over its limit (413 `too_large`,
the message names the limit), too many fields (400 `too_many_fields`), malformed JSON or multipart
(400 `parse_error`), another content type (415). An object you may not see is a 404.

**Concurrency.** Posts carry a `version` (also sent as `ETag: "v<version>"`). A write sends it back as
`If-Match: "v<version>"` (412 if the post moved on) or as `version` in the body (409 `stale`); with
neither it is a 428 `precondition_required`.

**Retries.** Send an `Idempotency-Key` header (1 to 200 printable ASCII characters, no spaces: a UUID)
on action POSTs: a retry with the same key returns the first answer (`Idempotent-Replayed: true`) and
starts nothing new.

**Lists** are paged: `page` from 1 (a page past the last is a 404), `page_size` from 1 (at most 200 are
returned). A filter given an empty value (`?status=`) is not applied.
""",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "mcn_site.lib.api_schema.document_shared_answers",  # 413 on bodies; empty filters, 404 past the last page
    ],
    "COMPONENT_SPLIT_REQUEST": True,  # multipart uploads and read-only fields get their own request schemas
    # Many models have a `status` or a `kind`: name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "PostStatusEnum": "posts.models.PostStatus",
        "ShotStatusEnum": "posts.models.ShotStatus",
        "ShotKindEnum": "posts.models.ShotKind",
        "PostEventKindEnum": "posts.models.PostEvent.Kind",
        "JobStatusEnum": "factory.models.JobStatus",
        "JobKindEnum": "factory.models.JobKind",
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True  # stored in UTC, always
TIME_ZONE = env_timezone("TIME_ZONE", "UTC")
# The zone a new schedule starts with (each schedule keeps its own).
MCN_DEFAULT_SCHEDULE_TIMEZONE = env_timezone("MCN_DEFAULT_SCHEDULE_TIMEZONE", "Asia/Shanghai")
# A slot the scheduler reaches later than this (it was down) is recorded as missed, not fired.
MCN_SCHEDULE_GRACE = timedelta(minutes=env_int("MCN_SCHEDULE_GRACE_MINUTES", 60, minimum=0))

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Serve straight from the apps' static folders: no collectstatic step to forget on a single host.
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Production: after the login check, hand the file to nginx's internal location (docs/deploy.md).
MEDIA_ACCEL_REDIRECT = env_str("MEDIA_ACCEL_REDIRECT", "")
# How long a signed media link (webhook payloads' video_url) opens its file without a login: 24 h.
MCN_SIGNED_URL_SECONDS = env_int("MCN_SIGNED_URL_SECONDS", 86400, minimum=60)
# Uploads are read into memory up to this size; validators cap the real limits per field.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Upload limits (bytes) for producer-supplied media.
MCN_MAX_IMAGE_BYTES = env_int("MCN_MAX_IMAGE_BYTES", 20 * 1024 * 1024, minimum=1)
MCN_MAX_VIDEO_BYTES = env_int("MCN_MAX_VIDEO_BYTES", 500 * 1024 * 1024, minimum=1)
MCN_MAX_AUDIO_BYTES = env_int("MCN_MAX_AUDIO_BYTES", 20 * 1024 * 1024, minimum=1)
# Pixels (width x height) an uploaded image may have, read from its header before anything is decoded:
# a few-KB PNG can claim 30000x30000 (a decompression bomb). 50 MP holds 8K and 48 MP phone photos.
MCN_MAX_IMAGE_PIXELS = env_int("MCN_MAX_IMAGE_PIXELS", 50_000_000, minimum=1)
# Shots one post may have: far beyond any short video (a minute at a cut a second is 60), so the
# storyboard page, the director and every storyboard save stay small.
MCN_MAX_SHOTS_PER_POST = env_int("MCN_MAX_SHOTS_PER_POST", 200, minimum=1)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"  # nothing of ours is framed (the admin's related-object popups are windows)

# --- HTTPS behind nginx (docs/deploy.md). All off by default, so a laptop on plain http works.
# SECURE_PROXY_SSL_HEADER names the header nginx sets to "https" (X-Forwarded-Proto): only set it
# when uvicorn listens on 127.0.0.1 behind that nginx, or a client could claim https itself.
_proxy_header = env_str("SECURE_PROXY_SSL_HEADER")
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
# Behind a TLS proxy, plain-http requests are redirected to https unless told otherwise; probes on
# the private network (health, readiness, metrics scrapes) reach uvicorn directly and are not.
# (Empty counts as unset, so the .env.example line keeps the default.)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", bool(_proxy_header))
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)/?$"]
# HSTS: browsers refuse plain http for this long. Start small (3600), raise to a year once all is well.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# Content-Security-Policy (django-csp) on every page: scripts only from our own static files, never inline,
# so an injected <script> or onclick= does not run (django_rq's one inline script is allowed by its hash,
# mcn_site/urls.py). Inline styles stay allowed: they run no code, pages set computed positions and
# artist colours with style="", Django's admin and django_rq still carry <style> blocks, and img-src,
# font-src and connect-src 'self' leave an injected style no way to send data elsewhere. connect-src
# 'self' covers the page's own ws:/wss: socket.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],  # Swagger UI and the admin draw small data: SVGs
        "media-src": ["'self'", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'self'"],
    }
}

# Logs go to stderr: plain text, or LOG_FORMAT=json for one JSON object a line (log shippers).
# Lines written inside mcn_site.lib.logs.log_context carry job_id, subject, post_id and worker.
LOG_FORMAT = env_str("LOG_FORMAT").lower() or "plain"
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "mcn_site.lib.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"},
        "json": {"()": "mcn_site.lib.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Health and metrics. /healthz and /readyz answer anyone; their details (and /metrics) need a
# staff login or `Authorization: Bearer <token>`. Empty: no token works (/metrics then answers 403).
MCN_HEALTH_TOKEN = env_str("MCN_HEALTH_TOKEN", "")
MCN_METRICS_TOKEN = env_str("MCN_METRICS_TOKEN", "")
