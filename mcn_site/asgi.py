"""ASGI entry point: HTTP through Django, websockets through Channels.

Every socket passes the origin check and the session authentication first;
each consumer then authorizes with the same selector as the pages. A request body
larger than any upload we accept is refused (413) before it is read.

Served by uvicorn (mcn_site/lib/web_server.py, Procfile, docs/deploy.md), which
hands the body over in pieces as Django reads it (Django spools it to a temporary file),
so an upload costs disk, not its size in memory.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcn_site.settings")
# Django's ASGI handler gives each request its own connection objects (context-local), so a connection
# kept for reuse (DATABASE_CONN_MAX_AGE > 0, right for the workers) is left open after its request until
# the garbage collector finds it: 81 open in one web process under the load bench, PostgreSQL's
# max_connections reached. Django's advice under ASGI: close each request's connection (0).
os.environ["DATABASE_CONN_MAX_AGE"] = "0"
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs the app registry loaded above
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from mcn_site.lib.request_size import RequestSizeLimit, largest_request_bytes  # noqa: E402
from posts.consumers import StoryboardConsumer  # noqa: E402

websocket_urlpatterns = [
    path("ws/posts/<int:post_id>/", StoryboardConsumer.as_asgi()),
]

application = RequestSizeLimit(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    ),
    limit=largest_request_bytes(),
)
