"""Workflow-aware dispatch: a GPU worker takes the queued jobs of the workflow its server has loaded first.

Switching a GPU between workflows reloads their models (tens of GB for an avatar or video model, seconds
to minutes); plain FIFO over a mixed backlog switches at almost every job. The rule, per worker:

1. Lanes first: any job of the VIP queue before any job of the normal one (as rq's own order).
2. Within the first non-empty lane, a take-over first: a job whose row is still "running" (its worker went
   silent; the reconciler rang it at the front so that the next worker re-attaches to its prompt).
3. Then, within the first non-empty lane, a job that has waited in the rq list longer than
   FACTORY_AFFINITY_MAX_WAIT_SECONDS (rq's `enqueued_at`) is taken first, oldest first: the bound on how
   long a job may be passed over.
4. Otherwise the oldest job of the workflow this worker last ran on its server (factory.vram's memory:
   "workflow" is the template row, so a new template version counts as another workflow: its model files
   may differ).
5. Otherwise the head of the lane (FIFO). A worker that does not know what its server has loaded (just
   started, or FACTORY_FREE_AFTER_JOB unloads after every job) takes FIFO; FACTORY_AFFINITY_MAX_WAIT_SECONDS=0
   turns the whole rule off.

Only the first AFFINITY_SCAN ids of a lane are looked at. A job is taken with one atomic LREM of its id
(1: ours; 0: another worker took it first, look again), which leaves rq in the state its own multi-queue
dequeue (BLPOP) leaves: the id out of the queue list, the job hash "queued", until the worker marks it
started a few milliseconds later. factory.queues.rq_jobs_alive already counts that window (limbo) as
alive. An empty lane list falls back to rq's blocking dequeue.
"""

import logging
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from rq import SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.worker import WorkerStatus

from factory import vram
from factory.models import Job, JobStatus

log = logging.getLogger(__name__)

AFFINITY_SCAN = 200  # ids looked at per lane and dequeue (LRANGE 0..199)
TAKE_TRIES = 5  # lost races before falling back to rq's own dequeue
RUN_JOB = "factory.jobs.run_job"

# KEYS[1]: the queue list, KEYS[2] (optional): rq's intermediate list. Remove the id; when it was there,
# push it where rq's single-queue dequeue (LMOVE) puts it. One script: no other client sees a half-move.
TAKE_SCRIPT = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
    if KEYS[2] then redis.call('RPUSH', KEYS[2], ARGV[1]) end
    return 1
