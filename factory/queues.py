"""Which rq queue a job goes to, and putting it there (the doorbell; the row is the truth).

GPU pools: a pool is a named set of GPU machines (e.g. "video" for the 48 GB cards). ComfyUI jobs
go to their template's pool, VIP lane first: the default pool keeps the queues "gpu-vip" and "gpu",
pool "video" has "gpu-vip.video" and "gpu.video". Extra pools are declared in MCN_GPU_POOLS
(settings.py declares their rq queues from the same list).
"""

import time
from collections.abc import Callable
from datetime import timedelta

import django_rq
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from factory.models import Job, JobKind, Lane

DEFAULT_POOL = "default"
GPU_QUEUES = {Lane.VIP: "gpu-vip", Lane.NORMAL: "gpu"}  # the default pool's queues
CPU_QUEUE = "cpu"


def gpu_pools() -> list[str]:
    """Every declared pool, the default one first."""
    return [DEFAULT_POOL, *(pool for pool in settings.MCN_GPU_POOLS if pool != DEFAULT_POOL)]


def pool_problem(pool: str) -> str | None:
    """Why `pool` cannot take jobs here (not declared), or None. Blank means the default pool."""
    if not pool or pool in gpu_pools():
        return None
    return (
        f"GPU pool “{pool}” is not declared: add it to MCN_GPU_POOLS (now: "
        f"{', '.join(settings.MCN_GPU_POOLS) or 'empty'}) on every machine, and start workers with --pool {pool}."
    )


def gpu_queue(pool: str, lane: str) -> str:
    """The rq queue of one pool and lane: the default pool keeps the plain names."""
    problem = pool_problem(pool)
    if problem:
        raise ImproperlyConfigured(problem)
    base = GPU_QUEUES[lane]
    return base if pool in ("", DEFAULT_POOL) else f"{base}.{pool}"


def gpu_queues(pool: str) -> list[str]:
    """The queues a GPU worker of `pool` listens on, VIP first."""
    return [gpu_queue(pool, Lane.VIP), gpu_queue(pool, Lane.NORMAL)]


def all_gpu_queues() -> list[str]:
    """Every GPU queue of every declared pool (default pool first, VIP before normal within a pool)."""
    return [name for pool in gpu_pools() for name in gpu_queues(pool)]


def queue_name(job: Job) -> str:
    if job.kind == JobKind.COMFYUI:
        return gpu_queue(job.template.gpu_pool, job.lane)
    return CPU_QUEUE


def ring(job_id: int, *, queue: str, delay_seconds: float = 0, at_front: bool = False) -> str:
    """Enqueue `factory.jobs.run_job(job_id)`; return the rq job id."""
    rq_queue = django_rq.get_queue(queue)
    # rq's own timeout sits above our deadlines, so our clean "timed out" path always runs first.
    options = {"job_timeout": settings.RQ_DEFAULT_TIMEOUT, "result_ttl": 3600, "failure_ttl": 7 * 86400}
    if delay_seconds > 0:
        rq_job = rq_queue.enqueue_in(timedelta(seconds=delay_seconds), "factory.jobs.run_job", job_id, **options)
    else:
        rq_job = rq_queue.enqueue("factory.jobs.run_job", job_id, at_front=at_front, **options)
    return rq_job.id


def ring_many(rings: list[tuple[int, str, str]]) -> None:
    """Enqueue `factory.jobs.run_job` for each (job id, queue, rq job id) in one Redis pipeline.

    What ring() does for one job, for a burst (approving a post rings a voice and a picture per shot):
    one round trip to Redis instead of several per job (bench B9).
    """
    options = {"timeout": settings.RQ_DEFAULT_TIMEOUT, "result_ttl": 3600, "failure_ttl": 7 * 86400}
    by_queue: dict[str, list[tuple[int, str]]] = {}
    for job_id, queue, rq_id in rings:
        by_queue.setdefault(queue, []).append((job_id, rq_id))
    if not by_queue:
        return
    with django_rq.get_connection(next(iter(by_queue))).pipeline() as pipe:
        for queue, entries in by_queue.items():
            rq_queue = django_rq.get_queue(queue)
            rq_queue.enqueue_many(
                [
                    rq_queue.prepare_data("factory.jobs.run_job", (job_id,), job_id=rq_id, **options)
                    for job_id, rq_id in entries
                ],
                pipeline=pipe,
            )
        pipe.execute()


def rq_job_alive(rq_job_id: str) -> bool:
    """Whether rq still holds this job as waiting, scheduled or running (its doorbell still rings)."""
    return rq_job_id in rq_jobs_alive([rq_job_id])


