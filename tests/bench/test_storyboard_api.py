"""bench/storyboard_api.py (B6) keeps running at its smoke size (it starts the web server)."""

from tests.bench.conftest import run_bench, table_rows


def test_storyboard_api_benchmark_runs_and_reports_each_measurement():
    output = run_bench("storyboard_api.py")
    assert table_rows(output) == [
        "| measurement",
        "| trivial DRF view (baseline)",
        "| GET post with 30 shots",
        "| GET post with 10 shots (cost curve, 1 run)",
        "| GET post with 100 shots (cost curve, 1 run)",
        "| GET post with 1000 shots (cost curve, 1 run)",
    ]
    # The query count of a request does not grow with the storyboard (the last column).
    counts = {line.rsplit(" | ", 1)[1] for line in output.splitlines() if line.startswith("| GET post")}
    assert len(counts) == 1, counts
