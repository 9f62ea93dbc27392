"""bench/status_push.py keeps running (tiny size; no time is asserted: speed is measured by bench/, not tests)."""

from tests.bench.conftest import run_bench


def test_status_push_benchmark_runs_and_reports_every_row():
    lines = run_bench("status_push.py", redis=True, timeout=240).splitlines()
    b4 = [line for line in lines if line.startswith(("| raw", "| fake"))]
    assert [row.split()[1] for row in b4] == ["raw", "fake", "raw", "fake"]
    assert "-> 1 page (baseline)" in b4[0] and "-> 3 pages (baseline)" in b4[2]
    b5 = [line for line in lines if line.startswith("| 3 x 10, ")]
    assert [row.split(" | ")[0] for row in b5] == ["| 3 x 10, back to back", "| 3 x 10, 10 ms apart"]
    # Whatever progress was coalesced, every job succeeded and every page heard so.
    assert all("| 3 / 3 | 3 / 3 (100%) |" in row for row in b5)
