"""Reads for the ops console, /readyz and /metrics: workers and their state, queue depths, job rates.

Numbers come from the database (the truth) except the rq queue lengths, which say how many
doorbells are waiting in Redis; the two differ when Redis lost entries (the reconciler re-rings
them) or a job waits for a retry (rq's scheduled set, not the queue).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db.models import Count, F, Q
from rq import Queue

from factory.models import GpuWorker, Job, JobKind, JobStatus
from factory.queues import CPU_QUEUE, GPU_QUEUES

# A worker silent for longer than this is history: its queues no longer need a live worker.
WORKER_GONE_AFTER = timedelta(hours=1)
REDIS_TIMEOUT = 1.0  # seconds: the status page and /readyz never hang on Redis

LIVE, STALE, GONE = "live", "stale", "gone"


def live_after(*, now: datetime) -> datetime:
    """Heartbeats newer than this are live: three missed beats and a worker is stale."""
    return now - timedelta(seconds=3 * settings.FACTORY_HEARTBEAT_SECONDS)


def worker_state(worker: GpuWorker, *, now: datetime) -> str:
    if worker.last_seen_at >= live_after(now=now):
        return LIVE
    return STALE if worker.last_seen_at >= now - WORKER_GONE_AFTER else GONE


def worker_queues(worker: GpuWorker) -> list[str]:
    return [name.strip() for name in worker.queues.split(",") if name.strip()]


def lane_of_queue(name: str) -> str | None:
    """The lane (its base queue: gpu-vip, gpu, cpu) an rq queue belongs to; pool queues are `<base>.<pool>`."""
    for base in (*GPU_QUEUES.values(), CPU_QUEUE):
        if name == base or name.startswith(base + "."):
            return base
    return None


def is_gpu_queue(name: str) -> bool:
    return lane_of_queue(name) in GPU_QUEUES.values()


def redis_client(*, timeout: float = REDIS_TIMEOUT) -> redis.Redis:
    """A client on rq's Redis whose every call gives up after `timeout` seconds (close it after use)."""
    return redis.Redis.from_url(
        settings.RQ_QUEUES["default"]["URL"], socket_connect_timeout=timeout, socket_timeout=timeout
    )


def rq_queue_lengths(*, connection: redis.Redis) -> dict[str, int]:
    """Waiting entries per rq queue: the configured ones and every queue rq has registered (pool queues too)."""
    names = set(settings.RQ_QUEUES) | {queue.name for queue in Queue.all(connection=connection)}
    ordered = sorted(names)
    pipeline = connection.pipeline(transaction=False)
    for name in ordered:
        pipeline.llen(Queue(name, connection=connection).key)
    return dict(zip(ordered, pipeline.execute(), strict=True))


def gpu_queue_coverage(*, workers: list[GpuWorker], queue_lengths: dict[str, int], now: datetime) -> dict[str, list]:
    """Each GPU queue that needs a worker, with the names of the live workers listening to it.

    A queue needs one when it is a default GPU queue, when a worker seen within WORKER_GONE_AFTER
    listened to it, or when it holds waiting jobs.
    """
    recent = [worker for worker in workers if worker_state(worker, now=now) != GONE]
    needed = set(GPU_QUEUES.values())
    needed |= {name for worker in recent for name in worker_queues(worker) if is_gpu_queue(name)}
    needed |= {name for name, length in queue_lengths.items() if length and is_gpu_queue(name)}
    live = [worker for worker in recent if worker_state(worker, now=now) == LIVE]
    return {name: sorted(w.name for w in live if name in worker_queues(w)) for name in sorted(needed)}


@dataclass(frozen=True)
class WorkerStatus:
    worker: GpuWorker
    state: str  # live | stale | gone
    queues: list[str]
    seconds_since_seen: float


@dataclass(frozen=True)
class LaneDepth:
    lane: str  # the lane's base queue: gpu-vip, gpu, cpu
    queued: int  # database: queued job rows
    running: int  # database: running job rows
    waiting: int | None  # rq: entries waiting in the lane's queues; None when Redis did not answer
    queues: dict[str, int] = field(default_factory=dict)  # rq: per queue, pool queues included


