"""bench/render_assembly.py (B7) keeps running at its smoke size."""

import os

import pytest

from mcn_site.lib import fonts
from tests.bench.conftest import run_bench


def test_render_assembly_benchmark_runs_and_reports_both_paths():
    if fonts.cjk_font() is None and not os.environ.get("CI"):
        pytest.skip("no CJK font for the captions: apt-get install fonts-noto-cjk")
    output = run_bench("render_assembly.py", timeout=120)
    assert "| raw ffmpeg, the same argv (baseline) | 1 |" in output
    assert "| `assemble()` | 1 |" in output
    assert "| of which `assemble()`'s own work (checks, captions, font link, argv) | 20 |" in output


def test_render_assembly_benchmark_runs_with_every_shot_a_video_clip():
    if fonts.cjk_font() is None and not os.environ.get("CI"):
        pytest.skip("no CJK font for the captions: apt-get install fonts-noto-cjk")
    output = run_bench("render_assembly.py", "--clips", timeout=120)
    assert "4 video clips (avatar 25 fps + motion 16 fps)" in output
    assert "| `assemble()` | 1 |" in output
