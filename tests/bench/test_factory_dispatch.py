"""bench/factory_dispatch.py keeps running (tiny sizes; no time is asserted: speed is measured by bench/, not tests)."""

from tests.bench.conftest import run_bench


def test_factory_dispatch_benchmark_runs_both_paths_and_reports_b1_b2_b3():
    out = run_bench("factory_dispatch.py", redis=True)
    for row in (
        "| raw rq + httpx/websocket round trip (baseline) | 1 |",
        "| factory: row, rq, run_gpu_worker, client, download, DB, event | 1 |",
        "| 4 | 4 |",  # the cost curve's backlogs
        "| 8 | 4 |",
        "| raw: rq enqueue -> SimpleWorker -> POST /prompt (baseline) | 2 |",
        "| factory: `job_enqueue()` -> run_gpu_worker -> POST /prompt | 2 |",
        "| raw rq + httpx/websocket, one prompt at a time | 1 |",
        "| factory | 1 |",
        "| submit: POST /prompt | 2 |",  # every gap between the 3 prompts was traced to the next submit
    ):
        assert row in out, row
