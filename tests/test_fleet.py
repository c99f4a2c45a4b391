"""The fleet on a local multi-node Ray cluster: three nodes with declared memory on this one machine, a node agent
with its own supervisor on each, and the gateway's facade serving the seed's API over them.

What one machine cannot show (memory and speed across real machines: every node here shares one page cache and
two cores) is said in docs/fleet.md, not faked. The cluster is made once for the file: bringing up three nodes
and booting three forkservers (torch and funasr imported) is most of its time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import falcon.testing
import psutil
import pytest
import requests

from api.app import create_app
from supervisor.config import load_config
from supervisor.fleet.placement import Candidate, place
from tests.conftest import shared_helpers
from tests.helpers import REPO, alive, descendants, free_port, wait_for
from tests.reference_client import ModelManager
from wire.errors import SupervisorError

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from supervisor.fleet.gateway import FleetSupervisor  # noqa: E402

pytestmark = pytest.mark.long_running
MB = 2**20
CONFIG = """
[server]
seed_models = false
memory_margin_mb = 900      # so a node's declared memory decides: punctuation needs ~1300 MB, streaming ~2100
ws_port = 0
[models.punctuation]
kind = "punctuation"
source = "generated:tiny"
required = true
[models.punc-b]
kind = "punctuation"
source = "generated:tiny"
[models.punc-wide]
kind = "punctuation"
source = "generated:tiny"
max_replicas = 2
scale_up_after_ms = 60000   # a node would wait a minute before adding a process of its own
[models.streaming_asr]
kind = "streaming_asr"
source = "generated:tiny"
"""


class Fleet:
    def __init__(self, tmp_path) -> None:
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "memory": 1000 * MB})
        self.big = self.cluster.add_node(num_cpus=1, memory=2000 * MB)
        self.small = self.cluster.add_node(num_cpus=1, memory=1500 * MB)
        self.cluster.wait_for_nodes()
        self.config_file = tmp_path / "fleet.toml"
        self.config_file.write_text(CONFIG)
        self.config = load_config(str(self.config_file))
        self.cache = tmp_path / "cache"
        self.gateway = FleetSupervisor(self.config, self.cache, self.cluster.address)
        self.gateway.start()
        self.client = falcon.testing.TestClient(create_app(self.gateway))
        self.down = False

    def node_of(self, model_id: str) -> list[str]:
        return [r.node for r in self.gateway.view(model_id).replicas if r.node]

    def model_pids(self) -> list[int]:
        return [r.pid for view in self.gateway.snapshot.models.values() for r in view.replicas if r.pid]

    def shutdown(self) -> None:
        if not self.down:
            self.down = True
            self.gateway.close()
            ray.shutdown()
            self.cluster.shutdown()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    made = Fleet(tmp_path_factory.mktemp("fleet"))
    yield made
    made.shutdown()


@pytest.fixture(autouse=True)
def no_orphans():
    """The cluster's processes live for the whole file; the last test checks none outlives its shutdown."""
    yield


def test_a_required_model_is_placed_on_the_node_with_the_most_free_memory(fleet):
    wait_for(lambda: fleet.gateway.view("punctuation").loaded, timeout=240, interval=0.5)
    assert fleet.node_of("punctuation") == [fleet.big.node_id]
    info = fleet.client.simulate_get("/model/info").json
    assert set(info["nodes"]) == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    replica = info["available_models"]["punctuation"]["replicas"][0]
    assert replica["node"] == fleet.big.node_id and psutil.pid_exists(replica["pid"])
    metrics = fleet.client.simulate_get("/metrics").text
    assert f'funasr_node_model_replicas{{model="punctuation",node="{fleet.big.node_id}"}} 1.0' in metrics
    assert metrics.count("funasr_node_memory_free_bytes{") == 3


def test_a_load_that_fits_nowhere_is_a_507_naming_each_nodes_free_memory(fleet):
    resp = fleet.client.simulate_post("/model/load", json={"model_type": "streaming_asr", "async_load": False})
    assert resp.status_code == 507 and resp.json["error_code"] == "INSUFFICIENT_MEMORY", resp.text
    for node_id in fleet.gateway.node_free_mb():
        assert node_id[:12] in resp.json["details"]
    assert "MB free" in resp.json["details"] and fleet.gateway.view("streaming_asr").replicas == []


def test_requests_go_to_the_node_that_serves_the_model(fleet):
    before = fleet.gateway.states[fleet.big.node_id].snapshot_models["punctuation"].total_requests
    resp = fleet.client.simulate_post("/punctuation", json={"text": "你好"})
    assert resp.status_code == 200 and resp.json["text"].endswith("。"), resp.text
    fleet.gateway.refresh()
    assert fleet.gateway.states[fleet.big.node_id].snapshot_models["punctuation"].total_requests == before + 1


def test_placement_takes_the_node_that_holds_the_files_before_the_emptiest():
    def node(name, free, loads):   # a node that loaded the model before has its files in its cache
        view = SimpleNamespace(loaded=False, warm_mb=None, metrics=SimpleNamespace(loads=loads))
        return Candidate(name, {}, free, 1300.0, 0.0, view if loads else None)
    assert place("m", [node("a", 4000, 0), node("b", 2000, 1)], []) == "b"        # files: b, though a is emptier
    assert place("m", [node("a", 4000, 0), node("b", 1000, 1)], []) == "a"        # b holds them but cannot fit
    assert place("m", [node("a", 4000, 0), node("b", 2000, 0)], ["b"]) == "b"     # pinned
    with pytest.raises(SupervisorError) as nowhere:
        place("m", [node("a", 100, 0), node("b", 200, 0)], [])
    assert nowhere.value.code == "INSUFFICIENT_MEMORY" and "a: 100 MB free" in nowhere.value.details


