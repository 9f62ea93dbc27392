"""Webhooks: signed deliveries to a real receiver on 127.0.0.1, retries, SSRF refusals, events, admin.

Deliveries run through the real rq job function (posts.webhooks.deliver) called directly, and once
through a real `rqworker default --burst` process. The receiver is reachable only because the tests
set MCN_WEBHOOK_ALLOW_PRIVATE; the SSRF tests turn it off.
"""

import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import django_rq
import pytest
from django.core.exceptions import ValidationError
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from factory.models import ErrorKind, JobKind, JobStatus
from factory.services import job_payload
from factory.signals import job_changed
from mcn_site.lib import roles
from mcn_site.lib.netguard import check_public_url
from posts import pipeline, services, webhooks
from posts.models import DeliveryStatus, PostStatus, Webhook, WebhookDelivery, WebhookEvent
from schedules.services import schedule_tick
from tests.admin import form_data, login
from tests.factories import make_artist, make_job, make_job_output, make_post, make_schedule, make_user, mp4_bytes
from tests.factory.conftest import subprocess_env
from tests.fakes.receiver import WebhookReceiver

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.MCN_WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1
    settings.MCN_WEBHOOK_TIMEOUT = 2
    settings.MCN_WEBHOOK_RETRY_DELAYS = [30, 120]


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


def committed(function, *args, **kwargs):
    """Call `function` and run its on-commit callbacks (the rq doorbell): the test's transaction never commits."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return function(*args, **kwargs)


def deliver(delivery_id: int) -> None:
    committed(webhooks.deliver, delivery_id)


def make_webhook(url: str, *, events=(WebhookEvent.POST_STATUS_CHANGED,), **extra) -> Webhook:
    webhook = Webhook(**{"name": f"hook-{uuid.uuid4().hex[:6]}", "url": url, "event_types": list(events), **extra})
    webhook.full_clean()
    webhook.save()
    return webhook


def readme_verify():
    """The `verify` function exactly as README.md's Webhooks section prints it."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Webhooks") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10, "the README promises a ~10-line example"
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own README
    return namespace["verify"]


def ping(webhook: Webhook) -> WebhookDelivery:
    return committed(webhooks.webhook_send_test, webhook=webhook)


def fresh(delivery: WebhookDelivery) -> WebhookDelivery:
    delivery.refresh_from_db()
    return delivery


def scheduled_retries() -> list[float]:
    """Seconds from now to each delivery retry waiting in rq's scheduled registry (rq keeps whole seconds)."""
    registry = django_rq.get_queue("default").scheduled_job_registry
    now = timezone.now()
    return sorted((registry.get_scheduled_time(job_id) - now).total_seconds() for job_id in registry.get_job_ids())


# --------------------------------------------------------------------------- signing


def test_a_delivery_is_signed_and_verifies_with_the_readme_algorithm(receiver, rq_clean):
    verify = readme_verify()
    webhook = make_webhook(receiver.url())
    delivery = ping(webhook)

    deliver(delivery.pk)

    (request,) = receiver.requests()
    assert request.method == "POST" and request.path == "/hooks/mcn"
    assert request.headers["X-MCN-Event"] == "ping"
    assert request.headers["X-MCN-Delivery"] == str(delivery.uuid)
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {
        "id": str(delivery.event_id),
        "type": "ping",
        "created_at": delivery.event_at.isoformat(),
        "data": {"webhook_id": webhook.pk, "message": "A test event from MCN OS."},
    }
    assert verify(webhook.secret, request.headers, request.body)
    assert not verify("another-secret", request.headers, request.body)
    assert not verify(webhook.secret, request.headers, request.body + b" ")
    stale = {**request.headers, "X-MCN-Timestamp": str(int(time.time()) - 301)}
    assert not verify(webhook.secret, stale, request.body)  # the signature no longer matches, and it is old
    delivery = fresh(delivery)
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert (delivery.attempts, delivery.response_code, delivery.response_body) == (1, 200, "ok")
    assert delivery.delivered_at is not None and delivery.duration_ms is not None
    assert delivery.next_attempt_at is None


