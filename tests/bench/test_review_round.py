"""bench/review_round.py (B11) keeps running at its smoke size."""

from tests.bench.conftest import run_bench, table_rows


def test_review_round_benchmark_runs_and_reports_each_round():
    assert table_rows(run_bench("review_round.py", redis=True)) == [
        "| round",
        "| first production, 4 shots",
        "| review round: 1 of 4 shots rewritten",
        "| review round: the same 4 shots written again",
    ]
