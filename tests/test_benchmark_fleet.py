"""The fleet's benchmark (`scripts/bench_fleet.py`) runs end to end on a small count (a smoke test): each figure
is measured, against one box in the same run, and healing is timed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.long_running
pytest.importorskip("ray")


@pytest.fixture(autouse=True)
def no_orphans():
    """The script runs in a subprocess that shuts its own cluster down; its exit is what is checked."""
    yield


def test_fleet_benchmark_reports_its_ratios(tmp_path):
    out = tmp_path / "fleet.json"
    run = subprocess.run([sys.executable, "scripts/bench_fleet.py", "--requests", "10", "--loads", "1",
                          "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    p50 = result["request_p50_ms"]
    assert p50["fleet"] > 0 and p50["one_box"] > 0 and 0 < p50["bare_ray_call"] < p50["fleet"]
    assert abs(result["request_p50_ratio"] - p50["fleet"] / p50["one_box"]) < 0.01   # from unrounded medians
    assert len(result["load_ms"]["fleet"]) == len(result["load_ms"]["one_box"]) == 1
    assert result["load_p50_ratio"] > 0 and result["heal_s"] > 0
    assert "healing: node lost" in run.stdout