def test_a_delivery_that_is_not_due_or_already_settled_is_not_sent_again(receiver, rq_clean):
    delivery = ping(make_webhook(receiver.url()))
    deliver(delivery.pk)
    deliver(delivery.pk)  # the doorbell rang twice

    assert len(receiver.requests()) == 1
    assert fresh(delivery).attempts == 1
    deliver(10**9)  # a delivery that is gone: nothing to do, no error


def test_the_response_body_kept_is_at_most_2_kb(receiver, rq_clean):
    receiver.reply(200, body="x" * 10_000)
    delivery = ping(make_webhook(receiver.url()))
    deliver(delivery.pk)

    assert fresh(delivery).response_body == "x" * 2048


# --------------------------------------------------------------------------- retries


def test_a_500_is_retried_with_the_configured_backoff_then_succeeds(receiver, rq_clean):
    receiver.reply(500, body="boom")
    receiver.reply(503)
    delivery = ping(make_webhook(receiver.url()))
    django_rq.get_queue("default").empty()  # the first doorbell; this test rings by hand

    deliver(delivery.pk)
    first = fresh(delivery)
    assert (first.status, first.attempts, first.response_code, first.error) == ("pending", 1, 500, "HTTP 500.")
    assert first.response_body == "boom"
    assert 29 <= (first.next_attempt_at - timezone.now()).total_seconds() <= 30
    assert scheduled_retries() == pytest.approx([30], abs=2)

    deliver(delivery.pk)  # rung early (a duplicate doorbell): not due, nothing is sent
    assert len(receiver.requests()) == 1

    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # 30 s later
    deliver(delivery.pk)
    second = fresh(delivery)
    assert (second.status, second.attempts, second.response_code) == ("pending", 2, 503)
    assert 119 <= (second.next_attempt_at - timezone.now()).total_seconds() <= 120
    assert scheduled_retries() == pytest.approx([30, 120], abs=2)

    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    deliver(delivery.pk)
    third = fresh(delivery)
    assert (third.status, third.attempts, third.response_code, third.error) == ("succeeded", 3, 200, "")
    assert len(receiver.requests()) == 3
    # Every attempt is signed afresh, over the same body.
    bodies = {request.body for request in receiver.requests()}
    assert len(bodies) == 1


def test_a_delivery_gives_up_after_the_last_retry(receiver, rq_clean):
    for _ in range(3):
        receiver.reply(502)
    delivery = ping(make_webhook(receiver.url()))
    for _ in range(3):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        deliver(delivery.pk)

    delivery = fresh(delivery)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert delivery.error == "Gave up after 3 attempts. Last: HTTP 502."


@pytest.mark.parametrize(("status", "retried"), [(400, False), (401, False), (404, False), (408, True), (429, True)])
def test_a_4xx_is_not_retried_except_408_and_429(receiver, rq_clean, status, retried):
    receiver.reply(status)
    delivery = ping(make_webhook(receiver.url()))
    django_rq.get_queue("default").empty()
    deliver(delivery.pk)

    delivery = fresh(delivery)
    assert delivery.status == (DeliveryStatus.PENDING if retried else DeliveryStatus.FAILED)
    assert (delivery.attempts, delivery.response_code, delivery.error) == (1, status, f"HTTP {status}.")
    assert len(scheduled_retries()) == (1 if retried else 0)


def test_a_timeout_is_retried(receiver, rq_clean, settings):
    settings.MCN_WEBHOOK_TIMEOUT = 1
    receiver.reply(200, delay=5)
    delivery = ping(make_webhook(receiver.url()))
    deliver(delivery.pk)

    delivery = fresh(delivery)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, None)
    assert delivery.error == "No answer within 1 s."


def test_a_refused_connection_is_retried(rq_clean):
    with WebhookReceiver() as gone:
        url = gone.url()
    delivery = ping(make_webhook(url))
    deliver(delivery.pk)

    delivery = fresh(delivery)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.error.startswith("Could not connect")


