"""bench/workflow_affinity.py keeps running (tiny sizes; no time is asserted: bench/ measures speed, not tests)."""

from tests.bench.conftest import run_bench, table_rows


def test_workflow_affinity_benchmark_runs_fifo_and_affinity_and_reports_b10():
    out = run_bench("workflow_affinity.py", redis=True)
    assert table_rows(out) == [
        "| dispatch",
        "| plain FIFO (`FACTORY_AFFINITY_MAX_WAIT_SECONDS=0`)",
        "| workflow-aware",
    ]
    # The switch counts are not times: 9 round-robin jobs of 3 workflows, one worker.
    assert "| plain FIFO (`FACTORY_AFFINITY_MAX_WAIT_SECONDS=0`) | 1 | 9 | 9 |" in out
    assert "| workflow-aware | 1 | 3 | 3 |" in out
    assert "Target (issue 17): switches 3 <= 6: yes;" in out
