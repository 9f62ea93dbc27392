"""The factory's ops status page (/admin/factory/status/) and the snapshot behind it (factory.selectors)."""

from datetime import timedelta

import django_rq
import pytest
from django.urls import reverse
from django.utils import timezone
from rq import Queue

from factory.models import JobKind, JobStatus, Lane
from factory.selectors import GONE, LIVE, STALE, ops_snapshot
from mcn_site.lib import roles
from tests.factories import make_gpu_worker, make_job, make_user

pytestmark = pytest.mark.django_db

STATUS = "/admin/factory/status/"
GIB = 2**30


@pytest.fixture
def ops():
    return make_user(role=roles.OPS, username="olga")


@pytest.fixture(autouse=True)
def empty_queues():
    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection
    connection.flushdb()


def _history(now):
    """Jobs finished at known times: 4 in the last hour (1 failed), 6 in the last day (2 failed)."""
    for minutes, status in [(5, "succeeded"), (20, "succeeded"), (50, "succeeded"), (40, "failed")]:
        make_job(status=status, finished_at=now - timedelta(minutes=minutes))
    make_job(status=JobStatus.SUCCEEDED, finished_at=now - timedelta(hours=5))
    make_job(status=JobStatus.FAILED, finished_at=now - timedelta(hours=23))
    make_job(status=JobStatus.FAILED, finished_at=now - timedelta(hours=30))  # outside the day
    make_job(status=JobStatus.CANCELLED, finished_at=now - timedelta(minutes=2))  # neither finished nor failed


def test_the_url_is_the_one_ops_bookmark():
    assert reverse("factory_ops_status") == STATUS


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(STATUS)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_producer_without_the_jobs_permission_is_refused(client):
    client.force_login(make_user(role=roles.PRODUCER))
    assert client.get(STATUS).status_code == 403


def test_the_snapshot_counts_throughput_failures_and_the_oldest_queued_job():
    now = timezone.now()
    _history(now)
    oldest = make_job(lane=Lane.NORMAL, queued_at=now - timedelta(hours=2))
    make_job(lane=Lane.VIP, queued_at=now - timedelta(minutes=5))
    make_job(kind=JobKind.TTS, template=None, queued_at=now - timedelta(minutes=1))
    make_job(lane=Lane.VIP, status=JobStatus.RUNNING, started_at=now - timedelta(minutes=1))

    snapshot = ops_snapshot(now=now)
    assert snapshot.finished_last_hour == 4 and snapshot.failed_last_hour == 1
    assert snapshot.finished_last_day == 6 and snapshot.failed_last_day == 2
    assert snapshot.jobs_per_hour_last_day == 0.25
    assert snapshot.failure_rate_last_day == pytest.approx(2 / 6)
    assert snapshot.oldest_queued == oldest and snapshot.oldest_queued_age == timedelta(hours=2)
    lanes = {lane.lane: (lane.queued, lane.running) for lane in snapshot.lanes}
    assert lanes == {"gpu-vip": (1, 1), "gpu": (1, 0), "cpu": (1, 0)}
    assert snapshot.jobs_by_status == {"queued": 3, "running": 1, "succeeded": 4, "failed": 3, "cancelled": 1}


def test_rq_lengths_count_pool_queues_under_their_lane(empty_queues):
    for name, entries in [("gpu", 2), ("gpu.h200", 1), ("gpu-vip.h200", 3), ("cpu", 0)]:
        for _ in range(entries):
            Queue(name, connection=empty_queues).enqueue("factory.jobs.run_job", 1)
    snapshot = ops_snapshot(now=timezone.now())
    lanes = {lane.lane: (lane.waiting, lane.queues) for lane in snapshot.lanes}
    assert lanes["gpu"] == (3, {"gpu": 2, "gpu.h200": 1})
    assert lanes["gpu-vip"] == (3, {"gpu-vip": 0, "gpu-vip.h200": 3})
    assert lanes["cpu"] == (0, {"cpu": 0})
    assert snapshot.uncovered_queues == ["gpu", "gpu-vip", "gpu-vip.h200", "gpu.h200"]