def test_a_redirect_is_not_followed_and_fails(receiver, rq_clean):
    receiver.reply(302, location="http://169.254.169.254/latest/meta-data/")
    delivery = ping(make_webhook(receiver.url()))
    deliver(delivery.pk)

    assert len(receiver.requests()) == 1
    delivery = fresh(delivery)
    assert (delivery.status, delivery.response_code) == ("failed", 302)
    assert "redirects are not followed" in delivery.error
    assert len(scheduled_retries()) == 0


def test_a_deactivated_endpoint_gets_no_more_attempts_but_a_ping_still_goes(receiver, rq_clean):
    webhook = make_webhook(receiver.url())
    services.post_submit_for_review(post_id=make_post(shots=1).pk, actor=None)
    (event,) = WebhookDelivery.objects.filter(event_type=WebhookEvent.POST_STATUS_CHANGED)
    Webhook.objects.filter(pk=webhook.pk).update(active=False)

    deliver(event.pk)
    test = ping(webhook)
    deliver(test.pk)

    assert (fresh(event).status, fresh(event).error) == ("failed", "The endpoint was deactivated.")
    assert fresh(test).status == "succeeded"
    assert [r.headers["X-MCN-Event"] for r in receiver.requests()] == ["ping"]


# --------------------------------------------------------------------------- SSRF


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8000/hook", "127.0.0.1, a loopback address"),
        ("http://localhost/hook", "a loopback address"),
        ("http://2130706433/", "127.0.0.1, a loopback address"),  # 127.0.0.1 as one number
        ("http://10.1.2.3/", "a private address"),
        ("http://172.16.0.1/", "a private address"),
        ("http://192.168.1.10/", "a private address"),
        ("http://100.64.0.1/", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address (the cloud metadata service"),
        ("http://0.0.0.0:8000/", "an unspecified address"),
        ("http://[::1]/", "::1, a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "a loopback address"),
        ("http://[::ffff:169.254.169.254]/", "a link-local address"),
        ("http://[64:ff9b::a9fe:a9fe]/", "a link-local address"),  # NAT64 form of 169.254.169.254
        ("http://[fe80::1]/", "a link-local address"),
        ("http://[fc00::1]/", "a private address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://240.0.0.1/", "a reserved address"),
        ("http://user@example.com/", "may not contain a user name or password"),
        ("http://user:pw@127.0.0.1/", "may not contain a user name or password"),
        ("http://example.com\\@127.0.0.1/", "may not contain a user name or password"),
        ("ftp://example.com/hook", "Only http:// and https://"),
        ("file:///etc/passwd", "Only http:// and https://"),
        ("gopher://127.0.0.1:6379/_INFO", "Only http:// and https://"),
    ],
)
def test_an_internal_or_odd_url_is_refused_at_save_with_a_clear_message(settings, url, message):
    settings.MCN_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError) as refused:
        make_webhook(url)
    assert message in " ".join(refused.value.message_dict.get("url", []))
    assert not Webhook.objects.exists()


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "http://0.0.0.0/"]
)
def test_metadata_and_unspecified_addresses_stay_refused_when_private_ones_are_allowed(url):
    with pytest.raises(ValidationError):
        check_public_url(url, allow_private=True)


def test_private_addresses_pass_when_allowed_and_public_literals_always_pass():
    check_public_url("http://127.0.0.1:8000/", allow_private=True)
    check_public_url("http://10.0.0.5/", allow_private=True)
    check_public_url("https://8.8.8.8/hook", allow_private=False)
    check_public_url("http://[2001:4860:4860::8888]/", allow_private=False)


def test_a_url_refused_at_delivery_time_is_not_sent(receiver, rq_clean, settings):
    # Saved when it was allowed; by delivery time the name means loopback and that is refused
    # (as when DNS is changed to point a public name at an internal address).
    webhook = make_webhook(receiver.url(host="localhost"))
    delivery = ping(webhook)
    settings.MCN_WEBHOOK_ALLOW_PRIVATE = False

    deliver(delivery.pk)

    assert receiver.requests() == []
    delivery = fresh(delivery)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 1, None)
    assert "it resolves to" in delivery.error and "a loopback address" in delivery.error
    assert len(scheduled_retries()) == 0


