"""bench/approval_burst.py (B9) keeps running at its smoke size."""

from tests.bench.conftest import run_bench, table_rows


def test_approval_burst_benchmark_runs_and_reports_both_paths():
    assert table_rows(run_bench("approval_burst.py", redis=True)) == [
        "| measurement",
        "| rq `enqueue_many` of 12 jobs, one pipeline (baseline)",
        "| approve 3 posts of 2 shots (12 jobs, 3 transactions)",
    ]
