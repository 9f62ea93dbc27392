"""Webhooks: signed POSTs telling integrations what happened, instead of them polling.

    an event (post_transition, a render, a factory job, a schedule slot)
      ─> webhook_event: one WebhookDelivery row per active endpoint subscribed to it, written in
         the caller's transaction (no event, no delivery; an event rolled back sends nothing)
      ─> on commit: rq "default" queue rings deliver(delivery_id)
    deliver: claim the row (conditional UPDATE), check the URL again (DNS may have changed since it
      was saved), POST to the very address that was checked, record the answer; a 5xx, 408, 429,
      timeout or connection error is retried after MCN_WEBHOOK_RETRY_DELAYS[attempt - 1] seconds.

The row is the truth; rq only rings the doorbell. A delivery rung twice is sent once: the claim
moves next_attempt_at past the attempt's own deadline, so a second ring finds nothing due.

The request: body {"id": event uuid, "type", "created_at", "data"}, headers X-MCN-Event,
X-MCN-Delivery (uuid), X-MCN-Timestamp (unix seconds) and
X-MCN-Signature: sha256=hex(HMAC-SHA256(secret, f"{timestamp}.{body}")). README "Webhooks" shows
how a receiver verifies it.
"""

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import django_rq
import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from factory.models import TERMINAL_STATUSES, Job, JobStatus
from mcn_site.lib.downloads import signed_media_path
from mcn_site.lib.netguard import resolve_public_url
from posts.models import DeliveryStatus, Post, Webhook, WebhookDelivery, WebhookEvent

log = logging.getLogger(__name__)

DELIVER_JOB = "posts.webhooks.deliver"
RESPONSE_BODY_LIMIT = 2048
USER_AGENT = "MCN-OS-Webhooks/1"
# A worker's clock may run a little behind the one that scheduled the retry.
CLOCK_SKEW = timedelta(seconds=5)
RETRY_STATUSES = frozenset({408, 429})
POST_SUBJECT_RE = re.compile(r"^post\.(\d+)(?:/|$)")


# --------------------------------------------------------------------------- events


def webhook_event(*, event_type: str, payload: dict) -> list[int]:
    """Queue `event_type` with `payload` for every active endpoint subscribed to it; return the delivery ids.

    The rows join the caller's transaction and are rung after it commits. An endpoint limited to
    one artist gets only events whose payload names that artist (`artist_id`).
    """
    artist_id = payload.get("artist_id")
    endpoints = [
        webhook
        for webhook in Webhook.objects.filter(active=True)
        if event_type in (webhook.event_types or []) and (webhook.artist_id is None or webhook.artist_id == artist_id)
    ]
    if not endpoints:
        return []
    event_id, event_at = uuid.uuid4(), timezone.now()
    deliveries = [
        _create_delivery(webhook=webhook, event_id=event_id, event_type=event_type, event_at=event_at, payload=payload)
        for webhook in endpoints
    ]
    return [delivery.pk for delivery in deliveries]


def _create_delivery(
    *, webhook: Webhook, event_id: uuid.UUID, event_type: str, event_at: datetime, payload: dict
) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.create(
        webhook=webhook,
        uuid=uuid.uuid4(),
        event_id=event_id,
        event_type=event_type,
        event_at=event_at,
        payload=payload,
        next_attempt_at=event_at,
    )
    _ring_after_commit(delivery.pk)
    return delivery


def _ring_after_commit(delivery_id: int, *, delay_seconds: float = 0) -> None:
    def ring():
        queue = django_rq.get_queue("default")
        options = {"result_ttl": 3600, "failure_ttl": 7 * 86400}
        if delay_seconds > 0:
            queue.enqueue_in(timedelta(seconds=delay_seconds), DELIVER_JOB, delivery_id, **options)
        else:
            queue.enqueue(DELIVER_JOB, delivery_id, **options)

    # robust: Redis down must not fail the post transition that caused the event; the row stays
    # pending and webhook_ring_due rings it again.
    transaction.on_commit(ring, robust=True)


def post_status_changed(*, post: Post, from_status: str, actor) -> None:
    """post.status_changed, from posts.services.post_transition."""
    webhook_event(
        event_type=WebhookEvent.POST_STATUS_CHANGED,
        payload={
            "post_id": post.pk,
            "artist_id": post.artist_id,
            "title": post.title,
            "from": from_status,
            "to": post.status,
            "actor": actor.get_username() if actor else None,
            "version": post.version,
        },
    )


