"""Many clients at once over real HTTP: random lifecycle and inference calls, invariants checked throughout."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import psutil
import pytest
import requests
from multiprocess import forkserver
from waitress import create_server

from api.app import create_app
from api.common.errors import HTTP_STATUS
from tests.helpers import alive, descendants, free_port, speechlike_pcm, wait_for

pytestmark = pytest.mark.long_running

THREADS = 8
DURATION_S = 30
CHUNK = speechlike_pcm(0.4, seed=5)
MODELS = ("streaming_asr", "punctuation")


MAX_REPLICAS = 2


@pytest.fixture
def scaled(make_supervisor):
    """Both models may run two replicas, and scale up as soon as a request waits."""
    settings = {"max_replicas": MAX_REPLICAS, "scale_up_after_ms": 50}
    return make_supervisor(streaming_asr=settings, punctuation=settings)


@pytest.fixture
def http_url(scaled):
    server = create_server(create_app(scaled), host="127.0.0.1", port=free_port(), threads=16)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    server.task_dispatcher.shutdown()


def model_processes(sup) -> dict[str, list[int]]:
    """The real model processes (children of the forkserver), by the model the supervisor says they run;
    a process it does not know about is listed under "unknown"."""
    known = {r.pid: m for m, view in sup.snapshot.models.items() for r in view.replicas if r.pid}
    found: dict[str, list[int]] = {}
    for pid in descendants(forkserver._forkserver._forkserver_pid):
        if alive(pid):
            found.setdefault(known.get(pid, "unknown"), []).append(pid)
    return found


def random_call(session: requests.Session, url: str, rng: random.Random) -> list[requests.Response]:
    model = rng.choice(MODELS)
    op = rng.choice(["load", "load", "unload", "force", "info", "punct", "punct", "stream", "stream"])
    if op == "load":
        return [session.post(f"{url}/model/load", json={"model_type": model, "async_load": rng.random() < 0.5})]
    if op == "force":
        return [session.post(f"{url}/model/load", json={"model_type": model, "force_reload": True})]
    if op == "unload":
        return [session.delete(f"{url}/model/unload/{rng.choice([*MODELS, 'all'])}")]
    if op == "info":
        return [session.post(f"{url}/model/info", json={"detailed": rng.random() < 0.5})]
    if op == "punct":
        return [session.post(f"{url}/punctuation", json={"text": "今天天气很好我们去公园玩吧"})]
    opened = session.post(f"{url}/asr/streams", json={})
    if opened.status_code != 201:
        return [opened]
    stream = f"{url}/asr/streams/{opened.json()['stream_id']}"
    fed = [session.post(f"{stream}/audio", data=CHUNK, headers={"Content-Type": "audio/L16; rate=16000"})
           for _ in range(2)]
    return [opened, *fed, session.post(f"{stream}/finish")]


def test_eight_clients_for_thirty_seconds_keep_every_invariant(scaled, http_url):
    outcomes: Counter[str] = Counter()
    violations: list[str] = []
    stop = threading.Event()

    def client(seed: int) -> None:
        rng, session = random.Random(seed), requests.Session()
        while not stop.is_set():
            for resp in random_call(session, http_url, rng):
                body = resp.json()
                if body.get("success"):
                    outcomes[f"{resp.status_code}"] += 1
                    continue
                code = body.get("error_code")
                outcomes[f"{resp.status_code} {code}"] += 1
                crashed_without_crash = code == "MODEL_CRASHED"  # nothing here kills a process
                if (HTTP_STATUS.get(code) != resp.status_code or resp.status_code == 500 or not body.get("details")
                        or crashed_without_crash):
                    violations.append(f"{resp.request.method} {resp.request.path_url}: {resp.status_code} {body}")

    def monitor() -> None:
        unknown_before: set[int] = set()
        while not stop.is_set():
            found = model_processes(scaled)
            for model_id in MODELS:  # at most max_replicas, plus a new set during a force_reload
                if len(found.get(model_id, [])) > 2 * MAX_REPLICAS:
                    violations.append(f"{model_id}: {len(found[model_id])} processes")
            unknown = set(found.get("unknown", []))
            if unknown & unknown_before:  # a just-spawned pid may not be published yet; twice is a leak
                violations.append(f"processes the supervisor does not know: {unknown & unknown_before}")
            unknown_before = unknown
            time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(THREADS)]
    threads.append(threading.Thread(target=monitor))
    for thread in threads:
        thread.start()
    time.sleep(DURATION_S)
    stop.set()
    for thread in threads:
        thread.join(120)
    total = sum(outcomes.values())
    print(f"stress: {total} requests, outcomes {dict(outcomes)}")
    assert not violations, violations[:5]
    assert total > 200 and outcomes["200"] > 50

    def settled() -> bool:
        models = scaled.snapshot.models.values()
        return all(m.status in ("loaded", "unloaded") and all(r.state in ("idle", "busy") for r in m.replicas)
                   for m in models)
    wait_for(settled, timeout=60)
    info = requests.get(f"{http_url}/model/info").json()["available_models"]
    found = model_processes(scaled)
    assert "unknown" not in found, found
    for model_id, model in info.items():
        pids = sorted(r["pid"] for r in model.get("replicas", []))
        assert sorted(found.get(model_id, [])) == pids
        assert (model["pid"] in pids) if model["loaded"] else not pids
        assert len(pids) <= MAX_REPLICAS


def test_server_memory_and_descriptors_stay_flat_over_100_load_unload_cycles(sup):
    me = psutil.Process()

    def cycle(times: int) -> None:
        for _ in range(times):
            sup.await_load(sup.request_load("punctuation"))
            sup.unload("punctuation")
    cycle(10)  # warm-up: caches, thread pools, first-use allocations
    fds, rss = me.num_fds(), me.memory_info().rss
    cycle(100)
    fd_growth, rss_growth_mb = me.num_fds() - fds, (me.memory_info().rss - rss) / 2 ** 20
    print(f"after 100 cycles: descriptors {fd_growth:+d}, RSS {rss_growth_mb:+.1f} MB")
    assert fd_growth <= 2
    assert rss_growth_mb < 10
