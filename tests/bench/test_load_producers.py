"""bench/load_producers.py keeps running, and a short load loses nothing (no time is asserted).

The script starts the whole system (uvicorn, a GPU worker on a fake ComfyUI, the CPU worker, the
reconciler) on a throwaway database beside whatever DATABASE_URL names, and exits 1 when an approved
post is lost, a request errs, a job row is left open or a process dies. A post that failed with a reason
(no CJK font for the captions, say) is not lost.
"""

from tests.bench.conftest import run_bench, table_rows


def test_load_test_runs_and_loses_no_approved_post():
    output = run_bench("load_producers.py", redis=True, timeout=500)
    rows = table_rows(output)
    assert rows[:3] == ["| endpoint", "| GET /healthz, 3 clients (baseline)", "| GET post"]
    for endpoint in ("| PATCH shot", "| POST approve", "| **all API requests**"):
        assert endpoint in rows
    assert "| errors (other 4xx, 5xx, transport) | 0 |" in output
    assert "| lost (approved, neither done nor failed with a reason) | 0 |" in output
    assert "| job rows left queued or running | 0 |" in output
    assert "OK: nothing lost, no errors, every job row settled." in output
