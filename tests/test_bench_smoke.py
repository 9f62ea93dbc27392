"""The benchmarks keep running (tiny sizes; no time is asserted: speed is measured by bench/, not tests)."""

import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def test_realtime_layer_benchmark_runs_and_reports_both_layers():
    result = subprocess.run(
        [
            sys.executable,
            "bench/realtime_layers.py",
            "--clients",
            "2",
            "--burst",
            "5",
            "--paced",
            "5",
            "--redis",
            settings.REDIS_URL,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| core") or line.startswith("| pubsub")]
    assert len(rows) == 2
    assert "| pubsub | 100.0% | 100.0% |" in result.stdout
