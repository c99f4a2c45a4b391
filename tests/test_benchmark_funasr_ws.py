"""The WebSocket benchmark (`scripts/bench_funasr_ws.py`) runs at `--size tiny` and reports sessions and latencies
(a smoke test)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.long_running


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
