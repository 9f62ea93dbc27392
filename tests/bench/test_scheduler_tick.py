"""bench/scheduler_tick.py (B8) keeps running at its smoke size."""

from tests.bench.conftest import run_bench, table_rows


def test_scheduler_tick_benchmark_runs_and_reports_each_measurement():
    assert table_rows(run_bench("scheduler_tick.py")) == [
        "| measurement",
        "| baseline: read the 200 active schedules in one query",
        "| tick, nothing due",
        "| tick, 2 due at one minute (2 posts)",
        "| tick, all 200 due at one minute (200 posts), 1 run",
    ]
