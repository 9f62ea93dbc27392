"""bench/realtime_layers.py keeps running at its smoke size."""

from tests.bench.conftest import run_bench, table_rows


def test_realtime_layer_benchmark_runs_and_reports_both_layers():
    output = run_bench("realtime_layers.py", redis=True, timeout=120)
    assert table_rows(output) == ["| layer", "| core (capacity 100)", "| pubsub"]
    assert "| pubsub | 100.0% | 100.0% |" in output