def test_the_request_goes_to_the_checked_address_with_the_real_host_header(receiver, rq_clean):
    delivery = ping(make_webhook(receiver.url("/in?source=mcn", host="localhost")))
    deliver(delivery.pk)

    (request,) = receiver.requests()
    assert request.path == "/in"
    assert request.headers["Host"] == f"localhost:{receiver.port}"
    assert fresh(delivery).status == "succeeded"


# --------------------------------------------------------------------------- events


def test_a_post_status_change_goes_to_each_subscribed_active_endpoint_once(receiver, rq_clean):
    reviewer = make_user(role=roles.REVIEWER)
    artist, other = make_artist(members=[reviewer]), make_artist()
    post = make_post(artist=artist, shots=1)
    wanted = make_webhook(receiver.url("/a"), events=[WebhookEvent.POST_STATUS_CHANGED, WebhookEvent.RENDER_DONE])
    same_artist = make_webhook(receiver.url("/b"), artist=artist)
    make_webhook(receiver.url("/inactive"), active=False)
    make_webhook(receiver.url("/unsubscribed"), events=[WebhookEvent.RENDER_DONE])
    make_webhook(receiver.url("/other-artist"), artist=other)

    committed(services.post_submit_for_review, post_id=post.pk, actor=None)
    committed(services.post_approve, post_id=post.pk, actor=reviewer)

    deliveries = WebhookDelivery.objects.filter(event_type=WebhookEvent.POST_STATUS_CHANGED).order_by("id")
    assert sorted((d.webhook_id, d.payload["to"]) for d in deliveries) == sorted(
        [(wanted.pk, "review"), (same_artist.pk, "review"), (wanted.pk, "approved"), (same_artist.pk, "approved")]
    )
    approved = deliveries.get(webhook=wanted, payload__to="approved")
    assert approved.payload == {
        "post_id": post.pk,
        "artist_id": artist.pk,
        "title": post.title,
        "from": "review",
        "to": "approved",
        "actor": reviewer.username,
        "version": approved.payload["version"],
    }
    # Both endpoints got the same event: one event id, one delivery id each.
    pair = deliveries.filter(payload__to="approved")
    assert len({d.event_id for d in pair}) == 1 and len({d.uuid for d in pair}) == 2
    # Every delivery was rung after commit.
    queued = django_rq.get_queue("default").jobs
    assert sorted(job.args[0] for job in queued) == sorted(d.pk for d in deliveries)


def test_a_rolled_back_status_change_sends_nothing(receiver):
    make_webhook(receiver.url())
    post = make_post(shots=0)
    with pytest.raises(ValidationError):
        services.post_submit_for_review(post_id=post.pk, actor=None)  # empty storyboard: rolled back
    assert not WebhookDelivery.objects.exists()


def test_a_schedule_firing_sends_schedule_fired_with_its_post(receiver):
    import zoneinfo
    from datetime import datetime

    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
    artist = make_artist()
    schedule = make_schedule(artist=artist, now=datetime(2026, 3, 1, 12, tzinfo=shanghai), timezone="Asia/Shanghai")
    hook = make_webhook(receiver.url(), events=[WebhookEvent.SCHEDULE_FIRED])
    make_webhook(receiver.url("/posts-only"))  # post.status_changed only: a new draft is no status change

    (post_id,) = schedule_tick(now=datetime(2026, 3, 2, 9, 0, tzinfo=shanghai)).created

    (delivery,) = WebhookDelivery.objects.all()
    assert delivery.webhook == hook
    assert delivery.payload == {
        "schedule_id": schedule.pk,
        "schedule": schedule.title,
        "slot": "2026-03-02T01:00:00+00:00",
        "post_id": post_id,
        "artist_id": artist.pk,
    }


