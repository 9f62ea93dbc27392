"""Calendar months as the cost ledger names them: "YYYY-MM" in the site's time zone (settings.TIME_ZONE)."""

import re
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils import timezone

MONTH_PATTERN = r"^(19[7-9]\d|[2-9]\d{3})-(0[1-9]|1[0-2])$"  # 1970-01 to 9999-12 (also in the API schema)
MONTH_RE = re.compile(MONTH_PATTERN)


def month_of(instant: datetime | None = None) -> str:
    """The month an instant falls in (default: now), e.g. "2026-12"."""
    return timezone.localtime(instant or timezone.now()).strftime("%Y-%m")


def parse_month(text: str) -> str:
    """A "YYYY-MM" month as given, or ValidationError naming the expected shape."""
    text = (text or "").strip()
    if not MONTH_RE.fullmatch(text):
        raise ValidationError({"month": f"Give a month as YYYY-MM, e.g. {month_of()} (got “{text[:20]}”)."})
    return text
