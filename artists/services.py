"""Writes to artists' data. API tokens: made, hashed and revoked here only."""

import hashlib
import secrets

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from artists.models import ApiToken, Artist
from mcn_site.lib.months import parse_month
from mcn_site.lib.roles import is_ops

TOKEN_PREFIX = "mcn_"  # noqa: S105 - the public start of every key, not a secret


def api_token_hash(raw_key: str) -> str:
    """The SHA-256 hex of a key: what is stored and compared, never the key."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_token_parse(raw_key: str) -> str | None:
    """The lookup prefix of a key shaped like `mcn_<prefix>_<secret>`, or None when it is not one."""
    if not raw_key.startswith(TOKEN_PREFIX):
        return None
    prefix, _, secret = raw_key[len(TOKEN_PREFIX) :].partition("_")
    if len(prefix) != 8 or not secret:
        return None
    return prefix


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """Make a token for `user`; returns the row and the raw key, which exists nowhere else afterwards."""
    for _ in range(5):
        prefix = secrets.token_hex(4)
        raw_key = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        token = ApiToken(user=user, name=name.strip(), prefix=prefix, key_hash=api_token_hash(raw_key))
        token.full_clean()
        try:
            # Race: two tokens drawing the same 8-hex prefix; the unique index decides, the loser draws again.
            with transaction.atomic():
                token.save()
        except IntegrityError:
            continue
        return token, raw_key
    raise RuntimeError("Could not draw a free token prefix five times in a row.")


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token at once (idempotent: a revoked token keeps its first revocation time)."""
    now = timezone.now()
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    token.refresh_from_db(fields=["revoked_at"])
    return token


@transaction.atomic
def artist_budget_lift(*, artist_id: int, actor, month: str) -> Artist:
    """Lift the artist's monthly budget for `month` (YYYY-MM): production is no longer refused that month.

    Ops only (PermissionDenied otherwise). Returns the artist; who lifted it and when stay on the row.
    """
    if not is_ops(actor):
        raise PermissionDenied("Only ops may lift an artist's budget.")
    month = parse_month(month)
    Artist.objects.filter(pk=artist_id).update(
        budget_lifted_month=month, budget_lifted_by=actor, budget_lifted_at=timezone.now()
    )
    return Artist.objects.get(pk=artist_id)
