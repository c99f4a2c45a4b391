"""The benchmark runs on a fresh checkout at `--size tiny` and its JSON has every figure (a smoke test)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench_report import FIGURES
from tests.helpers import REPO

pytestmark = pytest.mark.long_running


@pytest.fixture
def bench_cache(tmp_path, tiny_models) -> Path:
    """A cache whose generated models are the run's (a benchmark keeps what a previous run generated)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "generated").symlink_to(tiny_models, target_is_directory=True)
    return cache


def test_tiny_benchmark_reports_every_figure(tmp_path, bench_cache):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    run = subprocess.run([sys.executable, "scripts/benchmark.py", "--size", "tiny", "--repeats", "1",
                          "--requests", "20", "--json", str(out), "--markdown", str(md),
                          "--max-streams", "2", "--capacity-chunks", "3", "--hol-audio-s", "120",
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


def test_websocket_benchmark_reports_sessions_and_latencies(tmp_path, bench_cache):
    """scripts/bench_funasr_ws.py at `--size tiny` on 3.6 s of audio, up to 2 sessions."""
    out = tmp_path / "ws.json"
    run = subprocess.run([sys.executable, "scripts/bench_funasr_ws.py", "--size", "tiny", "--seconds", "3.6",
                          "--replicas", "1", "--most", "2", "--calibration-pace-s", "0.5", "--json", str(out),
                          "--cache-dir", str(bench_cache)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    entry = json.loads(out.read_text())["replicas"]["1"]
    assert entry["answering_chunks"] > 0 and [t["sessions"] for t in entry["trials"]] == [1, 2]
    assert all(0 < t["partial_p50_ms"] <= t["partial_p95_ms"] for t in entry["trials"])
    assert entry["chunk_latency"]["ws_p50_ms"] > 0 and entry["chunk_latency"]["http_p50_ms"] > 0
    assert "real-time 2pass sessions" in run.stdout