LIMBO_KEY = "mcn:reconcile:limbo:{}"  # when the reconciler first saw an rq job taken but never run


def rq_jobs_alive(rq_job_ids: list[str], *, now: float | None = None) -> set[str]:
    """The ids among `rq_job_ids` whose doorbell still rings: waiting in a queue, scheduled, or running.

    rq's status alone does not say so. A worker takes a job by moving its id to the queue's
    "intermediate" list, and only then marks it started; a worker (or Redis) that dies in between
    leaves a job marked "queued" in no queue, which rq cleans up after ten minutes or more. So a job
    counts as waiting only while its id is in its queue's list, and one taken but not yet run (in
    limbo) stays alive for FACTORY_STALE_SECONDS from the first pass that saw it so: a live worker
    starts it within milliseconds, a dead one never does.

    One pipelined read per thousand ids, one LRANGE per queue: a pass over a 10 000-job backlog
    asking per job took seconds (bench/factory_dispatch.py).
    """
    from rq.job import Job as RqJob

    now = time.time() if now is None else now
    ids = [rq_id for rq_id in rq_job_ids if rq_id]
    connection = django_rq.get_connection("default")
    states: dict[str, tuple[bytes | None, bytes | None]] = {}
    with connection.pipeline(transaction=False) as pipe:
        for start in range(0, len(ids), 1000):
            batch = ids[start : start + 1000]
            for rq_id in batch:
                pipe.hmget(RqJob.key_for(rq_id), "status", "origin")  # status: what Job.get_status() reads
            states.update(zip(batch, pipe.execute(), strict=True))
    waiting = _waiting_ids({origin.decode() for status, origin in states.values() if status == b"queued" and origin})
    alive, limbo = set(), []
    for rq_id, (status, _origin) in states.items():
        if status in (b"scheduled", b"deferred") or (status == b"queued" and rq_id in waiting):
            alive.add(rq_id)
        elif status in (b"queued", b"started"):
            limbo.append(rq_id)
    return alive | _limbo_within_grace(connection, limbo, now=now)


def _waiting_ids(queue_names: set[str]) -> set[str]:
    """Every rq job id waiting in these queues (their lists, not rq's statuses)."""
    from rq import Queue

    connection = django_rq.get_connection("default")
    with connection.pipeline(transaction=False) as pipe:
        for name in queue_names:
            pipe.lrange(Queue.redis_queue_namespace_prefix + name, 0, -1)
        return {rq_id.decode() for listed in pipe.execute() for rq_id in listed}


def _limbo_within_grace(connection, rq_ids: list[str], *, now: float) -> set[str]:
    """The ids among these taken-but-not-run jobs first seen in limbo less than FACTORY_STALE_SECONDS ago."""
    grace = settings.FACTORY_STALE_SECONDS
    with connection.pipeline(transaction=False) as pipe:
        for rq_id in rq_ids:
            pipe.set(LIMBO_KEY.format(rq_id), now, nx=True, ex=max(60, int(grace * 10)))
            pipe.get(LIMBO_KEY.format(rq_id))
        first_seen = pipe.execute()[1::2]
    return {rq_id for rq_id, seen in zip(rq_ids, first_seen, strict=True) if seen and now - float(seen) < grace}


def forget_failed_entries(*, succeeded: Callable[[list[int]], set[int]], newest: int = 100) -> list[str]:
    """Drop rq's failed-registry entries of jobs whose row succeeded after all; returns the rq ids dropped.

    A job running when Redis restarted (or its worker died) is moved to rq's failed registry as
    "abandoned" even though a later run finished it: ops would see a failure that did not happen
    (rq/rq #2289). Only the `newest` entries of each queue are looked at (the reconciler runs often).
    """
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RqJob

    connection = django_rq.get_connection("default")
    dropped = []
    for name in settings.RQ_QUEUES:
        registry = django_rq.get_queue(name).failed_job_registry
        entries = {}
        for rq_id in registry.get_job_ids(0, newest - 1, desc=True):
            try:
                rq_job = RqJob.fetch(rq_id, connection=connection)
            except NoSuchJobError:
                continue
            if rq_job.func_name == "factory.jobs.run_job" and rq_job.args and isinstance(rq_job.args[0], int):
                entries[rq_id] = rq_job.args[0]
        done = succeeded(list(entries.values())) if entries else set()
        for rq_id, job_id in entries.items():
            if job_id in done:
                registry.remove(rq_id, delete_job=True)
                dropped.append(rq_id)
    return dropped
