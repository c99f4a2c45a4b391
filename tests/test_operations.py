"""Operating it: probes, Prometheus metrics, request ids, JSON logs, the CLI, the container and Kubernetes files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib

import falcon.testing
import kubernetes_validate
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.common.errors import HTTP_STATUS
from model_procs.wheels import WheelSource
from scripts.recordings import EXAMPLES
from supervisor.kinds import VAD_WHEEL
from tests.helpers import REPO, ServerProcess, serving, unload_everything, wait_for


def metric(client, name: str, **labels) -> float:
    text = client.simulate_get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_probes_flip_with_model_state(make_supervisor):
    sup = make_supervisor(punctuation={"required": True})
    client = falcon.testing.TestClient(create_app(sup))
    assert client.simulate_get("/healthz").json == {"success": True, "status": "ok"}
    not_ready = client.simulate_get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json["missing_models"] == ["punctuation"]
    assert client.simulate_get("/model/punctuation/ready").status_code == 503
    assert client.simulate_get("/model/nope/ready").status_code == 404
    client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False})
    assert client.simulate_get("/readyz").json == {"success": True, "ready": True}
    assert client.simulate_get("/model/punctuation/ready").json["ready"] is True
    assert client.simulate_get("/model/streaming_asr/ready").json["status"] == "unloaded"


def test_metrics_move_after_a_load_a_request_and_a_crash(make_supervisor):
    sup = make_supervisor()
    client = falcon.testing.TestClient(create_app(sup))
    assert metric(client, "funasr_model_loaded", model="punctuation") == 0
    client.simulate_post("/punctuation", json={"text": "你好世界"})  # a cold start: load + request
    assert metric(client, "funasr_model_loaded", model="punctuation") == 1
    assert metric(client, "funasr_model_memory_rss_bytes", model="punctuation") > 100 * 2 ** 20
    assert metric(client, "funasr_load_duration_seconds_count", model="punctuation") == 1
    assert metric(client, "funasr_request_duration_seconds_count", model="punctuation") == 1
    assert metric(client, "funasr_model_requests_total", model="punctuation", outcome="ok") == 1
    assert metric(client, "funasr_model_cold_starts_total", model="punctuation") == 1
    os.kill(sup.view("punctuation").pid, signal.SIGKILL)
    wait_for(lambda: metric(client, "funasr_model_loaded", model="punctuation") == 0, timeout=5)
    assert metric(client, "funasr_server_memory_rss_bytes") > 0


def test_every_response_carries_a_request_id(client):
    resp = client.simulate_get("/model/info", headers={"X-Request-Id": "trace-42"})
    assert resp.headers["X-Request-Id"] == "trace-42"
    generated = client.simulate_get("/nope").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)
    assert re.fullmatch(r"[0-9a-f]{16}", client.simulate_get("/healthz", headers={"X-Request-Id": "bad id!"})
                        .headers["X-Request-Id"])


@pytest.fixture(scope="module")
def json_logging_server(cache_dir, tmp_path_factory):
    """One real server for the CLI and the log tests, logging JSON (the demo models, no keys)."""
    yield from serving(ServerProcess(cache_dir, extra_args=["--log-format", "json"],
                                     log_path=tmp_path_factory.mktemp("json-logs") / "log.jsonl"))


@pytest.fixture
def server(json_logging_server):
    """The module's server; no model process outlives the test that started it."""
    yield json_logging_server
    unload_everything(json_logging_server)


def cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args, "--url", server.url], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_commands_against_a_live_server(server):
    assert cli(server, "ready").returncode == 0  # nothing is required
    loaded = cli(server, "load", "punctuation")
    assert loaded.returncode == 0, loaded.stderr
    assert "punctuation: loading" in loaded.stderr or "punctuation: completed" in loaded.stderr
    assert re.search(r"punctuation: loaded, pid \d+, load \d+ ms, memory [\d.]+ MB", loaded.stdout)
    info = json.loads(cli(server, "info", "--json").stdout)
    assert info["available_models"]["punctuation"]["loaded"] is True
    as_json = json.loads(cli(server, "load", "streaming_asr", "--sync", "--json").stdout)
    assert as_json["models"][0]["model_id"] == "streaming_asr" and as_json["models"][0]["status"] == "loaded"
    table = cli(server, "info").stdout
    assert "streaming_asr" in table and "loaded" in table and "MEMORY MB" in table
    unloaded = json.loads(cli(server, "unload", "all", "--json").stdout)
    assert unloaded["models_remaining"] == [] and unloaded["memory_freed_mb"] > 0
    missing = cli(server, "load", "whisper", "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["error_code"] == "MODEL_NOT_FOUND"


def test_json_logs_are_one_object_per_line(server):
    loaded = requests.post(server.url + "/model/load", data='{"model_type":"punctuation","async_load":false}',
                           timeout=120)
    assert loaded.status_code == 200
    entries = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    assert any("unloaded -> loading" in e["message"] for e in entries)
    assert any(e["logger"] == "funasr_supervisor.access" and "POST /model/load -> 200" in e["message"]
               for e in entries)
    assert all({"ts", "level", "logger", "message", "pid"} <= set(e) for e in entries)


def test_containerfile_installs_the_pinned_project_with_its_assets_and_runs_the_readme_entry_point():
    """What scripts/container-check builds and runs for real; here, what must hold without an engine."""
    containerfile = (REPO / "Containerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)$", (REPO / "constraints.txt").read_text(), re.M))
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    for requirement in project["dependencies"]:  # one pinned set: every dependency, at its declared version
        name, version = re.split(r"[<>=!\[ ]", requirement)[0].lower(), requirement.partition("==")[2]
        assert name in pins, f"{name} is in pyproject.toml but not pinned in constraints.txt"
        assert not version or pins[name].split("+")[0] == version, (name, version, pins[name])
    assert "-c /src/constraints.txt /src" in containerfile and "pip install -e" not in containerfile  # not editable
    assert "ARG BASE_IMAGE=python:3.11-slim" in containerfile and "FROM ${BASE_IMAGE}" in containerfile
    for source in (VAD_WHEEL, EXAMPLES):  # the demo's assets baked in, at the versions the code pins
        assert f'"{WheelSource(source).requirement}"' in containerfile
    assert "FUNASR_SUPERVISOR_WHEELHOUSE=/opt/wheelhouse" in containerfile
    assert "HEALTHCHECK" in containerfile and "/healthz" in containerfile
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in containerfile and "USER app" in containerfile
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", containerfile, re.M).group(1))
    assert cmd[:2] == ["funasr-supervisor", "serve"]
    assert project["scripts"]["funasr-supervisor"] == "cli.main:main"
    readme = (REPO / "README.md").read_text()
    assert "funasr-supervisor serve" in readme and "pip install -q -c constraints.txt -e '.[test]'" in readme
    assert "pip install -q -c constraints.txt -e '.[test]'" in (REPO / ".ci" / "run").read_text()


def test_kubernetes_manifests_validate():
    files = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
    kinds = set()
    for path in files:
        for resource in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(resource, "1.37.0", strict=True)
            kinds.add(resource["kind"])
    assert kinds == {"Deployment", "Service", "ConfigMap"}
    deployment = yaml.safe_load((REPO / "deploy/kubernetes/deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"] and container["lifecycle"]["preStop"]


def test_readme_error_table_matches_the_codes_the_server_uses():
    """One enum (wire.errors.ErrorCode) gives each code its status; the README's table must agree with it."""
    rows = dict(re.findall(r"^\| `([A-Z_]+)`(?: / `[A-Z_]+`)? \| (\d{3})", (REPO / "README.md").read_text(), re.M))
    pairs = re.findall(r"^\| `([A-Z_]+)` / `([A-Z_]+)` \| (\d{3}) / (\d{3})", (REPO / "README.md").read_text(), re.M)
    for first, second, first_status, second_status in pairs:
        rows[first], rows[second] = first_status, second_status
    assert {code: int(status) for code, status in rows.items() if code in HTTP_STATUS} == HTTP_STATUS


def test_every_error_code_has_a_status_and_an_unknown_code_cannot_be_raised():
    from wire.errors import ErrorCode, SupervisorError

    assert all(100 <= code.status < 600 for code in ErrorCode) and len(HTTP_STATUS) == len(ErrorCode)
    assert SupervisorError("OVERLOADED", "busy").code is ErrorCode.OVERLOADED   # strings are still taken
    with pytest.raises(ValueError, match="NO_SUCH_CODE"):
        SupervisorError("NO_SUCH_CODE", "a typo would have been a silent 500")
