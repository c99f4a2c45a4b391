"""The benchmark runs on a fresh checkout at `--size tiny` and its JSON has every figure (a smoke test; the
WebSocket benchmark's is in its own file, so that the two run on different workers)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from scripts.bench_report import FIGURES
from tests.helpers import REPO

pytestmark = pytest.mark.long_running


def test_tiny_benchmark_reports_every_figure(tmp_path, bench_cache):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    run = subprocess.run([sys.executable, "scripts/benchmark.py", "--size", "tiny", "--repeats", "1",
                          "--requests", "20", "--json", str(out), "--markdown", str(md),
                          "--max-streams", "2", "--capacity-chunks", "3", "--hol-audio-s", "120", "--idle-s", "3",
                          "--cache-dir", str(bench_cache), "--plot", str(tmp_path / "charts")],
                         cwd=REPO, capture_output=True, text=True, timeout=480)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["machine"]["cpu_cores"] >= 1 and result["machine"]["versions"]["funasr"]
    for model_id in ("streaming_asr", "asr", "punctuation", "vad"):
        figures = result["summary"]["models"][model_id]
        for key, _ in FIGURES:
            assert isinstance(figures[key], (int, float)) and not math.isnan(figures[key]), (model_id, key)
        assert figures["load_ms"] > 0 and figures["naive_cold_start_ms"] > figures["inproc_load_ms"] > 0
        assert figures["memory_freed_mb"] > 0 and figures["unload_ms"] > 0
        raw = result["raw"]["models"][model_id]
        assert len(raw["http_ms"]) == len(raw["http_model_ms"]) == len(raw["direct_ms"]) == (
            {"vad": 4, "asr": 2}.get(model_id, 20))
        assert all(0 < model < total for model, total in zip(raw["http_model_ms"], raw["http_ms"]))
    assert result["summary"]["control_plane"]["samples"] > 0
    assert 0 <= result["summary"]["idle_cores"] < 1 and "idle, every model loaded" in run.stdout
    replicas = result["summary"]["replicas"]
    assert replicas["capacity_1"] >= 1 and replicas["capacity_2"] >= 1 and replicas["hol_busy_samples"] > 0
    assert replicas["hol_idle_p95_ms"] > 0 and replicas["hol_busy_p95_ms"] > 0
    assert replicas["warm_reload_ms"] > 0 and replicas["warm_mb"] > 0  # keep_warm left the weights cached
    assert replicas["second_replica_private_mb"] > 0 and replicas["machine_mb_2_replicas"] != 0
    protocol = result["summary"]["protocol"]
    assert len(result["raw"]["protocol"]["oip_ms"]) == len(result["raw"]["protocol"]["rest_ms"]) == 20
    assert protocol["oip_p50_ms"] > 0 and protocol["rest_p50_ms"] > 0 and "tritonclient" in run.stdout
    five = result["summary"]["five_models"]
    assert list(five) == ["streaming_asr", "asr", "punctuation", "punctuation-b", "vad"]
    assert all(f["freed_mb"] > 0 and not math.isnan(f["returned_vs_freed"]) for f in five.values())
    assert len(result["summary"]["targets"]) == 33
    assert "load time, API (ms)" in run.stdout and "| figure |" in md.read_text()
    assert len(list((tmp_path / "charts").glob("*.png"))) == len(list((tmp_path / "charts").glob("*.svg"))) == 4