end
return 0
"""


@dataclass(frozen=True)
class Waiting:
    """One rq job waiting in a lane, as the dispatch sees it."""

    rq_id: str
    workflow: int | None  # its Job row's template id; None: not a ComfyUI job, or no row
    enqueued_at: float | None  # epoch seconds rq put it in the queue
    take_over: bool = False  # its row was running when rung: a silent worker's job, rung at the front


def choose(waiting: list[Waiting], *, loaded: int | None, max_wait: float, now: float) -> Waiting | None:
    """The job to take from one lane (`waiting` in queue order, head first): see the module docstring."""
    if not waiting:
        return None
    for candidate in waiting:
        if candidate.take_over:
            return candidate
    overdue = [w for w in waiting if w.enqueued_at is not None and now - w.enqueued_at > max_wait]
    if overdue:
        return min(overdue, key=lambda w: w.enqueued_at)  # min() keeps the first of equals: queue order
    if loaded is not None:
        for candidate in waiting:
            if candidate.workflow == loaded:
                return candidate
    return waiting[0]


def affinity_max_wait() -> float:
    return float(settings.FACTORY_AFFINITY_MAX_WAIT_SECONDS)


class AffinityWorker(SimpleWorker):
    """rq's SimpleWorker with the dequeue above; `server_url` is the ComfyUI server it drives."""

    def __init__(self, *args, server_url: str, max_wait: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.server_url = server_url.rstrip("/")
        self.max_wait = affinity_max_wait() if max_wait is None else max_wait
        self._known: dict[str, Waiting] = {}  # rq id -> what a scan learnt (ids and rows never change)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        loaded = vram.loaded_workflow(self.server_url)
        if self.max_wait > 0 and loaded is not None:
            self.set_state(WorkerStatus.IDLE)  # as rq's own dequeue does while it looks
            try:
                taken = self._take_preferred(loaded)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, DatabaseError) as error:
                # rq's own dequeue below waits for Redis with its backoff; a worker must not quit over a pick.
                log.warning("workflow-aware pick failed (%s); taking the head of the queue", error)
                taken = None
            except Exception:  # rq's work loop quits on anything unhandled: FIFO is the safe answer
                log.exception("workflow-aware pick failed; taking the head of the queue")
                taken = None
            if taken is not None:
                job, queue = taken
                job.redis_server_version = self.get_redis_server_version()
                self.heartbeat()
                self.log.info("Worker %s: %s: %s (workflow-aware pick)", self.name, queue.name, job.id)
                return taken
        # Nothing waiting (or nothing known to prefer): rq's own blocking dequeue, head of the first lane.
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def _take_preferred(self, loaded: int):
        for _ in range(TAKE_TRIES):
            lane = self._first_lane()
            if lane is None:
                return None
            queue, ids = lane
            waiting = self._describe(ids)
            pick = choose(waiting, loaded=loaded, max_wait=self.max_wait, now=time.time())
            if pick is None:
                return None
            intermediate = [queue.intermediate_queue_key] if len(self.queues) == 1 else []
            took = self.connection.eval(TAKE_SCRIPT, 1 + len(intermediate), queue.key, *intermediate, pick.rq_id)
            if not took:
                continue  # another worker took it between our LRANGE and LREM: look again
            try:
                job = self.job_class.fetch(pick.rq_id, connection=self.connection, serializer=self.serializer)
            except NoSuchJobError:
                continue  # its hash expired or was deleted: rq's own dequeue skips these too
            if pick.rq_id != ids[0]:
                passed = ids.index(pick.rq_id)
                log.info("took %s (workflow %s) ahead of %d older job(s) in %s", job.id, loaded, passed, queue.name)
            return job, queue
        return None

    def _first_lane(self):
        """(queue, its first AFFINITY_SCAN waiting ids) of the first non-empty queue, VIP first; one round trip."""
        with self.connection.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                pipe.lrange(queue.key, 0, AFFINITY_SCAN - 1)
            listed = pipe.execute()
        for queue, ids in zip(self.queues, listed, strict=True):
            if ids:
                return queue, [rq_id.decode() for rq_id in ids]
        return None

    def _describe(self, ids: list[str]) -> list[Waiting]:
        """What each waiting id is: rq jobs fetched in one pipeline, their rows in one query; remembered."""
        new = [rq_id for rq_id in ids if rq_id not in self._known]
        if new:
            rq_jobs = self.job_class.fetch_many(new, connection=self.connection, serializer=self.serializer)
            row_ids: dict[str, int] = {}
            for rq_id, rq_job in zip(new, rq_jobs, strict=True):
                try:
                    if rq_job is not None and rq_job.func_name == RUN_JOB and rq_job.args:
                        row_ids[rq_id] = int(rq_job.args[0])
                except Exception:  # an entry that does not deserialize: not ours to prefer; rq reports it when run
                    log.warning("rq job %s in %s cannot be read; not preferred", rq_id, self.name)
            close_old_connections()  # the worker may have been idle past CONN_MAX_AGE
            rows = {
                pk: (template_id, status == JobStatus.RUNNING)
                for pk, template_id, status in Job.objects.filter(pk__in=row_ids.values()).values_list(
                    "pk", "template_id", "status"
                )
            }
            for rq_id, rq_job in zip(new, rq_jobs, strict=True):
                enqueued = rq_job.enqueued_at.timestamp() if rq_job is not None and rq_job.enqueued_at else None
                workflow, take_over = rows.get(row_ids.get(rq_id), (None, False))
                self._known[rq_id] = Waiting(rq_id, workflow, enqueued, take_over)
        if len(self._known) > 4 * AFFINITY_SCAN:  # forget ids taken long ago (by us or others)
            self._known = {rq_id: self._known[rq_id] for rq_id in ids}
        return [self._known[rq_id] for rq_id in ids]
