"""/metrics in Prometheus text format, computed at scrape time from factory.selectors.ops_snapshot.

Every value is a gauge read from the database (and rq's queue lengths from Redis) when Prometheus
scrapes: no in-process counters, so web processes need no shared multiprocess directory and all
of them answer alike. Throughput is a gauge too (jobs finished and failed in the last hour).
"""

from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from factory.selectors import LIVE, OpsSnapshot, ops_snapshot


class SnapshotCollector(Collector):
    def __init__(self, snapshot: OpsSnapshot):
        self.snapshot = snapshot

    def collect(self):
        s = self.snapshot
        queued = GaugeMetricFamily("mcn_lane_queued_jobs", "Queued job rows per lane (database).", labels=["lane"])
        running = GaugeMetricFamily("mcn_lane_running_jobs", "Running job rows per lane (database).", labels=["lane"])
        for lane in s.lanes:
            queued.add_metric([lane.lane], lane.queued)
            running.add_metric([lane.lane], lane.running)
        yield queued
        yield running
        if not s.redis_error:
            waiting = GaugeMetricFamily("mcn_rq_queue_length", "Entries waiting in each rq queue.", labels=["queue"])
            for name, length in s.queue_lengths.items():
                waiting.add_metric([name], length)
            yield waiting
        by_status = GaugeMetricFamily("mcn_jobs", "Job rows by status.", labels=["status"])
        for status, count in s.jobs_by_status.items():
            by_status.add_metric([status], count)
        yield by_status
        yield GaugeMetricFamily(
            "mcn_jobs_finished_last_hour", "Jobs that succeeded or failed in the last hour.", value=s.finished_last_hour
        )
        yield GaugeMetricFamily(
            "mcn_jobs_failed_last_hour", "Jobs that failed in the last hour.", value=s.failed_last_hour
        )
        yield GaugeMetricFamily(
            "mcn_oldest_queued_job_age_seconds",
            "Age of the oldest queued job (0: none queued).",
            value=s.oldest_queued_age.total_seconds() if s.oldest_queued_age else 0,
        )
        states = GaugeMetricFamily("mcn_gpu_workers", "GPU workers by heartbeat state.", labels=["state"])
        for state in ("live", "stale", "gone"):
            states.add_metric([state], sum(1 for w in s.workers if w.state == state))
        yield states
        up = GaugeMetricFamily("mcn_gpu_worker_live", "1 when the worker's heartbeat is fresh.", labels=["worker"])
        reachable = GaugeMetricFamily(
            "mcn_gpu_worker_comfyui_reachable", "1 when the last heartbeat reached ComfyUI.", labels=["worker"]
        )
        free = GaugeMetricFamily("mcn_gpu_worker_vram_free_bytes", "Free VRAM (last heartbeat).", labels=["worker"])
        total = GaugeMetricFamily("mcn_gpu_worker_vram_total_bytes", "Total VRAM (last heartbeat).", labels=["worker"])
        for status in s.workers:
            name = status.worker.name
            up.add_metric([name], 1 if status.state == LIVE else 0)
            reachable.add_metric([name], 1 if status.worker.server_reachable else 0)
            if status.worker.vram_total is not None:
                total.add_metric([name], status.worker.vram_total)
                free.add_metric([name], status.worker.vram_free or 0)
        yield from (up, reachable, free, total)
        served = GaugeMetricFamily(
            "mcn_gpu_queue_live_workers", "Live workers listening to each GPU queue that needs one.", labels=["queue"]
        )
        for name, workers in s.coverage.items():
            served.add_metric([name], len(workers))
        yield served


class CostCollector(Collector):
    """The cost ledger (posts.costs): all-time spend per artist and kind, this month's and last month's
    (a bounded label set: two months, not every month ever), GPU seconds per pool, and budget use."""

    def __init__(self, ledger: dict):
        self.ledger = ledger

    def collect(self):
        c = self.ledger
        total = GaugeMetricFamily(
            "mcn_cost_total",
            f"All-time spend per artist and kind ({c['currency']}): finished jobs priced at their rates.",
            labels=["artist", "kind"],
        )
        monthly = GaugeMetricFamily(
            "mcn_cost_month_total",
            f"Spend per artist, month (this and last) and kind ({c['currency']}).",
            labels=["artist", "month", "kind"],
        )
        for row in c["all_time"]:
            for kind in ("gpu", "llm", "cpu"):
                total.add_metric([row["artist__slug"], kind], float(row[f"{kind}_amount"]))
        for row in c["months"]:
            for kind in ("gpu", "llm", "cpu"):
                monthly.add_metric([row["artist__slug"], row["month"], kind], float(row[f"{kind}_amount"]))
        yield total
        yield monthly
        pools = GaugeMetricFamily(
            "mcn_gpu_seconds_total", "GPU execution seconds of priced jobs, per pool.", labels=["pool"]
        )
        for pool, seconds in c["gpu_seconds"].items():
            pools.add_metric([pool], seconds)
        yield pools
        used = GaugeMetricFamily(
            "mcn_budget_used_ratio",
            "This month's spend over the artist's monthly budget (1 = spent).",
            labels=["artist"],
        )
        for slug, ratio in c["budgets"].items():
            used.add_metric([slug], ratio)
        yield used


def exposition(*, now: datetime) -> bytes:
    from posts.costs import ledger_snapshot  # posts reads factory: imported when a scrape needs it

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(ops_snapshot(now=now)))
    registry.register(CostCollector(ledger_snapshot(now=now)))
    return generate_latest(registry)
