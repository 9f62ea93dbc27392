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


def test_render_assembly_benchmark_runs_and_reports_both_paths():
    import os

    import pytest

    from mcn_site.lib import fonts

    if fonts.cjk_font() is None and not os.environ.get("CI"):
        pytest.skip("no CJK font for the captions: apt-get install fonts-noto-cjk")
    result = subprocess.run(
        [sys.executable, "bench/render_assembly.py", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| raw ffmpeg, the same argv (baseline) | 1 |" in result.stdout
    assert "| `assemble()` | 1 |" in result.stdout


def test_scheduler_tick_benchmark_runs_and_reports_each_measurement():
    # It makes a throwaway database of its own beside whatever DATABASE_URL names (SQLite or PostgreSQL).
    result = subprocess.run(
        [sys.executable, "bench/scheduler_tick.py", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ")[0] for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows == [
        "| measurement",
        "| baseline: read the 200 active schedules in one query",
        "| tick, nothing due",
        "| tick, 2 due at one minute (2 posts)",
        "| tick, all 200 due at one minute (200 posts), 1 run",
    ]
