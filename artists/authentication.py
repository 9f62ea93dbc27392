"""API authentication by token: `Authorization: Token <key>` (or `Bearer <key>`).

A token acts as its user: the same role permissions and artist memberships as
their admin login. Unknown, malformed and revoked keys are a 401 that says which.
"""

import hmac
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from artists.models import ApiToken
from artists.services import api_token_hash, api_token_parse

# last_used_at is a hint for ops ("is this integration still alive?"), not an audit log:
# writing it once a minute at most keeps a busy integration from a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
KEYWORDS = ("token", "bearer")


class TokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in KEYWORDS:
            return None  # not ours: the session (or nothing) decides
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the header as `Authorization: Token <key>`.")
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("This API token is not valid.") from None
        prefix = api_token_parse(raw_key)
        token = ApiToken.objects.select_related("user").filter(prefix=prefix).first() if prefix is not None else None
        # Compare hashes in constant time even when no row matched, so timing tells nothing.
        stored = token.key_hash if token else "0" * 64
        if not hmac.compare_digest(stored, api_token_hash(raw_key)) or token is None:
            raise exceptions.AuthenticationFailed("This API token is not valid.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API token was revoked. Ask ops for a new one.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The user of this API token is inactive.")
        now = timezone.now()
        # The row just read says whether it is due: no write statement on most requests (on SQLite even
        # an UPDATE that matches nothing takes the database's write lock). The condition stays in the
        # UPDATE for two requests racing.
        stale = now - LAST_USED_RESOLUTION
        if token.last_used_at is None or token.last_used_at < stale:
            ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=token.pk).update(
                last_used_at=now
            )
        return token.user, token

    def authenticate_header(self, request) -> str:
        # A WWW-Authenticate value makes DRF answer 401 (not 403) to a request without credentials.
        return 'Token realm="api"'


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "artists.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token mcn_xxxxxxxx_...`: a key made in the admin under *Artists > API tokens*.",
        }