def test_a_finished_render_sends_render_done_with_the_video_path_and_a_link_that_needs_no_login(receiver, client):
    post = make_post(status=PostStatus.RENDERING)
    job = make_job(kind=JobKind.RENDER, template=None, subject=f"post.{post.pk}/render", status=JobStatus.SUCCEEDED)
    make_job_output(job=job, data=mp4_bytes(), name="final.mp4", content_type="video/mp4")
    post.render_job = job
    post.save(update_fields=["render_job"])
    hook = make_webhook(receiver.url(), events=[WebhookEvent.RENDER_DONE, WebhookEvent.JOB_FINISHED])

    job_changed.send(sender=type(job), **job_payload(job, event="status"))

    post.refresh_from_db()
    assert post.status == PostStatus.DONE
    done = WebhookDelivery.objects.get(webhook=hook, event_type=WebhookEvent.RENDER_DONE)
    assert done.payload == {
        "post_id": post.pk,
        "artist_id": post.artist_id,
        "title": post.title,
        "job_id": job.pk,
        "video_path": post.final_video.url,
        "video_url": done.payload["video_url"],
        "video_url_expires_at": done.payload["video_url_expires_at"],
    }
    assert done.payload["video_path"].startswith("/media/") and done.payload["video_path"].endswith(".mp4")
    # The receiver has no account: the signed link alone fetches the MP4, for MCN_SIGNED_URL_SECONDS (24 h).
    assert done.payload["video_url"].startswith(done.payload["video_path"] + "?expires=")
    expires_at = datetime.fromisoformat(done.payload["video_url_expires_at"])
    assert timedelta(hours=23, minutes=59) < expires_at - timezone.now() <= timedelta(hours=24)
    fetched = client.get(done.payload["video_url"])
    assert fetched.status_code == 200
    assert b"".join(fetched.streaming_content) == mp4_bytes()
    assert client.get(done.payload["video_path"]).status_code == 302  # without the signature: log in first
    finished = WebhookDelivery.objects.get(webhook=hook, event_type=WebhookEvent.JOB_FINISHED)
    assert finished.payload["job_id"] == job.pk and finished.payload["kind"] == "render"


def test_a_failed_job_sends_job_failed_with_its_error(receiver):
    post = make_post()
    job = make_job(
        subject=f"post.{post.pk}/shot.1/picture@0123456789abcdef",
        status=JobStatus.FAILED,
        error_kind=ErrorKind.EXECUTION,
        error_message="CUDA out of memory",
    )
    hook = make_webhook(receiver.url(), events=[WebhookEvent.JOB_FAILED])
    make_webhook(receiver.url("/finished-only"), events=[WebhookEvent.JOB_FINISHED])

    job_changed.send(sender=type(job), **job_payload(job, event="status"))
    job_changed.send(sender=type(job), **job_payload(job, event="progress"))  # not an ending: nothing

    (delivery,) = WebhookDelivery.objects.all()
    assert delivery.webhook == hook
    assert delivery.payload == {
        "job_id": job.pk,
        "kind": "comfyui",
        "subject": job.subject,
        "status": "failed",
        "error": {"kind": "execution", "message": "CUDA out of memory"},
        "post_id": post.pk,
        "artist_id": post.artist_id,
    }


def test_pipeline_render_failure_sends_no_render_done(receiver):
    post = make_post(status=PostStatus.RENDERING)
    job = make_job(kind=JobKind.RENDER, subject=f"post.{post.pk}/render", status=JobStatus.FAILED)
    post.render_job = job
    post.save(update_fields=["render_job"])
    make_webhook(receiver.url(), events=[WebhookEvent.RENDER_DONE])

    pipeline.on_job_changed(None, **job_payload(job, event="status"))

    assert not WebhookDelivery.objects.exists()


def test_overdue_pending_deliveries_are_rung_again(receiver, rq_clean):
    delivery = ping(make_webhook(receiver.url()))
    django_rq.get_queue("default").empty()  # Redis lost the doorbell
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))

    assert committed(webhooks.webhook_ring_due) == 1
    assert django_rq.get_queue("default").count == 1


# --------------------------------------------------------------------------- admin