def render_done(*, post_id: int, job_id: int) -> None:
    """render.done, from posts.pipeline when a render succeeded and the post is done.

    `video_url` opens the MP4 without a login until `video_url_expires_at` (MCN_SIGNED_URL_SECONDS);
    `video_path` needs a signed-in member, `GET /api/v1/posts/<id>/video` a token.
    """
    post = Post.objects.get(pk=post_id)
    video_url, expires_at = signed_media_path(post.final_video.name) if post.final_video else (None, None)
    webhook_event(
        event_type=WebhookEvent.RENDER_DONE,
        payload={
            "post_id": post.pk,
            "artist_id": post.artist_id,
            "title": post.title,
            "job_id": job_id,
            "video_path": post.final_video.url if post.final_video else None,
            "video_url": video_url,
            "video_url_expires_at": expires_at.isoformat() if expires_at else None,
        },
    )


def schedule_fired(*, schedule, slot: datetime, post: Post) -> None:
    """schedule.fired, from schedules.services when a slot created its draft post."""
    webhook_event(
        event_type=WebhookEvent.SCHEDULE_FIRED,
        payload={
            "schedule_id": schedule.pk,
            "schedule": schedule.title,
            "slot": slot.isoformat(),
            "post_id": post.pk,
            "artist_id": post.artist_id,
        },
    )


def on_job_changed(sender, *, job_id, subject, status, event, error=None, **kwargs) -> None:
    """factory.signals.job_changed receiver: job.finished / job.failed when a job ends."""
    if event != "status" or status not in TERMINAL_STATUSES:
        return
    match = POST_SUBJECT_RE.match(subject or "")
    post_id = int(match.group(1)) if match else None
    artist_id = Post.objects.filter(pk=post_id).values_list("artist_id", flat=True).first() if post_id else None
    webhook_event(
        event_type=WebhookEvent.JOB_FINISHED if status == JobStatus.SUCCEEDED else WebhookEvent.JOB_FAILED,
        payload={
            "job_id": job_id,
            "kind": Job.objects.filter(pk=job_id).values_list("kind", flat=True).first(),
            "subject": subject,
            "status": status,
            "error": error,
            "post_id": post_id,
            "artist_id": artist_id,
        },
    )


# --------------------------------------------------------------------------- admin actions


@transaction.atomic
def webhook_send_test(*, webhook: Webhook) -> WebhookDelivery:
    """Queue a "ping" to `webhook` (active or not, subscribed or not): ops check it before relying on it."""
    now = timezone.now()
    return _create_delivery(
        webhook=webhook,
        event_id=uuid.uuid4(),
        event_type=WebhookEvent.PING,
        event_at=now,
        payload={"webhook_id": webhook.pk, "message": "A test event from MCN OS."},
    )


@transaction.atomic
def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery's event again as a new delivery: same event id and body, new delivery id."""
    return _create_delivery(
        webhook=delivery.webhook,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        event_at=delivery.event_at,
        payload=delivery.payload,
    )


def webhook_ring_due(*, now: datetime | None = None) -> int:
    """Ring every pending delivery that is overdue (Redis lost its doorbell, a worker died mid-attempt).

    Safe to call from any periodic loop: the claim in deliver() lets one run through.
    """
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now - timedelta(minutes=1)
        ).values_list("pk", flat=True)[:1000]
    )
    for delivery_id in due:
        _ring_after_commit(delivery_id)
    return len(due)


# --------------------------------------------------------------------------- delivery


