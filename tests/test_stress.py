"""Many clients at once over real HTTP: random lifecycle and inference calls, invariants checked throughout."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import psutil
import pytest
import requests
from waitress import create_server

from api.app import create_app
from api.errors import HTTP_STATUS
from tests.helpers import alive, free_port, speechlike_pcm, wait_for

THREADS = 8
DURATION_S = 30
CHUNK = speechlike_pcm(0.4, seed=5)
MODELS = ("streaming_asr", "punctuation")


@pytest.fixture
def http_url(sup):
    server = create_server(create_app(sup), host="127.0.0.1", port=free_port(), threads=16)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    server.task_dispatcher.shutdown()


def live_workers(sup, model_id: str) -> list:
    return [h for h in list(sup._spawner.handles.values()) if h.model_id == model_id and not h.exited.is_set()]


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


def test_eight_clients_for_thirty_seconds_keep_every_invariant(sup, http_url):
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
                if HTTP_STATUS.get(code) != resp.status_code or resp.status_code == 500 or not body.get("details"):
                    violations.append(f"{resp.request.method} {resp.request.path_url}: {resp.status_code} {body}")

    def monitor() -> None:
        while not stop.is_set():
            for model_id in MODELS:
                if len(live_workers(sup, model_id)) > 2:  # old + new, only during a force_reload
                    violations.append(f"{model_id}: {len(live_workers(sup, model_id))} processes")
            time.sleep(0.02)

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
        return all(s.job is None and s.status.value in ("loaded", "unloaded") for s in sup.slots.values())
    wait_for(settled, timeout=60)
    info = requests.get(f"{http_url}/model/info").json()["available_models"]
    for model_id, model in info.items():
        workers = live_workers(sup, model_id)
        if model["loaded"]:
            assert [w.pid for w in workers] == [model["pid"]] and alive(model["pid"])
        else:
            wait_for(lambda: not live_workers(sup, model_id), timeout=10)


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