def test_the_seed_client_drives_the_fleet_unchanged(fleet):
    from waitress import create_server

    server = create_server(create_app(fleet.gateway), host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        manager = ModelManager(f"http://127.0.0.1:{server.effective_port}")
        assert manager.ensure_model_loaded("punc-b")
        status = manager.get_model_status()
        assert status["available_models"]["punc-b"]["loaded"] is True
        assert status["available_models"]["punc-b"]["replicas"][0]["node"] in fleet.gateway.node_free_mb()
        assert manager.check_model_readiness(["punctuation", "punc-b"]) == (True, "All required models are loaded "
                                                                                 "and ready")
        assert manager.unload_model("punc-b") is True
        assert manager.get_model_status()["available_models"]["punc-b"]["loaded"] is False
    finally:
        wait_for(lambda: not server.active_channels, timeout=10)   # the last answer written before closing
        server.close()


def test_a_restarted_gateway_rebuilds_its_view_from_the_agents(fleet):
    """`funasr-supervisor fleet` as a second gateway process: it finds the agents and what they serve, loads
    nothing, and exits 0 on SIGTERM leaving the models where they are."""
    port = free_port()
    gateway = subprocess.Popen([sys.executable, "-m", "cli.main", "fleet", "--ray-address", fleet.cluster.address,
                                "--models", str(fleet.config_file), "--cache-dir", str(fleet.cache), "--port",
                                str(port), "--ws-port", "0"], cwd=REPO, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def info():
            try:
                return requests.get(f"http://127.0.0.1:{port}/model/info", timeout=5).json()
            except requests.ConnectionError:
                return None
        seen = wait_for(lambda: (i := info()) and i["available_models"]["punctuation"]["loaded"] and i, timeout=120)
        assert [r["node"] for r in seen["available_models"]["punctuation"]["replicas"]] == fleet.node_of(
            "punctuation")
        assert seen["available_models"]["punc-b"]["loaded"] is False and len(seen["nodes"]) == 3
    finally:
        gateway.send_signal(signal.SIGTERM)
        output = gateway.communicate(timeout=60)[0]
    assert gateway.returncode == 0, output[-2000:]
    assert fleet.gateway.view("punctuation").loaded   # the first gateway's view is unchanged


def test_a_node_removed_under_load_and_its_required_model_back_elsewhere(fleet):
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(fleet.client.simulate_post("/punctuation", json={"text": "你好"}).status_code)
            time.sleep(0.05)
    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        wait_for(lambda: statuses.count(200) >= 3, timeout=30)
        lost_at = time.monotonic()
        fleet.cluster.remove_node(fleet.big)
        wait_for(lambda: "lost" in (fleet.gateway.view("punctuation").last_error or ""), timeout=60, interval=0.2)
        wait_for(lambda: fleet.node_of("punctuation") == [fleet.small.node_id] and
                 fleet.gateway.view("punctuation").loaded, timeout=240, interval=0.5)
        healed_s = time.monotonic() - lost_at
        wait_for(lambda: statuses[-1] == 200, timeout=30)
    finally:
        stop.set()
        thread.join()
    assert 500 not in statuses and set(statuses) <= {200, 502, 503, 504}, sorted(set(statuses))
    assert fleet.big.node_id not in fleet.gateway.node_free_mb()
    print(f"fleet: node lost, its required model serving again on another node after {healed_s:.1f} s")


def test_a_node_that_joins_later_gets_an_agent(fleet):
    joined = fleet.cluster.add_node(num_cpus=1, memory=1600 * MB)   # room for a model of its own later
    wait_for(lambda: joined.node_id in fleet.gateway.node_free_mb(), timeout=120, interval=0.5)
    assert fleet.gateway.node_free_mb()[joined.node_id] > 0


def test_max_replicas_spans_nodes_when_every_node_serving_it_has_requests_queued(fleet):
    assert fleet.client.simulate_post("/model/load", json={"model_type": "punc-wide", "async_load": False}
                                      ).status_code == 200
    first = fleet.node_of("punc-wide")
    assert len(first) == 1
    stop = threading.Event()
    statuses: list[int] = []

    def busy() -> None:
        while not stop.is_set():
            statuses.append(fleet.client.simulate_post("/punctuation?model=punc-wide",
                                                       json={"text": "今天天气很好" * 300}).status_code)
    threads = [threading.Thread(target=busy) for _ in range(24)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(set(fleet.node_of("punc-wide"))) == 2, timeout=120, interval=0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert first[0] in fleet.node_of("punc-wide") and set(statuses) == {200}
    assert fleet.client.simulate_delete("/model/unload/punc-wide").json["memory_freed_mb"] > 0
    assert fleet.node_of("punc-wide") == []


def test_nothing_is_left_running_after_the_cluster_shuts_down(fleet):
    """Every process the cluster started (Ray's own, the agents, their forkservers and model processes) ends."""
    models = fleet.model_pids()
    started = (descendants() - shared_helpers()) | set(models)
    assert models and len(started) > len(models)
    fleet.shutdown()
    wait_for(lambda: not [p for p in started if alive(p)], timeout=60, interval=0.5)
