"""The side-by-side benchmark (`scripts/bench_vs_funasr.py`) runs FunASR's own server unchanged next to ours at
`--size tiny` (a smoke test): lags, answers and CPU for both, and the same text for the same segment audio."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.long_running


def test_side_by_side_benchmark_reports_both_servers(tmp_path, bench_cache):
    """28 s of the recording: the peer's VAD closes one segment (at 26.27 s) before the end of input, ours four.
    The peer runs with one thread, as ours, so the two compute the same floats."""
    out = tmp_path / "vs.json"
    run = subprocess.run([sys.executable, "scripts/bench_vs_funasr.py", "--size", "tiny", "--seconds", "28",
                          "--counts", "1", "--ours", "torch", "--peer-ncpu", "1", "--json", str(out),
                          "--cache-dir", str(bench_cache)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    peer, ours = result["funasr"]["ncpu=1"], result["ours"]["torch"]
    assert [s["end_ms"] for s in peer["segments"]] == [26270]
    assert peer["trials"][0]["offline_answers"] == [2] and ours["trials"][0]["offline_answers"] == [5]
    assert ours["segment_ends_ms"] == [2340, 6200, 23670, 26250]
    for entry in (peer, ours):
        trial = entry["trials"][0]
        assert 0 < trial["offline_lag_p50_s"] <= trial["offline_lag_p95_s"] and trial["end_lag_max_s"] > 0
        assert trial["cores_per_session"] > 0 and entry["pss_mb"] > 0
    assert ours["same_text_as_funasr"] == {"segments": 1, "equal": 1}
    assert "sustained 2pass sessions" in run.stdout