def test_without_redis_the_page_still_shows_the_database_numbers(client, ops, settings):
    settings.RQ_QUEUES = {name: {**queue, "URL": "redis://127.0.0.1:9/0"} for name, queue in settings.RQ_QUEUES.items()}
    make_job(lane=Lane.VIP)
    snapshot = ops_snapshot(now=timezone.now())
    assert snapshot.redis_error.startswith("ConnectionError")
    assert [lane.waiting for lane in snapshot.lanes] == [None, None, None]
    assert snapshot.lanes[0].queued == 1

    client.force_login(ops)
    body = client.get(STATUS).content.decode()
    assert 'id="redis-error"' in body


def test_workers_are_live_stale_or_gone_by_their_last_heartbeat():
    now = timezone.now()
    make_gpu_worker(name="gpu-live", last_seen_at=now - timedelta(seconds=5))
    make_gpu_worker(name="gpu-stale", last_seen_at=now - timedelta(minutes=10))
    make_gpu_worker(name="gpu-gone", last_seen_at=now - timedelta(hours=3))
    snapshot = ops_snapshot(now=now)
    assert [(s.worker.name, s.state) for s in snapshot.workers] == [
        ("gpu-gone", GONE),
        ("gpu-live", LIVE),
        ("gpu-stale", STALE),
    ]


def test_ops_see_workers_queues_and_throughput(client, ops, django_assert_max_num_queries):
    now = timezone.now()
    _history(now)
    oldest = make_job(lane=Lane.NORMAL, subject="post.5/shot.2", queued_at=now - timedelta(hours=2))
    running = make_job(lane=Lane.VIP, status=JobStatus.RUNNING, started_at=now)
    make_gpu_worker(
        name="gpu-h100",
        queues="gpu-vip,gpu",
        vram_total=80 * GIB,
        vram_free=60 * GIB,
        current_job=running,
    )
    for n in range(3):
        make_gpu_worker(
            name=f"gpu-old-{n}",
            last_seen_at=now - timedelta(minutes=10),
            current_job=make_job(status=JobStatus.RUNNING),
        )
    client.force_login(ops)

    # Session, user, permissions (2), the ops check for the rq link; then workers, job counts, oldest
    # queued: the same with one worker or forty (each worker's current job comes in the same query).
    with django_assert_max_num_queries(8):
        response = client.get(STATUS)
    assert response.status_code == 200
    body = response.content.decode()
    assert '<meta http-equiv="refresh" content="15">' in body

    figures = {key: body.split(f'id="{key}"')[1].split("</div>")[0] for key in ["jobs-last-hour", "jobs-per-hour"]}
    assert "<strong>4</strong>" in figures["jobs-last-hour"]
    assert "<strong>0.25</strong>" in figures["jobs-per-hour"] and "6 finished / 24" in figures["jobs-per-hour"]
    failure = body.split('id="failure-rate"')[1].split("</div>")[0]
    assert "<strong>33.3%</strong>" in failure and "2 failed of 6" in failure
    oldest_box = body.split('id="oldest-queued"')[1].split("</div>")[0]
    assert reverse("admin:factory_job_change", args=[oldest.pk]) in oldest_box
    assert "2h 00m" in oldest_box and "post.5/shot.2" in oldest_box

    [row] = [row for row in body.split('id="workers"')[1].split("<tr")[1:] if "gpu-h100" in row]
    assert ">live<" in row and "NVIDIA H100 80GB HBM3" in row
    assert "20.0 / 80.0 GiB" in row and "60.0 GiB free" in row
    assert reverse("admin:factory_job_change", args=[running.pk]) in row
    assert "gpu-vip, gpu" in row
    assert body.count(">stale<") == 3

    lanes = body.split('id="lanes"')[1].split("</table>")[0]
    gpu_row = lanes.split('data-lane="gpu"')[1].split("</tr>")[0]
    # Queued: the oldest job; running: the stale workers' jobs (the normal GPU lane); rq: nothing rung.
    assert '<td>gpu</td><td class="num">1</td><td class="num">3</td>' in gpu_row


def test_the_job_list_and_the_factory_page_link_to_the_status_page(client, ops):
    client.force_login(ops)
    assert f'href="{STATUS}"' in client.get(reverse("admin:factory_job_changelist")).content.decode()
    assert f'href="{STATUS}"' in client.get(reverse("admin:app_list", args=["factory"])).content.decode()
