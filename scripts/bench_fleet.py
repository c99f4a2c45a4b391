"""The fleet's costs, each as a ratio against the same thing without it, measured in the same run:

    python scripts/bench_fleet.py --json bench-fleet.json [--requests 200] [--loads 3]

A local Ray cluster of three nodes (declared memory 1500, 3000 and 2000 MB) on this machine, the gateway
(`FleetSupervisor`) served over HTTP by waitress as `funasr-supervisor fleet` does, and beside it one box
(`Supervisor`, as `funasr-supervisor serve`) on the same tiny generated punctuation model.

- request overhead: p50 of `POST /punctuation` through the gateway against the same request to the one box,
  alternating (target: ratio <= 1.10);
- place and load: `POST /model/load` (sync) of a second punctuation model through the gateway, which places it
  on the emptiest node, against the same load on the one box; unloaded between, `--loads` times each, after a
  first load of each that fills the caches (target: ratio <= 1.2);
- healing: from removing the node that holds the required model to that model answering again on another node.

One machine: the nodes share its two cores and one page cache, so these say what the gateway and Ray add, not
what separate machines would do (docs/fleet.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from api.app import create_app  # noqa: E402
from supervisor.config import load_config  # noqa: E402
from supervisor.core import Supervisor  # noqa: E402

MB = 2**20
CONFIG = """
[server]
seed_models = false
ws_port = 0
[models.punctuation]
kind = "punctuation"
source = "generated:tiny"
required = true
[models.punc-b]
kind = "punctuation"
source = "generated:tiny"
"""


def serve(supervisor) -> tuple[object, str]:
    from waitress import create_server

    server = create_server(create_app(supervisor), host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    return server, f"http://127.0.0.1:{server.effective_port}"


def timed_ms(call) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


def punctuate(url: str) -> None:
    resp = requests.post(f"{url}/punctuation", json={"text": "今天天气很好我们一起去公园"}, timeout=60)
    resp.raise_for_status()


def load_and_unload(url: str, model: str) -> float:
    took = timed_ms(lambda: requests.post(f"{url}/model/load", json={"model_type": model, "async_load": False},
                                          timeout=300).raise_for_status())
    requests.delete(f"{url}/model/unload/{model}", timeout=120).raise_for_status()
    return took


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition was not met in time")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--loads", type=int, default=3)
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from supervisor.fleet.gateway import FleetSupervisor

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    (work / "fleet.toml").write_text(CONFIG)
    config = load_config(str(work / "fleet.toml"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "memory": 1500 * MB})
    cluster.add_node(num_cpus=1, memory=3000 * MB)
    cluster.add_node(num_cpus=1, memory=2000 * MB)
    cluster.wait_for_nodes()
    fleet = FleetSupervisor(config, work / "fleet-cache", cluster.address)
    box = Supervisor(config, work / "box-cache")
    results: dict = {}
    try:
        fleet.start()
        box.start()
        box.await_load(box.request_load("punctuation"))
        wait_until(lambda: fleet.view("punctuation").loaded, 600)
        fleet_server, fleet_url = serve(fleet)
        box_server, box_url = serve(box)
        for url in (fleet_url, box_url):   # warm both paths
            for _ in range(10):
                punctuate(url)
        through, direct = [], []
        for _ in range(args.requests):
            through.append(timed_ms(lambda: punctuate(fleet_url)))
            direct.append(timed_ms(lambda: punctuate(box_url)))
        agent = next(iter(fleet.agents.values()))
        bare = [timed_ms(lambda: ray.get(agent.ping.remote())) for _ in range(args.requests)]
        results["request_p50_ms"] = {"fleet": round(statistics.median(through), 2),
                                     "one_box": round(statistics.median(direct), 2),
                                     "bare_ray_call": round(statistics.median(bare), 2)}
        results["request_p50_ratio"] = round(statistics.median(through) / statistics.median(direct), 3)
        print(f"[bench] request p50: fleet {results['request_p50_ms']['fleet']} ms, one box "
              f"{results['request_p50_ms']['one_box']} ms: ratio {results['request_p50_ratio']} (a bare call to "
              f"an agent: {results['request_p50_ms']['bare_ray_call']} ms)", flush=True)

        load_and_unload(fleet_url, "punc-b"), load_and_unload(box_url, "punc-b")   # caches filled once each
        placed, local = [], []
        for _ in range(args.loads):
            placed.append(load_and_unload(fleet_url, "punc-b"))
            local.append(load_and_unload(box_url, "punc-b"))
        results["load_ms"] = {"fleet": [round(t) for t in placed], "one_box": [round(t) for t in local]}
        results["load_p50_ratio"] = round(statistics.median(placed) / statistics.median(local), 3)
        print(f"[bench] place and load: fleet {results['load_ms']['fleet']} ms, one box "
              f"{results['load_ms']['one_box']} ms: p50 ratio {results['load_p50_ratio']}", flush=True)

        holder = next(r.node for r in fleet.view("punctuation").replicas)
        node = next(n for n in cluster.list_all_nodes() if n.node_id == holder)
        if node is cluster.head_node:
            results["heal_s"] = None
            print("[bench] healing: the required model is on the head node; not measured", flush=True)
        else:
            began = time.monotonic()
            cluster.remove_node(node)

            def answers_elsewhere() -> bool:
                replicas = fleet.view("punctuation").replicas
                if not replicas or replicas[0].node == holder:
                    return False
                return requests.post(f"{fleet_url}/punctuation", json={"text": "你好"}, timeout=30).ok
            wait_until(answers_elsewhere, 600)
            results["heal_s"] = round(time.monotonic() - began, 2)
            print(f"[bench] healing: node lost -> required model answering on another node in "
                  f"{results['heal_s']} s", flush=True)
        fleet_server.close(), box_server.close()
    finally:
        box.close()
        fleet.shutdown_agents()
        ray.shutdown()
        cluster.shutdown()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