def envelope(delivery: WebhookDelivery) -> bytes:
    """The request body: the same bytes for every attempt and redelivery of an event."""
    return json.dumps(
        {
            "id": str(delivery.event_id),
            "type": delivery.event_type,
            "created_at": delivery.event_at.isoformat(),
            "data": delivery.payload,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """The X-MCN-Signature value: sha256=hex(HMAC-SHA256(secret, "<timestamp>.<body>"))."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def deliver(delivery_id: int) -> None:
    """The rq job: one attempt at one delivery. Safe to run twice; a loser or a delivery not due returns quietly."""
    now = timezone.now()
    # Race: the doorbell rung twice (a retry and webhook_ring_due, two workers). The conditional
    # UPDATE lets one through; it pushes next_attempt_at past this attempt's own deadline, so
    # nobody else finds the delivery due while it is being sent.
    deadline = now + timedelta(seconds=settings.MCN_WEBHOOK_TIMEOUT + 60)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now + CLOCK_SKEW
    ).update(attempts=F("attempts") + 1, next_attempt_at=deadline)
    if not claimed:
        return
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    if not delivery.webhook.active and delivery.event_type != WebhookEvent.PING:
        _settle(delivery, DeliveryStatus.FAILED, error="The endpoint was deactivated.")
        return
    outcome = _attempt(delivery)
    status, retry = outcome.pop("status"), outcome.pop("retry")
    if status == DeliveryStatus.SUCCEEDED or not retry:
        _settle(delivery, status, **outcome)
        return
    delays = settings.MCN_WEBHOOK_RETRY_DELAYS
    if delivery.attempts > len(delays):
        outcome["error"] = f"Gave up after {delivery.attempts} attempts. Last: {outcome['error']}"
        _settle(delivery, DeliveryStatus.FAILED, **outcome)
        return
    delay = delays[delivery.attempts - 1]
    with transaction.atomic():
        if _settle(
            delivery, DeliveryStatus.PENDING, next_attempt_at=timezone.now() + timedelta(seconds=delay), **outcome
        ):
            _ring_after_commit(delivery.pk, delay_seconds=delay)


def _settle(delivery: WebhookDelivery, status: str, **fields) -> bool:
    """Record the attempt this run claimed; False if the row has moved on (deleted, claimed again)."""
    if status == DeliveryStatus.SUCCEEDED:
        fields["delivered_at"] = timezone.now()
    if status != DeliveryStatus.PENDING:
        fields["next_attempt_at"] = None
    fields.setdefault("response_code", None)
    fields.setdefault("response_body", "")
    fields.setdefault("duration_ms", None)
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts
        ).update(status=status, **fields)
    )


def _attempt(delivery: WebhookDelivery) -> dict:
    """POST once; say what happened and whether it is worth another try. Never raises for the receiver's faults."""
    webhook = delivery.webhook
    try:
        # Again at delivery time: the name may resolve elsewhere now than when it was saved.
        addresses = resolve_public_url(webhook.url, allow_private=settings.MCN_WEBHOOK_ALLOW_PRIVATE)
    except ValidationError as error:
        retry = error.code == "unresolvable"
        return {"status": DeliveryStatus.FAILED, "retry": retry, "error": " ".join(error.messages)}
    body = envelope(delivery)
    timestamp = int(time.time())
    parts = urlsplit(webhook.url.strip())
    headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-MCN-Event": delivery.event_type,
        "X-MCN-Delivery": str(delivery.uuid),
        "X-MCN-Timestamp": str(timestamp),
        "X-MCN-Signature": sign(secret=webhook.secret, timestamp=timestamp, body=body),
    }
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    timeout = settings.MCN_WEBHOOK_TIMEOUT
    started = time.monotonic()
    # trust_env=False: an HTTP(S)_PROXY from the environment would connect for us, unchecked.
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for index, address in enumerate(addresses):
            # Connect to an address just checked, not to whatever the name resolves to a moment later;
            # the Host header and (https) the TLS server name and certificate check keep the real name.
            host = f"[{address}]" if ":" in address else address
            netloc = f"{host}:{parts.port}" if parts.port else host
            pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            try:
                with client.stream("POST", pinned, content=body, headers=headers, extensions=extensions) as response:
                    code, text = response.status_code, _read_some(response, deadline=started + timeout)
                    location = response.headers.get("location", "")
                break
            except httpx.ConnectError as error:
                if index + 1 < len(addresses):
                    continue  # "localhost" is ::1 and 127.0.0.1: try the next address, as browsers do
                return _retry(f"Could not connect: {error}", started)
            except httpx.TimeoutException:
                return _retry(f"No answer within {timeout} s.", started)
            except httpx.HTTPError as error:
                return _retry(f"The request failed: {error}", started)
    result = {"response_code": code, "response_body": text, "duration_ms": _ms(started)}
    if 200 <= code < 300:
        return {"status": DeliveryStatus.SUCCEEDED, "retry": False, "error": "", **result}
    if 300 <= code < 400:
        where = f" (Location: {location[:300]})" if location else ""
        return {
            "status": DeliveryStatus.FAILED,
            "retry": False,
            "error": f"HTTP {code}: redirects are not followed{where}.",
            **result,
        }
    retry = code >= 500 or code in RETRY_STATUSES
    return {"status": DeliveryStatus.FAILED, "retry": retry, "error": f"HTTP {code}.", **result}


def _retry(error: str, started: float) -> dict:
    return {"status": DeliveryStatus.FAILED, "retry": True, "error": error, "duration_ms": _ms(started)}


def _read_some(response: httpx.Response, *, deadline: float) -> str:
    """The first 2 KB of the answer, never more: a receiver streaming forever cannot hold the worker."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= RESPONSE_BODY_LIMIT or time.monotonic() > deadline:
            break
    return data[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace")


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
