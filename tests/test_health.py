"""/healthz, /readyz and /metrics: what anonymous probes, staff and token holders each get."""

import socket
import time
from datetime import timedelta

import django_rq
import pytest
from django.contrib.auth.models import User
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from factory.models import JobStatus, Lane
from mcn_site.lib import roles
from tests.factories import make_gpu_worker, make_job, make_user
from tests.fakes.comfyui import FakeComfyUI

pytestmark = pytest.mark.django_db

TOKEN = "health-token-for-tests"


@pytest.fixture(autouse=True)
def empty_queues():
    connection = django_rq.get_connection("default")  # kept: a test may point the settings at a closed port
    connection.flushdb()
    yield
    connection.flushdb()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def readyz(client, **headers):
    started = time.monotonic()
    response = client.get("/readyz", headers=headers)
    assert time.monotonic() - started < 3.5, "readyz must answer fast even when a server is down"
    return response


def test_healthz_answers_anyone_without_touching_anything(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_with_a_live_worker_on_every_gpu_queue(client):
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
    response = readyz(client)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "channel_layer": "ok", "gpu_workers": "ok", "comfyui": "ok"},
    }
    assert response["Cache-Control"].startswith("max-age=0")


def test_readyz_names_redis_and_the_channel_layer_when_redis_is_down(client, settings):
    port = closed_port()
    settings.RQ_QUEUES = {
        name: {**queue, "URL": f"redis://127.0.0.1:{port}/0"} for name, queue in settings.RQ_QUEUES.items()
    }
    settings.CHANNEL_LAYERS = {
        "default": {**settings.CHANNEL_LAYERS["default"], "CONFIG": {"hosts": [f"redis://127.0.0.1:{port}/0"]}}
    }
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
    response = readyz(client)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unready"
    assert body["checks"]["redis"] == "fail" and body["checks"]["channel_layer"] == "fail"
    assert body["checks"]["database"] == "ok" and body["checks"]["gpu_workers"] == "ok"
    # Anonymous: which check failed, never why (no host names, ports or error text).
    assert set(body) == {"status", "checks"}
    assert str(port) not in response.content.decode()


def test_readyz_gives_up_on_a_redis_that_accepts_but_never_answers(client, settings):
    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever reads or replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        settings.RQ_QUEUES = {name: {**queue, "URL": url} for name, queue in settings.RQ_QUEUES.items()}
        settings.CHANNEL_LAYERS = {"default": {**settings.CHANNEL_LAYERS["default"], "CONFIG": {"hosts": [url]}}}
        make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
        started = time.monotonic()
        response = readyz(client)
        assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok",
        "redis": "fail",
        "channel_layer": "fail",
        "gpu_workers": "ok",
        "comfyui": "ok",
    }


def test_readyz_fails_when_no_live_worker_listens_to_a_queue_with_jobs(client, settings):
    settings.MCN_HEALTH_TOKEN = TOKEN
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
    make_gpu_worker(name="gpu-old", queues="gpu.h200", last_seen_at=timezone.now() - timedelta(days=2))
    Queue("gpu.h200", connection=django_rq.get_connection("default")).enqueue("factory.jobs.run_job", 1)

    response = readyz(client, authorization=f"Bearer {TOKEN}")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["gpu_workers"] == "fail"
    assert [name for name, check in body["checks"].items() if check == "fail"] == ["gpu_workers"]
    details = body["details"]["gpu_workers"]
    assert details["message"] == "no live worker for gpu.h200"
    assert details["queues"] == {"gpu": ["gpu-a"], "gpu-vip": ["gpu-a"], "gpu.h200": []}


def test_a_queue_a_recent_worker_served_needs_a_live_worker_too(client, settings):
    settings.MCN_HEALTH_TOKEN = TOKEN
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
    stale = timezone.now() - timedelta(minutes=5)  # silent past three heartbeats, seen within the hour
    make_gpu_worker(name="gpu-pool", queues="gpu-vip.h200,gpu.h200", last_seen_at=stale)
    body = readyz(client, authorization=f"Bearer {TOKEN}").json()
    assert body["details"]["gpu_workers"]["message"] == "no live worker for gpu-vip.h200, gpu.h200"


def test_readyz_fails_without_any_gpu_worker(client, settings):
    settings.COMFYUI_URL = f"http://127.0.0.1:{closed_port()}"
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu", last_seen_at=timezone.now() - timedelta(minutes=1))
    response = readyz(client)
    assert response.status_code == 503
    assert response.json()["checks"]["gpu_workers"] == "fail"
    # Nobody reports on ComfyUI, and COMFYUI_URL does not answer either.
    assert response.json()["checks"]["comfyui"] == "fail"


def test_readyz_fails_when_a_live_workers_comfyui_is_unreachable(client, settings):
    settings.MCN_HEALTH_TOKEN = TOKEN
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
    make_gpu_worker(name="gpu-b", queues="gpu-vip,gpu", server_url="http://10.0.0.9:8188", server_reachable=False)
    response = readyz(client, authorization=f"Bearer {TOKEN}")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["comfyui"] == "fail" and body["checks"]["gpu_workers"] == "ok"
    assert body["details"]["comfyui"]["message"] == "unreachable from gpu-b (http://10.0.0.9:8188)"