def test_ops_send_a_test_event_from_the_admin(receiver):
    webhook = make_webhook(receiver.url())
    client = login(make_user(role=roles.OPS))

    response = client.post(
        reverse("admin:posts_webhook_changelist"),
        {"action": "send_test_event", "_selected_action": [webhook.pk]},
        follow=True,
    )

    assert response.status_code == 200
    (delivery,) = WebhookDelivery.objects.all()
    assert (delivery.webhook, delivery.event_type, delivery.status) == (webhook, "ping", "pending")


def test_ops_add_an_endpoint_and_see_its_generated_secret(receiver, settings):
    client = login(make_user(role=roles.OPS))
    page = client.get(reverse("admin:posts_webhook_add"))
    assert page.status_code == 200
    data = form_data(page)
    assert data["secret"].startswith("whsec_") and len(data["secret"]) > 40

    data.update({"name": "n8n", "url": receiver.url(), "event_types": ["render.done"]})
    response = client.post(reverse("admin:posts_webhook_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    webhook = Webhook.objects.get()
    assert (webhook.event_types, webhook.secret, webhook.active) == (["render.done"], data["secret"], True)

    settings.MCN_WEBHOOK_ALLOW_PRIVATE = False
    refused = client.post(
        reverse("admin:posts_webhook_add"),
        {"name": "meta", "url": "http://169.254.169.254/", "event_types": ["ping"], "secret": "s"},
    )
    errors = refused.context["adminform"].form.errors
    assert "a link-local address" in str(errors["url"])
    assert "event_types" in errors  # "ping" cannot be subscribed to
    assert Webhook.objects.count() == 1


def test_the_delivery_log_and_endpoints_are_for_ops_only(receiver):
    delivery = ping(make_webhook(receiver.url()))
    log = reverse("admin:posts_webhookdelivery_changelist")
    endpoints = reverse("admin:posts_webhook_changelist")
    for role in (roles.PRODUCER, roles.REVIEWER):
        client = login(make_user(role=role))
        assert client.get(log).status_code == 403, role
        assert client.get(endpoints).status_code == 403, role
    ops = login(make_user(role=roles.OPS))
    page = ops.get(log + "?status__exact=pending&event_type__exact=ping")
    assert page.status_code == 200 and str(delivery.webhook) in page.content.decode()
    assert ops.get(endpoints).status_code == 200
    assert ops.get(reverse("admin:posts_webhookdelivery_change", args=[delivery.pk])).status_code == 200
    assert ops.get(reverse("admin:posts_webhookdelivery_add")).status_code == 403


def test_ops_redeliver_a_delivery_as_a_new_one_of_the_same_event(receiver, rq_clean):
    receiver.reply(404)
    first = ping(make_webhook(receiver.url()))
    deliver(first.pk)
    assert fresh(first).status == "failed"

    response = login(make_user(role=roles.OPS)).post(
        reverse("admin:posts_webhookdelivery_changelist"),
        {"action": "redeliver", "_selected_action": [first.pk]},
        follow=True,
    )
    assert response.status_code == 200
    again = WebhookDelivery.objects.exclude(pk=first.pk).get()
    assert (again.event_id, again.payload, again.status) == (first.event_id, first.payload, "pending")
    assert again.uuid != first.uuid
    deliver(again.pk)
    assert fresh(again).status == "succeeded"
    assert receiver.requests()[0].body == receiver.requests()[1].body  # the same event, byte for byte


# --------------------------------------------------------------------------- a real worker


@pytest.mark.django_db(transaction=True)
def test_a_real_rq_worker_delivers_a_queued_event(receiver, rq_clean):
    verify = readme_verify()
    webhook = make_webhook(receiver.url())
    delivery = ping(webhook)  # autocommit: rung at once
    assert django_rq.get_queue("default").count == 1

    result = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "default", "--burst"],
        cwd=ROOT,
        env=subprocess_env(MCN_WEBHOOK_ALLOW_PRIVATE="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    delivery = fresh(delivery)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 1, 200), delivery.error
    (request,) = receiver.requests()
    assert verify(webhook.secret, request.headers, request.body)
