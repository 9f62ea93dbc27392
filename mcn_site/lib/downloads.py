"""Sending media files, and the signed links that let a webhook receiver fetch one without a login.

Who may have a file is asked before any of this (posts.selectors.media_visible_to, the API's
selectors); these helpers only name files safely, send them and sign them:

- `media_name(path)`: the stored name a request path stands for, or None (`..`, `//`, `./`, ...):
  a file is found only under the exact name a row stores, so the access check and the file agree.
- `media_response(request, name)`: Django streams the file (development) or, with
  MEDIA_ACCEL_REDIRECT, tells nginx to (an `X-Accel-Redirect` to its internal location).
- `signed_media_path(name)` / `signed_link_problem(name, query)`: `/media/<name>?expires=&signature=`,
  an HMAC (SECRET_KEY, django.core.signing) over the name and the expiry, good for
  MCN_SIGNED_URL_SECONDS.
"""

import posixpath
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core import signing
from django.http import FileResponse, Http404, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.http import content_disposition_header

SIGNING_SALT = "mcn.media-link"


def media_name(path: str) -> str | None:
    """The stored file name `path` stands for, or None when it is not one in canonical form.

    Stored names are relative, `/`-separated and normalized ("posts/final/post-1.mp4"); anything
    else (`../`, `./`, `//`, a leading `/`, a backslash, a NUL) names no file a row could store.
    """
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return None
    if posixpath.normpath(path) != path or path.split("/")[0] in ("..", "."):
        return None
    return path


def media_response(request, name: str, *, filename: str | None = None) -> HttpResponse:
    """The file `name` under MEDIA_ROOT (a canonical name, already authorized); Http404 when it is not there.

    `filename` makes it a download with that name (Content-Disposition: attachment).
    """
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / name).resolve()
    if root not in path.parents or not path.is_file():
        raise Http404("No such file.")
    if settings.MEDIA_ACCEL_REDIRECT:
        response = HttpResponse()
        # Percent-encoded: a header is Latin-1, a file name may not be; nginx decodes it.
        response["X-Accel-Redirect"] = settings.MEDIA_ACCEL_REDIRECT.rstrip("/") + "/" + quote(name, safe="/")
        del response["Content-Type"]  # nginx sets it from the file
        if filename:
            response["Content-Disposition"] = content_disposition_header(True, filename)
        return response
    return FileResponse(path.open("rb"), as_attachment=bool(filename), filename=filename or path.name)


def _signature(name: str, expires: int) -> str:
    return signing.Signer(salt=SIGNING_SALT).signature(f"{expires}:{name}")


def signed_media_path(name: str, *, now: datetime | None = None) -> tuple[str, datetime]:
    """A path that fetches `name` without a login until the returned instant (MCN_SIGNED_URL_SECONDS on)."""
    now = now or timezone.now()
    expires = int(now.timestamp()) + settings.MCN_SIGNED_URL_SECONDS
    query = urlencode({"expires": expires, "signature": _signature(name, expires)})
    return f"/{settings.MEDIA_URL.strip('/')}/{quote(name, safe='/')}?{query}", datetime.fromtimestamp(expires, UTC)


def is_signed_link(query) -> bool:
    """Whether a request carries a signed link's parameters (then nothing but the signature authorizes it)."""
    return "signature" in query or "expires" in query


def signed_link_problem(name: str | None, query, *, now: datetime | None = None) -> str:
    """Why the signed link (`expires`, `signature` in `query`) does not open `name`; empty when it does."""
    expires, signature = query.get("expires", ""), query.get("signature", "")
    if name is None or not expires.isdigit() or len(expires) > 12 or not signature:
        return "This link is incomplete or altered: use the whole link from the webhook, unchanged."
    if not constant_time_compare(signature, _signature(name, int(expires))):
        return "This link's signature does not match this file: use the whole link from the webhook, unchanged."
    if int(expires) < (now or timezone.now()).timestamp():
        when = datetime.fromtimestamp(int(expires), UTC).isoformat()
        return (
            f"This link expired at {when}. Fetch the file through the API with a token "
            "(GET /api/v1/posts/<id>/video) instead."
        )
    return ""