def test_with_no_live_worker_readyz_asks_comfyui_url_itself(client, settings):
    settings.MCN_HEALTH_TOKEN = TOKEN
    with FakeComfyUI() as fake:
        settings.COMFYUI_URL = fake.url
        body = readyz(client, authorization=f"Bearer {TOKEN}").json()
    assert body["checks"]["comfyui"] == "ok"
    assert body["details"]["comfyui"]["message"] == f"no live worker; {fake.url}/system_stats answered"


def test_an_unapplied_migration_fails_the_database_check(client, settings):
    settings.MCN_HEALTH_TOKEN = TOKEN
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
    last = MigrationRecorder.Migration.objects.filter(app="factory").order_by("-id").first()
    last.delete()  # as if the code on disk were newer than the database
    response = readyz(client, authorization=f"Bearer {TOKEN}")
    assert response.status_code == 503
    details = response.json()["details"]["database"]
    assert details["ok"] is False
    assert details["unapplied"] == [f"factory.{last.name}"]


def test_a_producer_signed_in_gets_no_details(client):
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
    client.force_login(make_user(role=roles.PRODUCER))
    assert set(readyz(client).json()) == {"status", "checks"}


def test_ops_signed_in_get_the_details(client):
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
    client.force_login(make_user(role=roles.OPS))
    body = readyz(client).json()
    assert body["status"] == "ready"
    assert set(body["details"]) == set(body["checks"])
    assert body["details"]["gpu_workers"]["queues"] == {"gpu": ["gpu-a"], "gpu-vip": ["gpu-a"]}
    assert body["details"]["redis"]["latency_ms"] >= 0
    assert body["details"]["comfyui"]["servers"] == {"gpu-a": "http://127.0.0.1:8188"}


def test_the_health_token_gets_details_and_a_wrong_one_does_not(client, settings):
    settings.MCN_HEALTH_TOKEN = TOKEN
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu")
    assert "details" in readyz(client, authorization=f"Bearer {TOKEN}").json()
    for wrong in [f"Bearer {TOKEN}x", f"Token {TOKEN}", TOKEN, "Bearer "]:
        body = readyz(client, authorization=wrong).json()
        assert set(body) == {"status", "checks"}, wrong


def test_no_token_configured_means_no_token_gets_details(client, settings):
    settings.MCN_HEALTH_TOKEN = ""
    body = readyz(client, authorization="Bearer ").json()
    assert "details" not in body


# --- /metrics ------------------------------------------------------------------------------


def samples(body: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_are_off_until_a_token_is_configured(client, settings):
    settings.MCN_METRICS_TOKEN = ""
    response = client.get("/metrics", headers={"authorization": "Bearer anything"})
    assert response.status_code == 403
    assert "MCN_METRICS_TOKEN" in response.json()["error"]["message"]


def test_metrics_need_the_token(client, settings):
    settings.MCN_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    client.force_login(User.objects.create_user("not-staff", password="pw-for-tests-1"))
    assert client.get("/metrics").status_code == 401


def test_metrics_report_queue_depths_jobs_and_workers(client, settings):
    settings.MCN_METRICS_TOKEN = TOKEN
    make_job(lane=Lane.VIP)
    make_job(lane=Lane.VIP)
    make_job(lane=Lane.NORMAL)
    make_job(status=JobStatus.FAILED, finished_at=timezone.now() - timedelta(minutes=5))
    make_gpu_worker(name="gpu-a", queues="gpu-vip,gpu", vram_free=20 * 2**30)
    Queue("gpu.h200", connection=django_rq.get_connection("default")).enqueue("factory.jobs.run_job", 1)

    response = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = samples(response.content.decode())
    assert found[("mcn_lane_queued_jobs", (("lane", "gpu-vip"),))] == 2
    assert found[("mcn_lane_queued_jobs", (("lane", "gpu"),))] == 1
    assert found[("mcn_lane_queued_jobs", (("lane", "cpu"),))] == 0
    assert found[("mcn_rq_queue_length", (("queue", "gpu.h200"),))] == 1
    assert found[("mcn_jobs", (("status", "queued"),))] == 3
    assert found[("mcn_jobs_failed_last_hour", ())] == 1
    assert found[("mcn_gpu_workers", (("state", "live"),))] == 1
    assert found[("mcn_gpu_worker_vram_free_bytes", (("worker", "gpu-a"),))] == 20 * 2**30
    assert found[("mcn_gpu_queue_live_workers", (("queue", "gpu.h200"),))] == 0


def test_ops_signed_in_may_read_the_metrics_and_producers_may_not(client, settings):
    settings.MCN_METRICS_TOKEN = ""
    client.force_login(make_user(role=roles.PRODUCER))
    assert client.get("/metrics").status_code == 403
    client.force_login(make_user(role=roles.OPS))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert ("mcn_jobs", (("status", "running"),)) in samples(response.content.decode())