@dataclass(frozen=True)
class OpsSnapshot:
    now: datetime
    workers: list[WorkerStatus]
    lanes: list[LaneDepth]
    queue_lengths: dict[str, int]  # every rq queue; empty when Redis did not answer
    coverage: dict[str, list]  # GPU queue -> live worker names (an empty list: nobody serves it)
    jobs_by_status: dict[str, int]
    finished_last_hour: int  # succeeded or failed (cancelled jobs count for neither)
    failed_last_hour: int
    finished_last_day: int
    failed_last_day: int
    oldest_queued: Job | None
    redis_error: str = ""

    @property
    def jobs_per_hour_last_day(self) -> float:
        return self.finished_last_day / 24

    @property
    def failure_rate_last_day(self) -> float | None:
        """Failed / finished in the last 24 h; None when nothing finished."""
        return self.failed_last_day / self.finished_last_day if self.finished_last_day else None

    @property
    def oldest_queued_age(self) -> timedelta | None:
        if self.oldest_queued is None:
            return None
        return self.now - (self.oldest_queued.queued_at or self.oldest_queued.created_at)

    @property
    def uncovered_queues(self) -> list[str]:
        return [name for name, workers in self.coverage.items() if not workers]


def _lane_filter(lane: str) -> Q:
    if lane == CPU_QUEUE:
        return ~Q(kind=JobKind.COMFYUI)
    [job_lane] = [key for key, name in GPU_QUEUES.items() if name == lane]
    return Q(kind=JobKind.COMFYUI, lane=job_lane)


def ops_snapshot(*, now: datetime) -> OpsSnapshot:
    """Everything the status page and /metrics show, in three queries and one Redis round trip."""
    workers = list(GpuWorker.objects.select_related("current_job__template").order_by("name"))

    lanes = [*GPU_QUEUES.values(), CPU_QUEUE]
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    finished = Q(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED])
    failed = Q(status=JobStatus.FAILED)
    aggregates = {f"status_{status}": Count("pk", filter=Q(status=status)) for status in JobStatus.values}
    for index, lane in enumerate(lanes):  # aliases by position: queue names hold characters SQL aliases may not
        aggregates[f"queued_{index}"] = Count("pk", filter=Q(status=JobStatus.QUEUED) & _lane_filter(lane))
        aggregates[f"running_{index}"] = Count("pk", filter=Q(status=JobStatus.RUNNING) & _lane_filter(lane))
    aggregates.update(
        finished_hour=Count("pk", filter=finished & Q(finished_at__gte=hour)),
        failed_hour=Count("pk", filter=failed & Q(finished_at__gte=hour)),
        finished_day=Count("pk", filter=finished & Q(finished_at__gte=day)),
        failed_day=Count("pk", filter=failed & Q(finished_at__gte=day)),
    )
    counts = Job.objects.order_by().aggregate(**aggregates)

    oldest = (
        Job.objects.filter(status=JobStatus.QUEUED)
        .select_related("template")
        .defer("submitted_workflow", "error_details")
        .order_by(F("queued_at").asc(nulls_last=True), "created_at", "pk")
        .first()
    )

    queue_lengths: dict[str, int] = {}
    redis_error = ""
    connection = redis_client()
    try:
        queue_lengths = rq_queue_lengths(connection=connection)
    except redis.RedisError as error:
        redis_error = f"{type(error).__name__}: {error}"
    finally:
        connection.close()

    return OpsSnapshot(
        now=now,
        workers=[
            WorkerStatus(
                worker=worker,
                state=worker_state(worker, now=now),
                queues=worker_queues(worker),
                seconds_since_seen=(now - worker.last_seen_at).total_seconds(),
            )
            for worker in workers
        ],
        lanes=[
            LaneDepth(
                lane=lane,
                queued=counts[f"queued_{index}"],
                running=counts[f"running_{index}"],
                waiting=None if redis_error else sum(n for q, n in queue_lengths.items() if lane_of_queue(q) == lane),
                queues={q: n for q, n in queue_lengths.items() if lane_of_queue(q) == lane},
            )
            for index, lane in enumerate(lanes)
        ],
        queue_lengths=queue_lengths,
        coverage=gpu_queue_coverage(workers=workers, queue_lengths=queue_lengths, now=now),
        jobs_by_status={status: counts[f"status_{status}"] for status in JobStatus.values},
        finished_last_hour=counts["finished_hour"],
        failed_last_hour=counts["failed_hour"],
        finished_last_day=counts["finished_day"],
        failed_last_day=counts["failed_day"],
        oldest_queued=oldest,
        redis_error=redis_error,
    )
