"""The benchmark's charts, drawn from a small recorded run (`tests/data/bench_tiny.json`: a `--size tiny` run
with `--hol-unshared`, its long sample lists cut short) through the command line, as a reader would."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO

RECORDED = REPO / "tests" / "data" / "bench_tiny.json"
CHARTS = ("load-time", "memory", "latency-under-load", "head-of-line")


def test_plot_only_draws_every_chart_as_png_and_svg(tmp_path):
    run = subprocess.run([sys.executable, "scripts/benchmark.py", "--plot-only", str(RECORDED), "--plot",
                          str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(RECORDED.read_text())
    for name in CHARTS:   # (an empty figure with its caption: a 20 KB PNG, a 9.5 KB SVG)
        png, svg = tmp_path / f"{name}.png", tmp_path / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 35_000, name
        text = svg.read_text()
        assert text.lstrip().startswith("<?xml") and len(text) > 15_000, name
        assert f"funasr {result['machine']['versions']['funasr']}" in text   # the caption names the versions
        assert f"{name}.png" in run.stderr
    load_time, memory = (tmp_path / "load-time.svg").read_text(), (tmp_path / "memory.svg").read_text()
    assert "time until the model answers (ms)" in load_time and "server: warm-up" in load_time
    assert load_time.count('id="patch_') >= 3 * 6   # per model: 4 stacked phases, in-process and naive bars
    assert "memory (MB)" in memory and memory.count('id="patch_') >= 3 * 5
    latency = (tmp_path / "latency-under-load.svg").read_text()
    assert "concurrent real-time streams" in latency and "p95, 2 replicas" in latency and "600 ms" in latency
    head_of_line = (tmp_path / "head-of-line.svg").read_text()
    assert "fair sharing, 1.2 s pieces" in head_of_line and "60 s pieces" in head_of_line   # both runs recorded


def test_plot_only_without_a_folder_says_what_is_missing(tmp_path):
    run = subprocess.run([sys.executable, "scripts/benchmark.py", "--plot-only", str(RECORDED)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--plot-only needs --plot DIR" in run.stderr
